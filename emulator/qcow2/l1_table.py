"""The active L1 table: entries on disk, growth (qcow2-cluster.c).

API summary: ``load_l1_table(s)``; ``write_l1_entry(s, index)`` writes one
8-byte entry; ``grow_l1_table(s, min_size, exact)`` moves the table to newly
allocated clusters (1.5x growth unless exact) and frees the old ones.
"""
from __future__ import annotations

import errno
import struct

from emulator.block.node import BlockError
from emulator.qcow2.allocator import alloc_clusters, free_clusters
from emulator.qcow2.refcount import DISCARD_OTHER

INT_MAX = (1 << 31) - 1
QCOW_MAX_L1_SIZE = 32 * 1024 * 1024


def load_l1_table(s) -> None:
    raw = s.file_read(s.l1_table_offset, s.l1_size * 8) if s.l1_size else b""
    s.l1_table = list(struct.unpack(f">{s.l1_size}Q", raw))


def write_l1_entry(s, index: int) -> None:
    """qcow2_write_l1_entry: the entries of the file's request alignment holding
    ``index`` (zero-padded past the end of the table), written synchronously."""
    from emulator.qcow2.overlap import OL_ACTIVE_L1, pre_write_overlap_check
    n = max(8, min(s.file.request_alignment, s.cluster_size)) // 8
    start = index - index % n
    entries = s.l1_table[start:start + n]
    buf = struct.pack(f">{len(entries)}Q", *entries) + bytes(8 * (n - len(entries)))
    offset = s.l1_table_offset + 8 * start
    pre_write_overlap_check(s, OL_ACTIVE_L1, offset, len(buf))
    if s.blkdbg:
        s.blkdbg("l1_update")
    s.file_write_sync(offset, buf)


def grow_l1_table(s, min_size: int, exact: bool) -> None:
    if min_size <= s.l1_size:
        return
    if min_size > INT_MAX // 8:
        raise BlockError(errno.EFBIG)
    if exact:
        new_size = min_size
    else:
        new_size = s.l1_size or 1
        while min_size > new_size:
            new_size = -(-(new_size * 3) // 2)
    if new_size > QCOW_MAX_L1_SIZE // 8:
        raise BlockError(errno.EFBIG)
    table = s.l1_table + [0] * (new_size - s.l1_size)
    if s.blkdbg:
        s.blkdbg("l1_grow_alloc_table")
    new_offset = alloc_clusters(s, new_size * 8)
    try:
        from emulator.qcow2.overlap import pre_write_overlap_check
        s.refcount_cache.flush()
        pre_write_overlap_check(s, 0, new_offset, new_size * 8)
        if s.blkdbg:
            s.blkdbg("l1_grow_write_table")
        s.file_write_sync(new_offset, struct.pack(f">{new_size}Q", *table))
        if s.blkdbg:
            s.blkdbg("l1_grow_activate_table")
        s.file_write_sync(36, struct.pack(">IQ", new_size, new_offset))
    except BlockError:
        free_clusters(s, new_offset, new_size * 8, DISCARD_OTHER)
        raise
    old_offset, old_size = s.l1_table_offset, s.l1_size
    s.l1_table_offset, s.l1_table, s.l1_size = new_offset, table, new_size
    free_clusters(s, old_offset, old_size * 8, DISCARD_OTHER)
