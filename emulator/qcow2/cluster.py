"""Guest-to-host mapping and cluster allocation for writes (qcow2-cluster.c).

API summary (``s`` is an open Qcow2 node):
- ``get_host_offset(s, offset, nbytes)`` -> (nbytes, host_offset,
  SubclusterType): contiguous run of one subcluster type; host_offset is the
  descriptor for compressed clusters, 0 when unallocated.
- ``alloc_host_offset(s, offset, nbytes)`` -> (nbytes, host_offset, metas):
  find/allocate a contiguous host area for a write; ``metas`` (newest first)
  must then be passed to ``link_l2(s, m)`` after the data is written.
- ``L2Meta``: one allocation (clusters, COW regions, flags).
- ``cluster_discard(s, offset, nbytes, discard_type, full_discard)``,
  ``subcluster_zeroize(s, offset, nbytes, flags)``,
  ``alloc_compressed_cluster_offset(s, offset, size)`` -> host offset.
"""
from __future__ import annotations

import errno

from emulator.block.node import BDRV_REQ_MAY_UNMAP, BlockError
from emulator.qcow2 import l2_entry as l2e
from emulator.qcow2.allocator import (
    alloc_bytes, alloc_clusters, alloc_clusters_at, free_any_cluster,
)
from emulator.qcow2.header import INCOMPAT_DIRTY, L1E_OFFSET_MASK, c_hex
from emulator.qcow2.l2_entry import SubclusterType as ST
from emulator.qcow2.l2_table import get_cluster_table, l2_load
from emulator.qcow2.refcount import DISCARD_NEVER, DISCARD_REQUEST, process_discards

INV_OFFSET = -1
BDRV_REQUEST_MAX_BYTES = 0x7FFFFE00


def _cto32(v: int) -> int:
    """Count of trailing one bits of the 32-bit value ``v``."""
    v &= 0xFFFFFFFF
    return (~v & (v + 1)).bit_length() - 1


def _ctz32(v: int) -> int:
    v &= 0xFFFFFFFF
    return 32 if not v else (v & -v).bit_length() - 1


def _clz32(v: int) -> int:
    return 32 - (v & 0xFFFFFFFF).bit_length()


def subcluster_range_type(s, entry: int, bitmap: int, sc_from: int) -> tuple[int, ST]:
    """(count of subclusters from sc_from with the same type, type); count < 0 if invalid."""
    t = l2e.subcluster_type(entry, bitmap, sc_from, s.extended_l2, s.has_data_file)
    if t == ST.INVALID:
        return -errno.EINVAL, t
    if not s.extended_l2 or t == ST.COMPRESSED:
        return s.subclusters_per_cluster - sc_from, t
    if t == ST.NORMAL:
        return _cto32((bitmap | l2e.sub_alloc_range(0, sc_from)) & 0xFFFFFFFF) - sc_from, t
    if t in (ST.ZERO_PLAIN, ST.ZERO_ALLOC):
        return _cto32(((bitmap | l2e.sub_zero_range(0, sc_from)) >> 32) & 0xFFFFFFFF) - sc_from, t
    val = ((bitmap >> 32) | bitmap) & ~l2e.sub_alloc_range(0, sc_from) & 0xFFFFFFFF
    return _ctz32(val) - sc_from, t


class _InvalidEntry(Exception):
    def __init__(self, index: int) -> None:
        super().__init__(index)
        self.index = index


def count_contiguous_subclusters(s, nb_clusters: int, sc_index: int, table: bytes,
                                 l2_index: int) -> int:
    count = 0
    check_offset = False
    expected_offset = 0
    expected_type = ST.NORMAL
    for i in range(nb_clusters):
        first_sc = sc_index if i == 0 else 0
        entry, bitmap = l2e.get_entry(table, l2_index + i, s.extended_l2)
        ret, t = subcluster_range_type(s, entry, bitmap, first_sc)
        if ret < 0:
            raise _InvalidEntry(l2_index + i)
        if i == 0:
            if t == ST.COMPRESSED:
                return ret
            expected_type = t
            expected_offset = entry & l2e.L2E_OFFSET_MASK
            check_offset = t in (ST.NORMAL, ST.ZERO_ALLOC, ST.UNALLOCATED_ALLOC)
        elif t != expected_type:
            break
        elif check_offset:
            expected_offset += s.cluster_size
            if expected_offset != entry & l2e.L2E_OFFSET_MASK:
                break
        count += ret
        if first_sc + ret < s.subclusters_per_cluster:
            break
    return count


