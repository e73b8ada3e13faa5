"""qcow2 image creation (qcow2_co_create_opts / qcow2_co_create).

API summary: ``create(filename, opts)``; ``opts`` holds qemu-img's -o names
with string (or already typed) values: size, compat, backing_file,
backing_fmt, cluster_size, preallocation, lazy_refcounts, refcount_bits,
extended_l2, compression_type, data_file, data_file_raw, encrypt.*.
The backing file is only recorded, never opened (checking it is the command
line's job); an external data file is created (empty) and sized with the
image. Raises BlockError with QEMU's message; on failure the files are
removed, as QEMU does.

The image is made the way QEMU makes it: a header cluster and a refcount
table + empty refcount block are written to an empty file, the image is
opened, clusters 0-2 are allocated through the normal allocator, the full
header is written, the image is resized with the requested preallocation
(which allocates the L1 table), and the backing file is recorded.
"""
from __future__ import annotations

import errno
import os
import struct
from typing import Any, Optional

from emulator.block.node import BlockError
from emulator.qcow2 import header as hdr

PREALLOC_MODES = ("off", "metadata", "falloc", "full")
BLOCK_DRIVERS = (
    "blkdebug", "blklogwrites", "blkreplay", "blkverify", "bochs", "cloop", "compress",
    "copy-before-write", "copy-on-read", "dmg", "file", "snapshot-access", "ftp", "ftps",
    "gluster", "host_cdrom", "host_device", "http", "https", "io_uring", "iscsi", "luks",
    "nbd", "nfs", "null-aio", "null-co", "nvme", "nvme-io_uring", "parallels", "preallocate",
    "qcow", "qcow2", "qed", "quorum", "raw", "rbd", "replication", "ssh", "throttle", "vdi",
    "vhdx", "virtio-blk-vfio-pci", "virtio-blk-vhost-user", "virtio-blk-vhost-vdpa", "vmdk",
    "vpc", "vvfat",
)


def _bool(opts: dict, key: str, qapi_key: str) -> Optional[bool]:
    val = opts.get(key)
    if val is None:
        return None
    if isinstance(val, bool):
        return val
    if str(val) in ("on", "yes", "true", "y"):
        return True
    if str(val) in ("off", "no", "false", "n"):
        return False
    raise BlockError(errno.EINVAL, f"Parameter '{key}' expects 'on' or 'off'")


def _int(val: Any) -> int:
    return val if isinstance(val, int) else int(str(val), 0)


def _enum(opts: dict, key: str, qapi_key: str, allowed) -> Optional[str]:
    val = opts.get(key)
    if val is None:
        return None
    if str(val) not in allowed:
        raise BlockError(errno.EINVAL, f"Parameter '{qapi_key}' does not accept value '{val}'")
    return str(val)


def create(filename: str, opts: dict) -> None:
    """Create a qcow2 image at ``filename`` (see the module docstring)."""
    from emulator.block.file import FileNode
    FileNode.create(filename, 0, "off")
    created = [filename]
    try:
        data_file = opts.get("data_file")
        if data_file:
            FileNode.create(data_file, 0, "off")
            created.append(data_file)
        _create(filename, opts)
    except BaseException:
        for name in created:
            try:
                os.unlink(name)
            except OSError:
                pass
        raise


