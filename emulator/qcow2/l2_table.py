"""L2 tables: loading through the cache, allocation and copy-on-write of tables.

API summary (``s`` is an open Qcow2 node; one cache entry = one whole table):
- ``l2_load(s, l2_offset)`` -> bytearray of the table.
- ``l2_allocate(s, l1_index)``: new table (copy of the old one if any), L1
  entry updated with the COPIED flag.
- ``get_cluster_table(s, guest_offset)`` -> (l2_offset, table, l2_index),
  growing the L1 table and allocating/COWing the L2 table as needed.
"""
from __future__ import annotations

import errno

from emulator.block.node import BlockError
from emulator.qcow2.allocator import alloc_clusters, free_clusters
from emulator.qcow2.header import L1E_OFFSET_MASK, c_hex
from emulator.qcow2.l1_table import grow_l1_table, write_l1_entry
from emulator.qcow2.l2_entry import OFLAG_COPIED
from emulator.qcow2.refcount import DISCARD_ALWAYS, DISCARD_OTHER


def l2_load(s, l2_offset: int) -> bytearray:
    return s.l2_cache.get(l2_offset)


def l2_allocate(s, l1_index: int) -> None:
    old = s.l1_table[l1_index]
    table_bytes = s.l2_size * s.l2_entry_size
    l2_offset = alloc_clusters(s, table_bytes)
    try:
        if l2_offset == 0:
            s.signal_corruption(True, "Preventing invalid allocation of L2 table at offset 0")
            raise BlockError(errno.EIO)
        s.refcount_cache.flush()
        new = s.l2_cache.get_empty(l2_offset)
        if old & L1E_OFFSET_MASK:
            if s.blkdbg:
                s.blkdbg("l2_alloc_cow_read")
            new[:] = s.l2_cache.get(old & L1E_OFFSET_MASK)
        if s.blkdbg:
            s.blkdbg("l2_alloc_write")
        s.l2_cache.mark_dirty(l2_offset)
        s.l2_cache.flush()
        s.l1_table[l1_index] = l2_offset | OFLAG_COPIED
        write_l1_entry(s, l1_index)
    except BlockError:
        s.l1_table[l1_index] = old
        if l2_offset > 0:
            free_clusters(s, l2_offset, table_bytes, DISCARD_ALWAYS)
        raise


def get_cluster_table(s, offset: int) -> tuple[int, bytearray, int]:
    l1_index = offset >> (s.l2_bits + s.cluster_bits)
    if l1_index >= s.l1_size:
        grow_l1_table(s, l1_index + 1, False)
    l2_offset = s.l1_table[l1_index] & L1E_OFFSET_MASK
    if l2_offset & (s.cluster_size - 1):
        s.signal_corruption(True, f"L2 table offset {c_hex(l2_offset)} unaligned "
                                  f"(L1 index: {c_hex(l1_index)})")
        raise BlockError(errno.EIO)
    if not s.l1_table[l1_index] & OFLAG_COPIED:
        l2_allocate(s, l1_index)
        if l2_offset:
            free_clusters(s, l2_offset, s.l2_size * s.l2_entry_size, DISCARD_OTHER)
        l2_offset = s.l1_table[l1_index] & L1E_OFFSET_MASK
    table = l2_load(s, l2_offset)
    return l2_offset, table, (offset >> s.cluster_bits) & (s.l2_size - 1)
