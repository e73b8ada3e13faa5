"""L2 entries: layout (standard 8 bytes / extended 16 bytes) and classification.

API summary:
- flags: OFLAG_COPIED (bit 63), OFLAG_COMPRESSED (bit 62), OFLAG_ZERO (bit 0);
  L2E_OFFSET_MASK, L2E_STD_RESERVED_MASK; SUBCLUSTERS_PER_CLUSTER (32),
  BITMAP_ALL_ALLOC, BITMAP_ALL_ZEROES; ``sub_alloc(x)``, ``sub_zero(x)``,
  ``sub_alloc_range(x, y)``, ``sub_zero_range(x, y)`` (subclusters x..y-1).
- ``ClusterType`` and ``SubclusterType``: integer constants (QEMU's QCow2ClusterType
  and QCow2SubclusterType).
- ``cluster_type(entry, extended, data_file=False)`` and
  ``subcluster_type(entry, bitmap, sc_index, extended, data_file=False)``: QEMU's
  qcow2_get_cluster_type / qcow2_get_subcluster_type (INVALID checks the whole
  bitmap, not only subcluster sc_index).
- ``compressed_layout(cluster_bits)`` -> (csize_shift, csize_mask,
  offset_mask); ``compressed_host_range(entry, cluster_bits)`` -> (offset,
  nb_bytes) as qcow2_parse_compressed_l2_entry;
  ``compressed_entry(offset, nb_sectors_minus_1, cluster_bits)``.
- ``entry_size(extended)``; ``get_entry(table, index, extended)`` ->
  (entry, bitmap) and ``set_entry(table: bytearray, index, entry, bitmap,
  extended)`` on raw big-endian L2 table bytes; ``used_entries(table, count,
  extended)`` -> indices of the entries that are not all zeroes.
"""
from __future__ import annotations

import struct
from itertools import compress
from operator import or_

from emulator.zerospan import nonzero_span

OFLAG_COPIED = 1 << 63
OFLAG_COMPRESSED = 1 << 62
OFLAG_ZERO = 1 << 0
L2E_OFFSET_MASK = 0x00FFFFFFFFFFFE00
L2E_STD_RESERVED_MASK = 0x3F000000000001FE

SUBCLUSTERS_PER_CLUSTER = 32
COMPRESSED_SECTOR_SIZE = 512


def sub_alloc(x: int) -> int:
    return 1 << x


def sub_zero(x: int) -> int:
    return 1 << (x + 32)


def sub_alloc_range(x: int, y: int) -> int:
    """Allocation bits of subclusters x .. y-1."""
    return (1 << y) - (1 << x)


def sub_zero_range(x: int, y: int) -> int:
    """Zero bits of subclusters x .. y-1."""
    return sub_alloc_range(x, y) << 32


BITMAP_ALL_ALLOC = sub_alloc_range(0, 32)
BITMAP_ALL_ZEROES = sub_zero_range(0, 32)


class ClusterType:
    """QEMU's QCow2ClusterType values (plain ints: cheap to import and compare)."""

    UNALLOCATED = 0
    ZERO_PLAIN = 1
    ZERO_ALLOC = 2
    NORMAL = 3
    COMPRESSED = 4


class SubclusterType:
    """QEMU's QCow2SubclusterType values (plain ints)."""

    UNALLOCATED_PLAIN = 0
    UNALLOCATED_ALLOC = 1
    ZERO_PLAIN = 2
    ZERO_ALLOC = 3
    NORMAL = 4
    COMPRESSED = 5
    INVALID = 6


def entry_size(extended: bool) -> int:
    return 16 if extended else 8


def cluster_type(entry: int, extended: bool, data_file: bool = False) -> int:
    """Type of the whole cluster from its descriptor; with an external data file
    offset 0 is a valid host offset when the COPIED flag is set."""
    if entry & OFLAG_COMPRESSED:
        return ClusterType.COMPRESSED
    if entry & OFLAG_ZERO and not extended:
        return ClusterType.ZERO_ALLOC if entry & L2E_OFFSET_MASK else ClusterType.ZERO_PLAIN
    if not entry & L2E_OFFSET_MASK:
        if data_file and entry & OFLAG_COPIED:
            return ClusterType.NORMAL
        return ClusterType.UNALLOCATED
    return ClusterType.NORMAL


