"""The original qcow format (QEMU's block/qcow.c), as far as qcowlab models it.

qcow (version 1) images are recognised when probing, so that they are never
mistaken for raw, and their header is validated with qcow_open's messages;
an image that passes validation is refused as not modelled (like encrypted
qcow2 images).

API: ``probe(buf)`` -> score; ``open_error(file)`` -> the BlockError to raise.
"""
from __future__ import annotations

import errno
import struct

from emulator.block import io
from emulator.block.node import BlockError, BlockNode

QCOW_MAGIC = 0x514649FB
#: magic, version, backing_file_offset, backing_file_size, mtime, size,
#: cluster_bits, l2_bits, padding, crypt_method, l1_table_offset
_HEADER = struct.Struct(">IIQIIQBBHIQ")
CRYPT_AES = 1


def probe(buf: bytes) -> int:
    """qcow_probe: 100 for the qcow magic with version 1."""
    if len(buf) >= _HEADER.size:
        magic, version = struct.unpack_from(">II", buf)
        if magic == QCOW_MAGIC and version == 1:
            return 100
    return 0


def open_error(file: BlockNode) -> BlockError:
    """qcow_open's header checks; past them, the image is refused as not modelled."""
    (magic, version, _bfo, _bfs, _mtime, size, cluster_bits, l2_bits, _pad, crypt,
     _l1) = _HEADER.unpack(io.pread(file, 0, _HEADER.size))
    if magic != QCOW_MAGIC:
        return BlockError(errno.EINVAL, "Image not in qcow format")
    if version != 1:
        return BlockError(errno.ENOTSUP, f"qcow (v1) does not support qcow version {version}",
                          "Try the 'qcow2' driver instead.\n" if version in (2, 3) else "")
    if size <= 1:
        return BlockError(errno.EINVAL, "Image size is too small (must be at least 2 bytes)")
    if cluster_bits < 9 or cluster_bits > 16:
        return BlockError(errno.EINVAL, "Cluster size must be between 512 and 64k")
    if l2_bits < 9 - 3 or l2_bits > 16 - 3:
        return BlockError(errno.EINVAL, "L2 table size must be between 512 and 64k")
    if crypt and crypt != CRYPT_AES:
        return BlockError(errno.EINVAL, "invalid encryption method in qcow header")
    return BlockError(errno.ENOTSUP, "qcowlab does not model qcow (v1) images")
