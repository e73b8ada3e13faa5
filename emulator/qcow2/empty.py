"""Emptying an image after qemu-img commit (qcow2_make_empty, make_completely_empty).

API summary: ``make_empty(s)``: v3 images without snapshots, bitmaps, LUKS or
a data file whose L1 table fits with the header, refcount table and one
refcount block under one refcount block are reset to a fresh image (file
truncated behind the L1 table); any other image gets every cluster discarded
(full discard, DISCARD_SNAPSHOT). Raises BlockError.
"""
from __future__ import annotations

import errno
import struct

from emulator.block.node import BlockError

INT_MAX = (1 << 31) - 1


def make_empty(s) -> None:
    from emulator.qcow2.cluster import cluster_discard
    from emulator.qcow2.refcount import DISCARD_SNAPSHOT
    cs = s.cluster_size
    l1_clusters = -(-s.l1_size // (cs // 8))
    if s.qcow_version >= 3 and not s.snapshots and not s.nb_bitmaps and \
            3 + l1_clusters <= s.refcount_block_size and s.crypt_method != 2 and \
            not s.has_data_file:
        _make_completely_empty(s, l1_clusters)
        return
    step = INT_MAX // cs * cs
    offset = 0
    while offset < s.size:
        cluster_discard(s, offset, min(step, s.size - offset), DISCARD_SNAPSHOT, True)
        offset += step


def _make_completely_empty(s, l1_clusters: int) -> None:
    from emulator.block import io
    from emulator.qcow2.allocator import alloc_clusters
    cs = s.cluster_size
    for cache in (s.l2_cache, s.refcount_cache):
        cache.flush()
        cache.clear()
    s.mark_dirty()
    event = s.blkdbg or (lambda name: None)
    try:
        event("l1_update")
        io.pwrite_zeroes(s.file, s.l1_table_offset, l1_clusters * cs, 0)
        s.l1_table[:] = [0] * s.l1_size
        event("empty_image_prepare")
        io.pwrite_zeroes(s.file, cs, (2 + l1_clusters) * cs, 0)
        event("l1_update")
        event("reftable_update")
        s.file_write_sync(40, struct.pack(">QQI", 3 * cs, cs, 1))
        s.l1_table_offset = 3 * cs
        s.refcount_table_offset = cs
        s.refcount_table_size = cs // 8
        s.refcount_table = [0] * (cs // 8)
        s.max_refcount_table_index = 0
        event("refblock_alloc")
        s.file_write_sync(cs, struct.pack(">Q", 2 * cs))
        s.refcount_table[0] = 2 * cs
        s.free_cluster_index = 0
        if alloc_clusters(s, 3 * cs + s.l1_size * 8) != 0:
            raise BlockError(errno.EIO, "First cluster in emptied image is in use")
    except BlockError:
        s.dead = True  # QEMU drops the driver: the refcounts on disk are broken
        raise
    s.mark_clean()
    io.truncate(s.file, (3 + l1_clusters) * cs, exact=False, prealloc="off")