def get_host_offset(s, offset: int, nbytes: int) -> tuple[int, int, ST]:
    cs = s.cluster_size
    oic = offset & (cs - 1)
    bytes_needed = nbytes + oic
    l2_index = (offset >> s.cluster_bits) & (s.l2_size - 1)
    bytes_available = (s.l2_size - l2_index) << s.cluster_bits
    bytes_needed = min(bytes_needed, bytes_available)
    host = 0
    l1_index = offset >> (s.l2_bits + s.cluster_bits)
    t = ST.UNALLOCATED_PLAIN
    l2_offset = s.l1_table[l1_index] & L1E_OFFSET_MASK if l1_index < s.l1_size else 0
    if l2_offset:
        if l2_offset & (cs - 1):
            s.signal_corruption(True, f"L2 table offset {c_hex(l2_offset)} unaligned "
                                      f"(L1 index: {c_hex(l1_index)})")
            raise BlockError(errno.EIO)
        table = l2_load(s, l2_offset)
        sc_index = (offset >> s.subcluster_bits) & (s.subclusters_per_cluster - 1)
        entry, bitmap = l2e.get_entry(table, l2_index, s.extended_l2)
        nb_clusters = -(-bytes_needed // cs)
        t = l2e.subcluster_type(entry, bitmap, sc_index, s.extended_l2, s.has_data_file)
        if s.qcow_version < 3 and t in (ST.ZERO_PLAIN, ST.ZERO_ALLOC):
            s.signal_corruption(True, f"Zero cluster entry found in pre-v3 image "
                                      f"(L2 offset: {c_hex(l2_offset)}, "
                                      f"L2 index: {c_hex(l2_index)})")
            raise BlockError(errno.EIO)
        if t == ST.COMPRESSED:
            if s.has_data_file:
                s.signal_corruption(True, f"Compressed cluster entry found in image with "
                                          f"external data file (L2 offset: {c_hex(l2_offset)}, "
                                          f"L2 index: {c_hex(l2_index)})")
                raise BlockError(errno.EIO)
            host = entry
        elif t in (ST.ZERO_ALLOC, ST.NORMAL, ST.UNALLOCATED_ALLOC):
            hc = entry & l2e.L2E_OFFSET_MASK
            host = hc + oic
            if hc & (cs - 1):
                s.signal_corruption(True, f"Cluster allocation offset {c_hex(hc)} unaligned "
                                          f"(L2 offset: {c_hex(l2_offset)}, "
                                          f"L2 index: {c_hex(l2_index)})")
                raise BlockError(errno.EIO)
            if s.has_data_file and host != offset:
                s.signal_corruption(True, f"External data file host cluster offset {c_hex(hc)} "
                                          f"does not match guest cluster offset: "
                                          f"{c_hex(offset - oic)}, L2 index: {c_hex(l2_index)})")
                raise BlockError(errno.EIO)
        try:
            sc = count_contiguous_subclusters(s, nb_clusters, sc_index, table, l2_index)
        except _InvalidEntry as e:
            s.signal_corruption(True, f"Invalid cluster entry found  (L2 offset: "
                                      f"{c_hex(l2_offset)}, L2 index: {c_hex(e.index)})")
            raise BlockError(errno.EIO)
        bytes_available = (sc + sc_index) << s.subcluster_bits
    bytes_available = min(bytes_available, bytes_needed)
    return bytes_available - oic, host, t


class COWRegion:
    """Bytes of a new cluster copied from its old contents: ``offset`` from its start."""

    __slots__ = ("offset", "nb_bytes")

    def __init__(self, offset: int = 0, nb_bytes: int = 0) -> None:
        self.offset = offset
        self.nb_bytes = nb_bytes


class L2Meta:
    """One run of clusters whose L2 entries are updated after the data write."""

    __slots__ = ("offset", "alloc_offset", "nb_clusters", "keep_old_clusters", "cow_start",
                 "cow_end", "skip_cow", "prealloc", "data")

    def __init__(self, offset: int, alloc_offset: int, nb_clusters: int,
                 keep_old_clusters: bool, cow_start: COWRegion | None = None,
                 cow_end: COWRegion | None = None, skip_cow: bool = False,
                 prealloc: bool = False, data: bytes | None = None) -> None:
        self.offset = offset
        self.alloc_offset = alloc_offset
        self.nb_clusters = nb_clusters
        self.keep_old_clusters = keep_old_clusters
        self.cow_start = cow_start or COWRegion()
        self.cow_end = cow_end or COWRegion()
        self.skip_cow = skip_cow
        self.prealloc = prealloc
        self.data = data


def _invalid_entry(s, guest_offset: int, index: int) -> BlockError:
    l1_index = guest_offset >> (s.l2_bits + s.cluster_bits)
    l2_offset = s.l1_table[l1_index] & L1E_OFFSET_MASK
    s.signal_corruption(True, f"Invalid cluster entry found (L2 offset: {c_hex(l2_offset)}, "
                              f"L2 index: {c_hex(index)})")
    return BlockError(errno.EIO)


def calculate_l2_meta(s, host_cluster_offset: int, guest_offset: int, nbytes: int,
                      table: bytes, keep_old: bool) -> L2Meta | None:
    cs, scb = s.cluster_size, s.subcluster_bits
    ext = s.extended_l2
    l2_index = (guest_offset >> s.cluster_bits) & (s.l2_size - 1)
    cow_start_to = guest_offset & (cs - 1)
    cow_end_from = cow_start_to + nbytes
    nb_clusters = -(-cow_end_from // cs)
    skip_cow = keep_old
    spc = s.subclusters_per_cluster
    for i in range(nb_clusters):
        entry, bitmap = l2e.get_entry(table, l2_index + i, ext)
        if skip_cow:
            write_from = max(cow_start_to, i << s.cluster_bits)
            write_to = min(cow_end_from, (i + 1) << s.cluster_bits)
            first_sc = (write_from >> scb) & (spc - 1)
            last_sc = ((write_to - 1) >> scb) & (spc - 1)
            cnt, t = subcluster_range_type(s, entry, bitmap, first_sc)
            if t != ST.NORMAL or first_sc + cnt <= last_sc:
                skip_cow = False
        else:
            t = l2e.subcluster_type(entry, bitmap, 0, ext, s.has_data_file)
        if t == ST.INVALID:
            raise _invalid_entry(s, guest_offset, l2_index + i)
    if skip_cow:
        return None
    entry, bitmap = l2e.get_entry(table, l2_index, ext)
    sc_index = (guest_offset >> scb) & (spc - 1)
    t = l2e.subcluster_type(entry, bitmap, sc_index, ext, s.has_data_file)
    if not keep_old:
        if t == ST.COMPRESSED:
            cow_start_from = 0
        elif t in (ST.NORMAL, ST.ZERO_ALLOC, ST.UNALLOCATED_ALLOC):
            if ext:
                cow_start_from = min(sc_index, _ctz32(bitmap & l2e.BITMAP_ALL_ALLOC)) << scb
            else:
                cow_start_from = 0
        else:
            cow_start_from = sc_index << scb
    else:
        cow_start_from = cow_start_to if t == ST.NORMAL else sc_index << scb
    l2_index += nb_clusters - 1
    entry, bitmap = l2e.get_entry(table, l2_index, ext)
    sc_index = ((guest_offset + nbytes - 1) >> scb) & (spc - 1)
    t = l2e.subcluster_type(entry, bitmap, sc_index, ext, s.has_data_file)
    sub = s.subcluster_size
    if not keep_old:
        if t == ST.COMPRESSED:
            cow_end_to = -(-cow_end_from // cs) * cs
        elif t in (ST.NORMAL, ST.ZERO_ALLOC, ST.UNALLOCATED_ALLOC):
            cow_end_to = -(-cow_end_from // cs) * cs
            if ext:
                cow_end_to -= min(spc - sc_index - 1,
                                  _clz32(bitmap & l2e.BITMAP_ALL_ALLOC)) << scb
        else:
            cow_end_to = -(-cow_end_from // sub) * sub
    else:
        cow_end_to = cow_end_from if t == ST.NORMAL else -(-cow_end_from // sub) * sub
    return L2Meta(offset=guest_offset & ~(cs - 1), alloc_offset=host_cluster_offset,
                  nb_clusters=nb_clusters, keep_old_clusters=keep_old,
                  cow_start=COWRegion(cow_start_from, cow_start_to - cow_start_from),
                  cow_end=COWRegion(cow_end_from, cow_end_to - cow_end_from))


def cluster_needs_new_alloc(s, entry: int) -> bool:
    t = l2e.cluster_type(entry, s.extended_l2, s.has_data_file)
    if t in (l2e.ClusterType.NORMAL, l2e.ClusterType.ZERO_ALLOC):
        return not entry & l2e.OFLAG_COPIED
    return True


def count_single_write_clusters(s, nb_clusters: int, table: bytes, l2_index: int,
                                new_alloc: bool) -> int:
    entry, _ = l2e.get_entry(table, l2_index, s.extended_l2)
    expected = entry & l2e.L2E_OFFSET_MASK
    i = 0
    while i < nb_clusters:
        entry, _ = l2e.get_entry(table, l2_index + i, s.extended_l2)
        if cluster_needs_new_alloc(s, entry) != new_alloc:
            break
        if not new_alloc:
            if expected != entry & l2e.L2E_OFFSET_MASK:
                break
            expected += s.cluster_size
        i += 1
    return i


def _nb_clusters_for(s, guest_offset: int, nbytes: int) -> int:
    n = -(-((guest_offset & (s.cluster_size - 1)) + nbytes) // s.cluster_size)
    l2_index = (guest_offset >> s.cluster_bits) & (s.l2_size - 1)
    return min(n, s.l2_size - l2_index, BDRV_REQUEST_MAX_BYTES >> s.cluster_bits)


def handle_copied(s, guest_offset: int, host_offset: int, nbytes: int, metas: list):
    """(ret, host_offset, nbytes) for clusters that can be overwritten in place."""
    cs = s.cluster_size
    nb_clusters = _nb_clusters_for(s, guest_offset, nbytes)
    _, table, l2_index = get_cluster_table(s, guest_offset)
    entry, _ = l2e.get_entry(table, l2_index, s.extended_l2)
    cluster_offset = entry & l2e.L2E_OFFSET_MASK
    if cluster_needs_new_alloc(s, entry):
        return 0, host_offset, nbytes
    if cluster_offset & (cs - 1):
        kind = "Preallocated zero" if entry & l2e.OFLAG_ZERO else "Data"
        s.signal_corruption(True, f"{kind} cluster offset {c_hex(cluster_offset)} unaligned "
                                  f"(guest offset: {c_hex(guest_offset)})")
        raise BlockError(errno.EIO)
    if host_offset != INV_OFFSET and cluster_offset != host_offset:
        return 0, host_offset, 0
    keep = count_single_write_clusters(s, nb_clusters, table, l2_index, False)
    nbytes = min(nbytes, keep * cs - (guest_offset & (cs - 1)))
    m = calculate_l2_meta(s, cluster_offset, guest_offset, nbytes, table, True)
    if m:
        metas.insert(0, m)
    return 1, cluster_offset + (guest_offset & (cs - 1)), nbytes


def handle_alloc(s, guest_offset: int, host_offset: int, nbytes: int, metas: list):
    """(ret, host_offset, nbytes) after allocating new clusters for the area."""
    cs = s.cluster_size
    nb_clusters = _nb_clusters_for(s, guest_offset, nbytes)
    _, table, l2_index = get_cluster_table(s, guest_offset)
    nb_clusters = count_single_write_clusters(s, nb_clusters, table, l2_index, True)
    if s.has_data_file:
        # host offsets in an external data file are the guest offsets
        alloc_offset = guest_offset & ~(cs - 1)
    elif host_offset == INV_OFFSET:
        alloc_offset = alloc_clusters(s, nb_clusters * cs)
    else:
        alloc_offset = host_offset & ~(cs - 1)
        nb_clusters = alloc_clusters_at(s, alloc_offset, nb_clusters)
    if nb_clusters == 0:
        return 0, host_offset, 0
    oic = guest_offset & (cs - 1)
    nb_bytes = min(nbytes + oic, nb_clusters << s.cluster_bits)
    nbytes = min(nbytes, nb_bytes - oic)
    m = calculate_l2_meta(s, alloc_offset, guest_offset, nbytes, table, False)
    if m:
        metas.insert(0, m)
    return 1, alloc_offset + oic, nbytes


def alloc_host_offset(s, offset: int, nbytes: int) -> tuple[int, int, list]:
    """Map/allocate [offset, offset+nbytes) to one contiguous host area; on a
    failure the allocations it already made are aborted."""
    metas: list = []
    try:
        return _gather(s, offset, nbytes, metas)
    except BlockError:
        for m in metas:
            abort_meta(s, m)
        raise


def _gather(s, offset: int, nbytes: int, metas: list) -> tuple[int, int, list]:
    """The loop of qcow2_alloc_host_offset, collecting new allocations in ``metas``."""
    start, remaining = offset, nbytes
    cluster_offset = INV_OFFSET
    host_offset = INV_OFFSET
    cur = 0
    while True:
        if host_offset == INV_OFFSET and cluster_offset != INV_OFFSET:
            host_offset = cluster_offset
        start += cur
        remaining -= cur
        if cluster_offset != INV_OFFSET:
            cluster_offset += cur
        if remaining == 0:
            break
        cur = remaining
        if s.cluster_allocs:
            from emulator.qcow2.dependencies import handle_dependencies
            cur = handle_dependencies(s, start, cur, bool(metas))
            if cur is None:  # waited for another request: gather everything again
                return alloc_host_offset(s, offset, nbytes)
            if cur == 0:
                break
        ret, cluster_offset, cur = handle_copied(s, start, cluster_offset, cur, metas)
        if ret:
            continue
        if cur == 0:
            break
        ret, cluster_offset, cur = handle_alloc(s, start, cluster_offset, cur, metas)
        if ret:
            continue
        break
    return nbytes - remaining, host_offset, metas


def perform_cow(s, m: L2Meta) -> None:
    """Copy the unmodified head/tail of newly allocated clusters (and the data)."""
    start, end = m.cow_start, m.cow_end
    if (start.nb_bytes == 0 and end.nb_bytes == 0) or m.skip_cow:
        return
    from emulator.qcow2.lock import lock, unlock
    unlock(s)  # the copy runs outside the qcow2 lock
    try:
        _copy(s, m)
    finally:
        lock(s)


def _copy(s, m: L2Meta) -> None:
    start, end = m.cow_start, m.cow_end
    middle = end.offset - start.offset - start.nb_bytes
    if start.nb_bytes and end.nb_bytes and middle <= 16384:
        # one read of both regions and what lies between them
        buf = _cow_read(s, m.offset + start.offset, end.offset + end.nb_bytes - start.offset)
        head, tail = buf[:start.nb_bytes], buf[start.nb_bytes + middle:]
    else:
        head = _cow_read(s, m.offset + start.offset, start.nb_bytes)
        tail = _cow_read(s, m.offset + end.offset, end.nb_bytes)
    if s.crypto is not None:
        from emulator.qcow2 import crypto
        head = crypto.encrypt(s, m.alloc_offset + start.offset, m.offset + start.offset, head)
        tail = crypto.encrypt(s, m.alloc_offset + end.offset, m.offset + end.offset, tail)
    if m.data is not None:
        if s.blkdbg:
            s.blkdbg("write_aio")
        _cow_write(s, m.alloc_offset + start.offset, head + m.data + tail)
    else:
        _cow_write(s, m.alloc_offset + start.offset, head)
        _cow_write(s, m.alloc_offset + end.offset, tail)


def _cow_read(s, offset: int, nbytes: int) -> bytes:
    if not nbytes:
        return b""
    if s.blkdbg:
        s.blkdbg("cow_read")
    return s.drv_preadv(offset, nbytes)


def _cow_write(s, offset: int, data: bytes) -> None:
    from emulator.block import io
    from emulator.qcow2.overlap import pre_write_overlap_check
    if data:
        if not s.has_data_file:
            pre_write_overlap_check(s, 0, offset, len(data))
        if s.blkdbg:
            s.blkdbg("cow_write")
        io.pwrite(s.data_file, offset, data)


def link_l2(s, m: L2Meta) -> None:
    """qcow2_alloc_cluster_link_l2: COW, then point the L2 entries at the new clusters."""
    perform_cow(s, m)
    if s.use_lazy_refcounts:
        try:
            s.mark_dirty()
        except BlockError:
            pass  # QEMU ignores the result: the image stays clean, refcounts stay accurate
    if not s.incompatible_features & INCOMPAT_DIRTY:
        s.l2_cache.set_dependency(s.refcount_cache)
    l2_offset, table, l2_index = get_cluster_table(s, m.offset)
    old = []
    cs = s.cluster_size
    for i in range(m.nb_clusters):
        host = m.alloc_offset + i * cs
        entry, bitmap = l2e.get_entry(table, l2_index + i, s.extended_l2)
        if entry != 0:
            old.append(entry)
        if s.extended_l2 and not m.prealloc:
            written_from = max(m.cow_start.offset, i * cs)
            written_to = min(m.cow_end.offset + m.cow_end.nb_bytes, (i + 1) * cs)
            first_sc = (written_from >> s.subcluster_bits) & 31
            last_sc = ((written_to - 1) >> s.subcluster_bits) & 31
            bitmap |= l2e.sub_alloc_range(first_sc, last_sc + 1)
            bitmap &= ~l2e.sub_zero_range(first_sc, last_sc + 1)
        l2e.set_entry(table, l2_index + i, host | l2e.OFLAG_COPIED, bitmap, s.extended_l2)
    s.l2_cache.mark_dirty(l2_offset)
    if not m.keep_old_clusters:
        for entry in old:
            free_any_cluster(s, entry, DISCARD_NEVER)
    if s.cluster_allocs:
        from emulator.qcow2.dependencies import retire
        retire(s, m)


def abort_meta(s, m: L2Meta) -> None:
    from emulator.qcow2.allocator import free_clusters
    if not s.has_data_file and not m.keep_old_clusters:
        free_clusters(s, m.alloc_offset, m.nb_clusters << s.cluster_bits, DISCARD_NEVER)
    if s.cluster_allocs:
        from emulator.qcow2.dependencies import retire
        retire(s, m)


def _discard_in_l2_slice(s, offset: int, nb_clusters: int, dtype: int, full: bool) -> int:
    l2_offset, table, l2_index = get_cluster_table(s, offset)
    nb_clusters = min(nb_clusters, s.l2_size - l2_index)
    ext = s.extended_l2
    for i in range(nb_clusters):
        entry, bitmap = l2e.get_entry(table, l2_index + i, ext)
        new_entry, new_bitmap = entry, bitmap
        ctype = l2e.cluster_type(entry, ext, s.has_data_file)
        if full:
            new_entry = new_bitmap = 0
        elif s.backing is not None or ctype in (l2e.ClusterType.COMPRESSED, l2e.ClusterType.NORMAL,
                                                l2e.ClusterType.ZERO_ALLOC):
            if ext:
                new_entry, new_bitmap = 0, l2e.BITMAP_ALL_ZEROES
            else:
                new_entry = l2e.OFLAG_ZERO if s.qcow_version >= 3 else 0
        if entry == new_entry and bitmap == new_bitmap:
            continue
        # dirty before the refcount update: a cache flush it causes writes the table
        s.l2_cache.mark_dirty(l2_offset)
        l2e.set_entry(table, l2_index + i, new_entry, new_bitmap, ext)
        free_any_cluster(s, entry, dtype)
    return nb_clusters


def cluster_discard(s, offset: int, nbytes: int, dtype: int, full: bool) -> None:
    nb = -(-nbytes // s.cluster_size)
    s.cache_discards = True
    ok = False
    try:
        while nb > 0:
            cleared = _discard_in_l2_slice(s, offset, nb, dtype, full)
            nb -= cleared
            offset += cleared * s.cluster_size
        ok = True
    finally:
        s.cache_discards = False
        process_discards(s, ok)


def _zero_in_l2_slice(s, offset: int, nb_clusters: int, flags: int) -> int:
    l2_offset, table, l2_index = get_cluster_table(s, offset)
    nb_clusters = min(nb_clusters, s.l2_size - l2_index)
    ext = s.extended_l2
    allocated = (l2e.ClusterType.COMPRESSED, l2e.ClusterType.NORMAL, l2e.ClusterType.ZERO_ALLOC)
    for i in range(nb_clusters):
        entry, bitmap = l2e.get_entry(table, l2_index + i, ext)
        ctype = l2e.cluster_type(entry, ext, s.has_data_file)
        unmap = ctype == l2e.ClusterType.COMPRESSED or (
            bool(flags & BDRV_REQ_MAY_UNMAP) and ctype in allocated)
        new_entry = 0 if unmap else entry
        new_bitmap = bitmap
        if ext:
            new_bitmap = l2e.BITMAP_ALL_ZEROES
        else:
            new_entry |= l2e.OFLAG_ZERO
        if entry == new_entry and bitmap == new_bitmap:
            continue
        s.l2_cache.mark_dirty(l2_offset)  # before the refcount update, as in discard
        l2e.set_entry(table, l2_index + i, new_entry, new_bitmap, ext)
        if unmap:
            free_any_cluster(s, entry, DISCARD_REQUEST)
    return nb_clusters


def _zero_l2_subclusters(s, offset: int, nb_subclusters: int) -> None:
    l2_offset, table, l2_index = get_cluster_table(s, offset)
    sc = (offset >> s.subcluster_bits) & 31
    entry, bitmap = l2e.get_entry(table, l2_index, True)
    if l2e.cluster_type(entry, True, s.has_data_file) == l2e.ClusterType.COMPRESSED:
        raise BlockError(errno.ENOTSUP)
    end = sc + nb_subclusters
    new = (bitmap | l2e.sub_zero_range(sc, end)) & ~l2e.sub_alloc_range(sc, end)
    if new != bitmap:
        l2e.set_entry(table, l2_index, entry, new, True)
        s.l2_cache.mark_dirty(l2_offset)


def subcluster_zeroize(s, offset: int, nbytes: int, flags: int) -> None:
    if s.data_file_raw:
        from emulator.block import io
        io.pwrite_zeroes(s.data_file, offset, nbytes, flags)
    end = offset + nbytes
    if s.qcow_version < 3:
        if s.backing is None:
            cluster_discard(s, offset, nbytes, DISCARD_REQUEST, False)
            return
        raise BlockError(errno.ENOTSUP)
    cs = s.cluster_size
    head = min(end, -(-offset // cs) * cs) - offset
    offset += head
    tail = 0 if end >= s.size else end - max(offset, end & ~(cs - 1))
    end -= tail
    s.cache_discards = True
    sub = s.subcluster_size
    ok = False
    try:
        if head:
            _zero_l2_subclusters(s, offset - head, -(-head // sub))
        nb = -(-(end - offset) // cs) if end > offset else 0
        while nb > 0:
            cleared = _zero_in_l2_slice(s, offset, nb, flags)
            nb -= cleared
            offset += cleared * cs
        if tail:
            _zero_l2_subclusters(s, end, -(-tail // sub))
        ok = True
    finally:
        s.cache_discards = False
        process_discards(s, ok)


def alloc_compressed_cluster_offset(s, offset: int, size: int) -> int:
    l2_offset, table, l2_index = get_cluster_table(s, offset)
    entry, _ = l2e.get_entry(table, l2_index, s.extended_l2)
    if entry & l2e.L2E_OFFSET_MASK:
        raise BlockError(errno.EIO)
    host = alloc_bytes(s, size)
    nb_csectors = (host + size - 1) // 512 - host // 512
    if s.blkdbg:
        s.blkdbg("l2_update_compressed")
    l2e.set_entry(table, l2_index, l2e.compressed_entry(host, nb_csectors, s.cluster_bits),
                  0, s.extended_l2)
    s.l2_cache.mark_dirty(l2_offset)
    return host
