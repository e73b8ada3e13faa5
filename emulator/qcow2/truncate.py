"""Resizing a qcow2 image (qcow2_co_truncate) and metadata preallocation.

API summary: ``truncate(s, size, exact, prealloc, flags)`` grows or shrinks
the image with preallocation "off", "metadata", "falloc" or "full" and
raises BlockError with QEMU's message; ``preallocate(s, start, end, mode)``
is preallocate_co.
"""
from __future__ import annotations

import errno
import struct

from emulator.block.node import BDRV_REQ_ZERO_WRITE, BlockError, errno_message
from emulator.qcow2.allocator import alloc_clusters_at, free_clusters
from emulator.qcow2.cluster import (
    L2Meta, COWRegion, abort_meta, alloc_host_offset, cluster_discard, link_l2,
    subcluster_zeroize,
)
from emulator.qcow2.l1_table import grow_l1_table
from emulator.qcow2.refcount import (
    DISCARD_ALWAYS, DISCARD_OTHER, get_last_cluster, refcount_area, shrink_reftable,
)

INT_MAX = (1 << 31) - 1


def _io():
    from emulator.block import io
    return io


def preallocate(s, offset: int, new_length: int, mode: str) -> None:
    """Allocate clusters (L2 entries pointing at them) for [offset, new_length)."""
    nbytes = new_length - offset
    host = 0
    cur = 0
    while nbytes:
        want = min(nbytes, INT_MAX & ~(s.cluster_size - 1))
        try:
            cur, host, metas = alloc_host_offset(s, offset, want)
        except BlockError as e:
            raise BlockError(e.errno, f"Allocating clusters failed: {e.message}")
        try:
            for m in metas:
                m.prealloc = True
                link_l2(s, m)
        except BlockError as e:
            for m in metas:
                abort_meta(s, m)
            raise BlockError(e.errno, f"Mapping clusters failed: {e.message}")
        nbytes -= cur
        offset += cur
    io = _io()
    file_length = io.getlength(s.data_file)
    if host + cur > file_length:
        io.truncate(s.data_file, host + cur, exact=False,
                    prealloc="off" if mode == "metadata" else mode)


