"""qcow2 size calculations: qcow2_measure, qcow2_calc_prealloc_size and friends.

``measure(values, in_node)`` answers qemu-img measure for a qcow2 target.
``values`` maps creation option names (qemu-img's -o names) to their typed
values (bool, int or str) as the option parser left them; absent options take
QEMU's defaults.  Errors are ``BlockError`` carrying QEMU's message, raised in
the order QEMU validates the options.
"""
from __future__ import annotations

import errno
from typing import NamedTuple, Optional

from emulator.block.node import BlockError

DEFAULT_CLUSTER_SIZE = 65536
L1E_SIZE = 8
U64_MASK = (1 << 64) - 1
PREALLOC_MODES = ("off", "metadata", "falloc", "full")


class MeasureInfo(NamedTuple):
    """BlockMeasureInfo: bitmaps is None when the source cannot carry bitmaps."""

    required: int
    fully_allocated: int
    bitmaps: Optional[int] = None


def _div_round_up(n: int, d: int) -> int:
    return -(-n // d)


def _round_up(n: int, a: int) -> int:
    return _div_round_up(n, a) * a


def calc_prealloc_size(total_size: int, cluster_size: int, refcount_order: int,
                       extended_l2: bool) -> int:
    """qcow2_calc_prealloc_size: file size of a fully allocated image, metadata included."""
    l2e_size = 16 if extended_l2 else 8
    aligned_total = _round_up(total_size, cluster_size)
    meta = cluster_size  # header
    nl2e = _round_up(aligned_total // cluster_size, cluster_size // l2e_size)
    meta += nl2e * l2e_size
    nl1e = _round_up(nl2e * l2e_size // cluster_size, cluster_size // L1E_SIZE)
    meta += nl1e * L1E_SIZE
    from emulator.qcow2.refcount import refcount_metadata_size
    meta += refcount_metadata_size((meta + aligned_total) // cluster_size, cluster_size,
                                   refcount_order, False)[0]
    return meta + aligned_total


def _cluster_size(values: dict, extended_l2: bool) -> int:
    cluster_size = values.get("cluster_size", DEFAULT_CLUSTER_SIZE)
    bits = (cluster_size & -cluster_size).bit_length() - 1 if cluster_size & U64_MASK else 32
    if bits < 9 or bits > 21 or (1 << bits) != cluster_size:
        raise BlockError(errno.EINVAL, "Cluster size must be a power of two between 512 and 2048k")
    if extended_l2 and cluster_size < 512 * 32:
        raise BlockError(errno.EINVAL, "Extended L2 entries are only supported with cluster "
                                       "sizes of at least 16384 bytes")
    return cluster_size


def _version(values: dict) -> int:
    compat = values.get("compat")
    if compat is None or compat == "1.1":
        return 3
    if compat == "0.10":
        return 2
    raise BlockError(errno.EINVAL, f"Invalid compatibility level: '{compat}'")


def _refcount_bits(values: dict, version: int) -> int:
    bits = values.get("refcount_bits", 16)
    if bits > 64 or bits <= 0 or bits & (bits - 1):
        raise BlockError(errno.EINVAL, "Refcount width must be a power of two and may not "
                                       "exceed 64 bits")
    if version < 3 and bits != 16:
        raise BlockError(errno.EINVAL, "Different refcount widths than 16 bits require "
                         "compatibility level 1.1 or above (use compat=1.1 or greater)")
    return bits


def _allocated_bytes(in_node, ssize: int, cluster_size: int) -> int:
    """Bytes of the whole clusters holding data of ``in_node`` (zero areas skipped)."""
    from emulator.block import io
    from emulator.block.node import BDRV_BLOCK_ALLOCATED, BDRV_BLOCK_DATA, BDRV_BLOCK_ZERO
    required = 0
    offset = 0
    while offset < ssize:
        try:
            st, _depth = io.block_status_above(in_node, None, offset, ssize - offset)
        except BlockError as e:
            raise BlockError(e.errno, f"Unable to get block status: {e.message}") from None
        pnum = st.pnum
        if st.flags & BDRV_BLOCK_ZERO:
            pass
        elif st.flags & (BDRV_BLOCK_DATA | BDRV_BLOCK_ALLOCATED) == \
                BDRV_BLOCK_DATA | BDRV_BLOCK_ALLOCATED:
            pnum = _round_up(offset + pnum, cluster_size) - offset
            required += offset % cluster_size + pnum
        offset += pnum
    return required


def measure(values: dict, in_node=None) -> MeasureInfo:
    """qcow2_measure: required and fully allocated sizes of a qcow2 image."""
    extended_l2 = bool(values.get("extended_l2", False))
    cluster_size = _cluster_size(values, extended_l2)
    version = _version(values)
    refcount_bits = _refcount_bits(values, version)
    prealloc = values.get("preallocation") or "off"
    if prealloc not in PREALLOC_MODES:
        raise BlockError(errno.EINVAL, f"invalid parameter value: {prealloc}")
    has_backing_file = values.get("backing_file") is not None
    luks_payload_size = 0
    if values.get("encrypt.format") == "luks":
        from emulator.qcow2.crypto import luks_header_length
        luks_payload_size = _round_up(luks_header_length(values), cluster_size)
    virtual_size = _round_up(values.get("size", 0), cluster_size) & U64_MASK
    l2e_size = 16 if extended_l2 else 8
    l2_tables = _div_round_up(virtual_size // cluster_size, cluster_size // l2e_size)
    if l2_tables * L1E_SIZE > 32 * 1024 * 1024:
        raise BlockError(errno.EFBIG, "The image size is too large "
                                      "(try using a larger cluster size)")
    required = 0
    if in_node is not None:
        from emulator.block import io
        try:
            ssize = io.getlength(in_node)
        except BlockError as e:
            raise BlockError(e.errno, f"Unable to get image virtual_size: {e.message}") from None
        virtual_size = _round_up(ssize, cluster_size)
        if has_backing_file:
            required = virtual_size
        else:
            required = _allocated_bytes(in_node, ssize, cluster_size)
    if prealloc in ("full", "falloc"):
        required = virtual_size
    refcount_order = refcount_bits.bit_length() - 1
    fully = luks_payload_size + calc_prealloc_size(virtual_size, cluster_size, refcount_order,
                                                   extended_l2)
    bitmaps = None
    if version >= 3 and in_node is not None and _supports_bitmaps(in_node):
        bitmaps = persistent_bitmaps_size(in_node, cluster_size)
    return MeasureInfo((fully - virtual_size + required) & U64_MASK, fully, bitmaps)


def _supports_bitmaps(node) -> bool:
    """bdrv_supports_persistent_dirty_bitmap: only qcow2 v3 nodes can store bitmaps."""
    return node.format_name == "qcow2" and node.qcow_version >= 3


def persistent_bitmaps_size(node, cluster_size: int) -> int:
    """qcow2_get_persistent_dirty_bitmap_size for the bitmaps stored in ``node``."""
    from emulator.block import io
    length = io.getlength(node)
    total = 0
    dir_size = 0
    for name_size, granularity_bits in _bitmap_directory(node):
        nbytes = _div_round_up(_div_round_up(length, 1 << granularity_bits), 8)
        clusters = _div_round_up(nbytes, cluster_size)
        total += clusters * cluster_size
        total += _round_up(clusters * 8, cluster_size)
        dir_size += _round_up(24 + name_size, 8)
    return total + _round_up(dir_size, cluster_size)


def _bitmap_directory(node) -> list[tuple[int, int]]:
    """(name length, granularity bits) of each entry of the bitmap directory."""
    import struct
    payload = getattr(node, "bitmaps_extension", None)
    if payload is None or not node.autoclear_features & 1 or len(payload) < 24:
        return []
    count, _reserved, dir_size, dir_offset = struct.unpack(">IIQQ", payload[:24])
    from emulator.block import io
    area = io.pread(node.file, dir_offset, dir_size)
    out = []
    pos = 0
    for _ in range(count):
        _table, _tsize, _flags, _type, gbits, name_size, extra = \
            struct.unpack_from(">QIIBBHI", area, pos)
        out.append((name_size, gbits))
        pos += _round_up(24 + extra + name_size, 8)
    return out
