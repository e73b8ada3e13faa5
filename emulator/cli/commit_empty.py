"""qcow2_make_empty for qemu-img commit, from outside the driver.

Workaround until the qcow2 driver offers ``make_empty()`` (docs/requests.md):
v3 images without snapshots or bitmaps are reset to a fresh image with the
same header (make_completely_empty); others get every cluster discarded.
"""
from __future__ import annotations

import errno
import struct

INT_MAX = (1 << 31) - 1


def make_empty(s) -> None:
    """bdrv_make_empty on an opened qcow2 node ``s``; raises BlockError."""
    from emulator.block.node import BlockError
    if s.format_name != "qcow2":
        raise BlockError(errno.ENOTSUP)
    cs = s.cluster_size
    l1_clusters = -(-s.l1_size // (cs // 8))
    simple = (s.qcow_version >= 3 and not s.nb_snapshots
              and not (getattr(s, "bitmaps_extension", None) and s.autoclear_features & 1)
              and 3 + l1_clusters <= s.refcount_block_size and s.crypt_method != 2
              and not getattr(s, "has_data_file", False))
    if simple:
        _make_completely_empty(s, l1_clusters)
        return
    from emulator.qcow2.cluster import cluster_discard
    from emulator.qcow2.refcount import DISCARD_SNAPSHOT
    step = INT_MAX // cs * cs
    end = s.size
    offset = 0
    while offset < end:
        cluster_discard(s, offset, min(step, end - offset), DISCARD_SNAPSHOT, True)
        offset += step


def _make_completely_empty(s, l1_clusters: int) -> None:
    """make_completely_empty: header kept, refcount table, one refblock and L1 rebuilt."""
    from emulator.block import io
    from emulator.block.node import BlockError
    from emulator.qcow2.allocator import alloc_clusters
    cs = s.cluster_size
    for cache in (s.l2_cache, s.refcount_cache):
        cache.flush()
        cache.clear()
    s.mark_dirty()
    io.pwrite_zeroes(s.file, s.l1_table_offset, l1_clusters * cs, 0)
    s.l1_table = [0] * s.l1_size
    io.pwrite_zeroes(s.file, cs, (2 + l1_clusters) * cs, 0)
    io.pwrite(s.file, 40, struct.pack(">QQI", 3 * cs, cs, 1))
    io.flush(s.file)
    s.l1_table_offset = 3 * cs
    s.refcount_table_offset = cs
    s.refcount_table_size = cs // 8
    s.refcount_table = [0] * (cs // 8)
    s.max_refcount_table_index = 0
    io.pwrite(s.file, cs, struct.pack(">Q", 2 * cs))
    io.flush(s.file)
    s.refcount_table[0] = 2 * cs
    s.free_cluster_index = 0
    if alloc_clusters(s, 3 * cs + s.l1_size * 8) != 0:
        raise BlockError(errno.EIO, "First cluster in emptied image is in use")
    s.mark_clean()
    io.truncate(s.file, (3 + l1_clusters) * cs, exact=False, prealloc="off")