def truncate(s, offset: int, exact: bool, prealloc: str, flags: int) -> None:
    if prealloc not in ("off", "metadata", "falloc", "full"):
        raise BlockError(errno.ENOTSUP, f"Unsupported preallocation mode '{prealloc}'")
    if offset % 512:
        raise BlockError(errno.EINVAL, "The new size must be a multiple of 512")
    if s.nb_snapshots and s.qcow_version < 3:
        raise BlockError(errno.ENOTSUP, "Can't resize a v2 image which has snapshots")
    if s.nb_bitmaps:
        from emulator.qcow2.bitmap_store import truncate_check
        truncate_check(s)
    io = _io()
    cs = s.cluster_size
    old_length = s.size
    shift = s.cluster_bits + s.l2_bits
    new_l1_size = (offset + (1 << shift) - 1) >> shift
    if offset < old_length:
        if prealloc != "off":
            raise BlockError(errno.EINVAL, "Preallocation can't be used for shrinking an image")
        start = -(-offset // cs) * cs
        if old_length > start:
            try:
                cluster_discard(s, start, old_length - start, DISCARD_ALWAYS, True)
            except BlockError as e:
                raise BlockError(e.errno, f"Failed to discard cropped clusters: {e.message}")
        try:
            _shrink_l1_table(s, new_l1_size)
        except BlockError as e:
            raise BlockError(e.errno, f"Failed to reduce the number of L2 tables: "
                                      f"{errno_message(e.errno)}")
        try:
            shrink_reftable(s)
        except BlockError as e:
            raise BlockError(e.errno, f"Failed to discard unused refblocks: {e.message}")
        old_file_size = io.getlength(s.file)
        last = get_last_cluster(s, old_file_size)
        if (last + 1) * cs < old_file_size:
            try:
                io.truncate(s.file, (last + 1) * cs, exact=False, prealloc="off")
            except BlockError as e:
                from emulator.report import warn_report
                warn_report(f"Failed to truncate the tail of the image: {e.message}")
    else:
        try:
            grow_l1_table(s, new_l1_size, True)
        except BlockError as e:
            raise BlockError(e.errno, f"Failed to grow the L1 table: {e.message}")
        if s.data_file_raw and prealloc == "off":
            prealloc = "metadata"
    if prealloc == "off":
        if s.has_data_file:
            io.truncate(s.data_file, offset, exact=exact, prealloc="off")
    elif prealloc == "metadata" or s.has_data_file:
        preallocate(s, old_length, offset, prealloc)
    elif prealloc in ("falloc", "full"):
        if _preallocate_data(s, old_length, offset, prealloc, flags):
            flags &= ~BDRV_REQ_ZERO_WRITE
    if flags & BDRV_REQ_ZERO_WRITE and offset > old_length:
        sub = s.subcluster_size
        zero_start = -(-old_length // sub) * sub
        if offset > zero_start:
            try:
                subcluster_zeroize(s, zero_start, offset - zero_start, 0)
            except BlockError as e:
                raise BlockError(e.errno, f"Failed to zero out new clusters: {errno_message(e.errno)}")
        if zero_start > old_length:
            n = min(zero_start, offset) - old_length
            s.drv_pwritev(old_length, bytes(n), 0)
    if prealloc != "off":
        try:
            s.write_caches()
        except BlockError as e:
            raise BlockError(e.errno, f"Failed to flush the preallocated area to disk: "
                                      f"{errno_message(e.errno)}")
    s.size = offset
    try:
        s.file_write_sync(24, struct.pack(">Q", offset))
    except BlockError as e:
        raise BlockError(e.errno, f"Failed to update the image size: {errno_message(e.errno)}")
    # qcow2_update_options: the caches are flushed and made anew for the new size
    s.flush_all_caches()
    s._create_caches()


def _preallocate_data(s, old_length: int, offset: int, prealloc: str, flags: int) -> bool:
    """falloc/full: data clusters after new refcount structures at the file end.

    Returns True when the file layer already zeroed the new area."""
    io = _io()
    cs = s.cluster_size
    old_file_size = io.getlength(s.file)
    try:
        last = get_last_cluster(s, old_file_size)
        old_file_size = (last + 1) * cs
    except BlockError:
        old_file_size = -(-old_file_size // cs) * cs
    nb_new_data = (-(-offset // cs) * cs - (old_length & ~(cs - 1))) >> s.cluster_bits
    nb_new_l2 = -(-nb_new_data // (cs // s.l2_entry_size)) + 1
    try:
        allocation_start = refcount_area(s, old_file_size, nb_new_data + nb_new_l2, True, 0, 0)
    except BlockError as e:
        raise BlockError(e.errno, f"Failed to resize refcount structures: {e.message}")
    alloc_clusters_at(s, allocation_start, nb_new_data)
    new_file_size = allocation_start + nb_new_data * cs
    need_alloc = False
    done = False
    if flags & BDRV_REQ_ZERO_WRITE:
        try:
            io.truncate(s.file, new_file_size, exact=False, prealloc=prealloc,
                        flags=BDRV_REQ_ZERO_WRITE)
            done = need_alloc = True
        except BlockError:
            pass
    if not done:
        try:
            io.truncate(s.file, new_file_size, exact=False, prealloc=prealloc)
        except BlockError as e:
            free_clusters(s, allocation_start, nb_new_data * cs, DISCARD_OTHER)
            raise BlockError(e.errno, f"Failed to resize underlying file: {e.message}")
    host = allocation_start
    guest = old_length
    while nb_new_data:
        l2_index = (guest >> s.cluster_bits) & (s.l2_size - 1)
        n = min(nb_new_data, s.l2_size - l2_index)
        cow_len = guest & (cs - 1)
        guest &= ~(cs - 1)
        m = L2Meta(offset=guest, alloc_offset=host, nb_clusters=n, keep_old_clusters=False,
                   cow_start=COWRegion(0, cow_len), cow_end=COWRegion(n * cs, 0),
                   prealloc=not need_alloc)
        link_l2(s, m)
        guest += n * cs
        host += n * cs
        nb_new_data -= n
    return need_alloc


def _shrink_l1_table(s, new_l1_size: int) -> None:
    """qcow2_shrink_l1_table: drop L2 tables beyond the new end."""
    from emulator.qcow2.header import L1E_OFFSET_MASK
    if new_l1_size >= s.l1_size:
        return
    if s.blkdbg:
        s.blkdbg("l1_shrink_write_table")
    try:
        _io().pwrite_zeroes(s.file, s.l1_table_offset + new_l1_size * 8,
                            (s.l1_size - new_l1_size) * 8, 0)
        if s.blkdbg:  # the flush that follows can only fail under blkdebug
            _io().flush(s.file)
    except BlockError:
        # the table on disk may be partly cleared: forget those entries
        s.l1_table[new_l1_size:] = [0] * (s.l1_size - new_l1_size)
        raise
    if s.blkdbg:
        s.blkdbg("l1_shrink_free_l2_clusters")
    for i in range(s.l1_size - 1, new_l1_size - 1, -1):
        l2_offset = s.l1_table[i] & L1E_OFFSET_MASK
        if not l2_offset:
            continue
        free_clusters(s, l2_offset, s.cluster_size, DISCARD_ALWAYS)
        s.l1_table[i] = 0