def _create(filename: str, opts: dict) -> None:
    # typed like the QAPI visitor, in BlockdevCreateOptionsQcow2 field order
    data_file_raw = _bool(opts, "data_file_raw", "data-file-raw") or False
    extended_l2 = _bool(opts, "extended_l2", "extended-l2") or False
    size = _int(opts.get("size", 0))
    size = -(-size // 512) * 512
    compat = opts.get("compat")
    if compat is not None:
        compat = {"0.10": "v2", "1.1": "v3"}.get(str(compat), str(compat))
        if compat not in ("v2", "v3"):
            raise BlockError(errno.EINVAL,
                             f"Parameter 'version' does not accept value '{opts.get('compat')}'")
    version = 2 if compat == "v2" else 3
    backing_file = opts.get("backing_file")
    backing_fmt = _enum(opts, "backing_fmt", "backing-fmt", BLOCK_DRIVERS)
    encrypt = _encrypt_options(opts)
    cluster_size = _int(opts.get("cluster_size", 65536))
    prealloc = _enum(opts, "preallocation", "preallocation", PREALLOC_MODES) or "off"
    lazy = _bool(opts, "lazy_refcounts", "lazy-refcounts") or False
    refcount_bits = _int(opts.get("refcount_bits", 16))
    ctype_name = _enum(opts, "compression_type", "compression-type", ("zlib", "zstd"))
    data_file = opts.get("data_file")

    if extended_l2 and version < 3:
        raise BlockError(errno.EINVAL, "Extended L2 entries are only supported with "
                         "compatibility level 1.1 and above (use version=v3 or greater)")
    cluster_bits = cluster_size.bit_length() - 1
    if cluster_bits < hdr.MIN_CLUSTER_BITS or cluster_bits > hdr.MAX_CLUSTER_BITS or \
            (1 << cluster_bits) != cluster_size:
        raise BlockError(errno.EINVAL, "Cluster size must be a power of two between 512 and 2048k")
    if extended_l2 and cluster_size < 512 * 32:
        raise BlockError(errno.EINVAL, "Extended L2 entries are only supported with cluster "
                                       "sizes of at least 16384 bytes")
    if backing_file and prealloc != "off" and not extended_l2:
        raise BlockError(errno.EINVAL, "Backing file and preallocation can only be used at "
                                       "the same time if extended_l2 is on")
    if backing_fmt and not backing_file:
        raise BlockError(errno.EINVAL, "Backing format cannot be used without backing file")
    if version < 3 and lazy:
        raise BlockError(errno.EINVAL, "Lazy refcounts only supported with compatibility level "
                                       "1.1 and above (use version=v3 or greater)")
    if refcount_bits > 64 or refcount_bits <= 0 or refcount_bits & (refcount_bits - 1):
        raise BlockError(errno.EINVAL, "Refcount width must be a power of two and may not "
                                       "exceed 64 bits")
    if version < 3 and refcount_bits != 16:
        raise BlockError(errno.EINVAL, "Different refcount widths than 16 bits require "
                         "compatibility level 1.1 or above (use version=v3 or greater)")
    refcount_order = refcount_bits.bit_length() - 1
    if data_file_raw and not data_file:
        raise BlockError(errno.EINVAL, "data-file-raw requires data-file")
    if data_file_raw and backing_file:
        raise BlockError(errno.EINVAL, "Backing file and data-file-raw cannot be used at the "
                                       "same time")
    if data_file_raw and prealloc == "off":
        prealloc = "metadata"
    if data_file and version < 3:
        raise BlockError(errno.EINVAL, "External data files are only supported with "
                         "compatibility level 1.1 and above (use version=v3 or greater)")
    compression_type = hdr.COMPRESSION_ZLIB
    if ctype_name and ctype_name != "zlib":
        if version < 3:
            raise BlockError(errno.EINVAL, "Non-zlib compression type is only supported with "
                             "compatibility level 1.1 and above (use version=v3 or greater)")
        compression_type = hdr.COMPRESSION_ZSTD
    _write_image(filename, size, version, cluster_bits, refcount_order, lazy, extended_l2,
                 compression_type, prealloc, backing_file, backing_fmt, data_file,
                 data_file_raw, encrypt)


def _encrypt_options(opts: dict) -> Optional[dict]:
    """The encrypt.* options as BlockdevQcow2Encryption (None: no encryption).

    'encryption=on' and 'encrypt.format=aes' both mean the qcow AES format.
    """
    enc = {k[len("encrypt."):]: v for k, v in opts.items()
           if k.startswith("encrypt.") and v is not None}
    legacy = opts.get("encryption")
    if legacy is not None and _bool(opts, "encryption", "encryption"):
        if "format" in enc:
            raise BlockError(errno.EINVAL, "'encrypt.format' and its alias 'encryption' "
                                           "can't be used at the same time")
        enc["format"] = "qcow"
    if not enc:
        return None
    if "format" not in enc:
        raise BlockError(errno.EINVAL, "Parameter 'encrypt.format' is missing")
    if enc["format"] == "aes":
        enc["format"] = "qcow"
    if enc["format"] not in ("qcow", "luks"):
        raise BlockError(errno.EINVAL, f"Parameter 'format' does not accept value "
                                       f"'{enc['format']}'")
    if enc["format"] == "qcow":
        for key in enc:
            if key not in ("format", "key-secret"):
                raise BlockError(errno.EINVAL, f"Parameter 'encrypt.{key}' is unexpected")
    return enc


def _write_image(filename: str, size: int, version: int, cluster_bits: int,
                 refcount_order: int, lazy: bool, extended_l2: bool, compression_type: int,
                 prealloc: str, backing_file: Optional[str], backing_fmt: Optional[str],
                 data_file: Optional[str], data_file_raw: bool,
                 encrypt: Optional[dict] = None) -> None:
    from emulator.block import io
    from emulator.block.file import FileNode
    from emulator.qcow2.allocator import alloc_clusters
    from emulator.qcow2.driver import Qcow2
    cs = 1 << cluster_bits
    h = hdr.Header(version=version, cluster_bits=cluster_bits, size=0,
                   refcount_table_offset=cs, refcount_table_clusters=1,
                   refcount_order=refcount_order, compression_type=compression_type,
                   header_length=hdr.HEADER_SIZE)
    if lazy:
        h.compatible_features |= hdr.COMPAT_LAZY_REFCOUNTS
    if compression_type != hdr.COMPRESSION_ZLIB:
        h.incompatible_features |= hdr.INCOMPAT_COMPRESSION
    if extended_l2:
        h.incompatible_features |= hdr.INCOMPAT_EXTL2
    if data_file:
        h.incompatible_features |= hdr.INCOMPAT_DATA_FILE
    if data_file_raw:
        h.autoclear_features |= hdr.AUTOCLEAR_DATA_FILE_RAW
    # the minimal header is written with the v3 layout whatever the version
    v3 = hdr.Header(**{**h.__dict__, "version": 3})
    raw = v3.pack()
    raw = raw[:4] + struct.pack(">I", version) + raw[8:]
    file = FileNode(filename)
    try:
        io.refresh_total_sectors(file)
        io.pwrite(file, 0, raw + bytes(cs - len(raw)))
        table = struct.pack(">Q", 2 * cs) + bytes(2 * cs - 8)
        io.pwrite(file, cs, table)
        file.unmap = False
        node = Qcow2.open(file, {"data-file.filename": data_file} if data_file else {}, False,
                          None)
        node.unmap = False
        io.refresh_total_sectors(node)
        if alloc_clusters(node, 3 * cs) != 0:
            raise BlockError(errno.EIO, "Huh, first cluster in empty image is already in use?")
        if data_file:
            node.image_data_file = data_file
        node.update_header()
        try:
            io.truncate(node, size, exact=False, prealloc=prealloc)
        except BlockError as e:
            raise BlockError(e.errno, f"Could not resize image: {e.message}")
        if backing_file:
            node.change_backing_file(backing_file, backing_fmt)
        if encrypt:
            from emulator.qcow2 import crypto
            crypto.set_up(node, dict(encrypt))
        io.flush(node)
        node.drv_close()
    finally:
        file.drv_close()