def subcluster_type(entry: int, bitmap: int, sc_index: int, extended: bool,
                    data_file: bool = False) -> int:
    """Type of subcluster ``sc_index`` (always 0 without extended L2)."""
    ctype = cluster_type(entry, extended, data_file)
    if ctype == ClusterType.COMPRESSED:
        return SubclusterType.COMPRESSED
    if not extended:
        return {
            ClusterType.ZERO_PLAIN: SubclusterType.ZERO_PLAIN,
            ClusterType.ZERO_ALLOC: SubclusterType.ZERO_ALLOC,
            ClusterType.NORMAL: SubclusterType.NORMAL,
            ClusterType.UNALLOCATED: SubclusterType.UNALLOCATED_PLAIN,
        }[ctype]
    if ctype == ClusterType.NORMAL:
        if (bitmap >> 32) & bitmap:
            return SubclusterType.INVALID
        if bitmap & sub_zero(sc_index):
            return SubclusterType.ZERO_ALLOC
        if bitmap & sub_alloc(sc_index):
            return SubclusterType.NORMAL
        return SubclusterType.UNALLOCATED_ALLOC
    if bitmap & BITMAP_ALL_ALLOC:
        return SubclusterType.INVALID
    if bitmap & sub_zero(sc_index):
        return SubclusterType.ZERO_PLAIN
    return SubclusterType.UNALLOCATED_PLAIN


def compressed_layout(cluster_bits: int) -> tuple[int, int, int]:
    """(csize_shift, csize_mask, cluster_offset_mask) for compressed descriptors."""
    shift = 62 - (cluster_bits - 8)
    return shift, (1 << (cluster_bits - 8)) - 1, (1 << shift) - 1


def compressed_host_range(entry: int, cluster_bits: int) -> tuple[int, int]:
    """Host offset and byte count covered by a compressed descriptor."""
    shift, mask, omask = compressed_layout(cluster_bits)
    offset = entry & omask
    nb_csectors = ((entry >> shift) & mask) + 1
    nb_bytes = nb_csectors * COMPRESSED_SECTOR_SIZE - (offset & (COMPRESSED_SECTOR_SIZE - 1))
    return offset, nb_bytes


def compressed_entry(offset: int, nb_sectors_minus_1: int, cluster_bits: int) -> int:
    """Descriptor of a compressed cluster at ``offset`` (flags included)."""
    shift = compressed_layout(cluster_bits)[0]
    return OFLAG_COMPRESSED | (nb_sectors_minus_1 << shift) | offset


def get_entry(table: bytes, index: int, extended: bool) -> tuple[int, int]:
    """(descriptor, bitmap) at ``index`` of a raw L2 table; bitmap 0 for standard entries."""
    if extended:
        return struct.unpack_from(">QQ", table, index * 16)
    return struct.unpack_from(">Q", table, index * 8)[0], 0


def set_entry(table: bytearray, index: int, entry: int, bitmap: int, extended: bool) -> None:
    """Store (descriptor, bitmap) at ``index`` of a raw L2 table."""
    if extended:
        struct.pack_into(">QQ", table, index * 16, entry, bitmap)
    else:
        struct.pack_into(">Q", table, index * 8, entry)


def used_entries(table: bytes, count: int, extended: bool) -> list[int]:
    """Indices of the first ``count`` entries of a raw L2 table with any bit set."""
    size = entry_size(extended)
    first, end = nonzero_span(table, count * size)
    lo, hi = first // size, -(-end // size)
    if extended:
        words = struct.unpack_from(f">{2 * (hi - lo)}Q", table, lo * 16)
        return list(compress(range(lo, hi), map(or_, words[0::2], words[1::2])))
    return list(compress(range(lo, hi), struct.unpack_from(f">{hi - lo}Q", table, lo * 8)))
