"""Internal snapshots (qcow2-snapshot.c) and the refcount walk they need.

API summary (``s`` is an open, writable Qcow2 node; ``s.snapshots`` is the
list of :class:`emulator.qcow2.snapshot_table.Snapshot` read at open):
- ``update_snapshot_refcount(s, l1_offset, l1_size, addend)``: add ``addend``
  (-1, 0, 1) to the refcount of every cluster an L1 table references and fix
  the COPIED flags (qcow2_update_snapshot_refcount).
- ``find_snapshot(s, snapshot_id, name)`` -> index or -1 (both, or either).
- ``find_snapshot_by_id_or_name(s, text)`` -> index or -1.
- ``snapshot_create(s, name, date_sec, date_nsec, vm_clock_nsec, icount,
  vm_state_size=0)`` -> the new id; raises BlockError (EFBIG when full,
  EINVAL when a refcount would overflow, ...).
- ``snapshot_goto(s, id_or_name)``: revert the active L1 table (ENOENT when
  the snapshot does not exist; an invalid snapshot L1 table or a failed
  resize is reported on stderr first, as QEMU does).
- ``snapshot_delete(s, snapshot_id, name)``: raises BlockError with QEMU's
  message ("Can't find the snapshot", ...).
- ``snapshot_load_tmp(s, snapshot_id, name)``: make a read-only node read the
  snapshot's L1 table (qcow2_snapshot_load_tmp); BlockError with QEMU's message.
"""
from __future__ import annotations

import errno
import struct

from emulator.block.node import BlockError, errno_message
from emulator.qcow2 import l2_entry as l2e
from emulator.qcow2.header import L1E_OFFSET_MASK, QCOW_MAX_L1_SIZE, QCOW_MAX_SNAPSHOTS, c_hex
from emulator.qcow2.refcount import (
    DISCARD_NEVER, DISCARD_SNAPSHOT, get_refcount, process_discards, update_refcount,
)


def _io():
    from emulator.block import io
    return io


def update_snapshot_refcount(s, l1_offset: int, l1_size: int, addend: int) -> None:
    ext = s.extended_l2
    active = l1_offset == s.l1_table_offset
    if active:
        l1 = s.l1_table
    else:
        raw = s.file_read(l1_offset, l1_size * 8) if l1_size else b""
        l1 = list(struct.unpack(f">{l1_size}Q", raw))
    s.cache_discards = True
    l1_modified = False
    ok = False
    try:
        for i in range(l1_size):
            old_l2 = l1[i]
            if not old_l2:
                continue
            l2_offset = old_l2 & L1E_OFFSET_MASK
            if l2_offset & (s.cluster_size - 1):
                s.signal_corruption(True, f"L2 table offset {c_hex(l2_offset)} unaligned "
                                          f"(L1 index: {c_hex(i)})")
                raise BlockError(errno.EIO)
            table = s.l2_cache.get(l2_offset)
            # an all-zero entry stays as it is and counts nothing
            for j in l2e.used_entries(table, s.l2_size, ext):
                table = s.l2_cache.get(l2_offset)
                old_entry, bitmap = l2e.get_entry(table, j, ext)
                entry = old_entry & ~l2e.OFLAG_COPIED
                offset = entry & l2e.L2E_OFFSET_MASK
                ctype = l2e.cluster_type(entry, ext, s.has_data_file)
                if ctype == l2e.ClusterType.COMPRESSED:
                    if addend:
                        coff, csize = l2e.compressed_host_range(entry, s.cluster_bits)
                        update_refcount(s, coff, csize, abs(addend), addend < 0,
                                        DISCARD_SNAPSHOT)
                    refcount = 2
                elif ctype in (l2e.ClusterType.NORMAL, l2e.ClusterType.ZERO_ALLOC):
                    if offset & (s.cluster_size - 1):
                        s.signal_corruption(True, f"Cluster allocation offset {c_hex(offset)} "
                                                  f"unaligned (L2 offset: {c_hex(l2_offset)}, "
                                                  f"L2 index: {c_hex(j)})")
                        raise BlockError(errno.EIO)
                    if addend:
                        update_refcount(s, offset, 1, abs(addend), addend < 0,
                                        DISCARD_SNAPSHOT)
                    refcount = get_refcount(s, offset >> s.cluster_bits)
                else:
                    refcount = 0
                if refcount == 1:
                    entry |= l2e.OFLAG_COPIED
                if entry != old_entry:
                    if addend > 0:
                        s.l2_cache.set_dependency(s.refcount_cache)
                    table = s.l2_cache.get(l2_offset)
                    l2e.set_entry(table, j, entry, bitmap, ext)
                    s.l2_cache.mark_dirty(l2_offset)
            if addend:
                update_refcount(s, l2_offset, 1, abs(addend), addend < 0, DISCARD_SNAPSHOT)
            new_l2 = l2_offset
            if get_refcount(s, l2_offset >> s.cluster_bits) == 1:
                new_l2 |= l2e.OFLAG_COPIED
            if new_l2 != old_l2:
                l1[i] = new_l2
                l1_modified = True
        s.write_caches()
        ok = True
    finally:
        s.cache_discards = False
        process_discards(s, ok)
    if addend >= 0 and l1_modified:
        s.file_write(l1_offset, struct.pack(f">{l1_size}Q", *l1))


def find_snapshot(s, snapshot_id, name) -> int:
    for i, sn in enumerate(s.snapshots):
        if snapshot_id is not None and name is not None:
            if sn.id_str == snapshot_id and sn.name == name:
                return i
        elif snapshot_id is not None:
            if sn.id_str == snapshot_id:
                return i
        elif name is not None and sn.name == name:
            return i
    return -1


def find_snapshot_by_id_or_name(s, text: str) -> int:
    i = find_snapshot(s, text, None)
    return i if i >= 0 else find_snapshot(s, None, text)


def _new_id(s) -> str:
    top = 0
    for sn in s.snapshots:
        digits = ""
        for ch in sn.id_str.lstrip():
            if not ch.isdigit():
                break
            digits += ch
        top = max(top, int(digits) if digits else 0)
    return str(top + 1)


def _validate_snapshot_l1(s, sn) -> None:
    if sn.l1_size > QCOW_MAX_L1_SIZE // 8:
        raise BlockError(errno.EFBIG, "Snapshot L1 table too large")
    if ((1 << 63) - 1) - sn.l1_size * 8 < sn.l1_table_offset or \
            sn.l1_table_offset & (s.cluster_size - 1):
        raise BlockError(errno.EINVAL, "Snapshot L1 table offset invalid")


def snapshot_create(s, name: str, date_sec: int, date_nsec: int, vm_clock_nsec: int,
                    icount: int, vm_state_size: int = 0) -> str:
    if s.has_data_file:
        raise BlockError(errno.ENOTSUP)
    from emulator.qcow2.allocator import alloc_clusters
    from emulator.qcow2.cluster import cluster_discard
    from emulator.qcow2.overlap import pre_write_overlap_check
    from emulator.qcow2.snapshot_table import EXTRA_DATA_SIZE, Snapshot, write_snapshots
    if len(s.snapshots) >= QCOW_MAX_SNAPSHOTS:
        raise BlockError(errno.EFBIG)
    new_id = _new_id(s)
    l1_offset = alloc_clusters(s, s.l1_size * 8)
    sn = Snapshot(l1_offset, s.l1_size, new_id, name, date_sec, date_nsec, vm_clock_nsec,
                  vm_state_size, EXTRA_DATA_SIZE, s.size, icount)
    pre_write_overlap_check(s, 0, l1_offset, s.l1_size * 8)
    s.file_write(l1_offset, struct.pack(f">{s.l1_size}Q", *s.l1_table))
    update_snapshot_refcount(s, s.l1_table_offset, s.l1_size, 1)
    write_snapshots(s, s.snapshots + [sn])
    s.snapshots.append(sn)
    shift = s.cluster_bits + s.l2_bits
    vm_state_offset = ((s.size + (1 << shift) - 1) >> shift) << shift
    vm_bytes = -(-vm_state_size // s.cluster_size) * s.cluster_size
    if vm_bytes:
        cluster_discard(s, vm_state_offset, vm_bytes, DISCARD_NEVER, False)
    return new_id


def snapshot_goto(s, id_or_name: str) -> None:
    if s.has_data_file:
        raise BlockError(errno.ENOTSUP)
    from emulator.qcow2.l1_table import grow_l1_table
    from emulator.qcow2.overlap import OL_ACTIVE_L1, pre_write_overlap_check
    from emulator.report import error_report
    index = find_snapshot_by_id_or_name(s, id_or_name)
    if index < 0:
        raise BlockError(errno.ENOENT)
    sn = s.snapshots[index]
    try:
        _validate_snapshot_l1(s, sn)
        if sn.disk_size != s.size:
            _io().truncate(s, sn.disk_size, exact=True, prealloc="off")
    except BlockError as e:
        error_report(e.message)  # QEMU reports these itself, then fails with the errno
        raise BlockError(e.errno) from None
    grow_l1_table(s, sn.l1_size, True)
    cur_bytes = s.l1_size * 8
    raw = s.file_read(sn.l1_table_offset, sn.l1_size * 8)
    sn_l1 = list(struct.unpack(f">{sn.l1_size}Q", raw)) + [0] * (s.l1_size - sn.l1_size)
    update_snapshot_refcount(s, sn.l1_table_offset, sn.l1_size, 1)
    pre_write_overlap_check(s, OL_ACTIVE_L1, s.l1_table_offset, cur_bytes)
    s.file_write(s.l1_table_offset, struct.pack(f">{s.l1_size}Q", *sn_l1))
    try:
        update_snapshot_refcount(s, s.l1_table_offset, s.l1_size, -1)
    finally:
        s.l1_table[:] = sn_l1
    update_snapshot_refcount(s, s.l1_table_offset, s.l1_size, 0)


def snapshot_delete(s, snapshot_id, name) -> None:
    if s.has_data_file:
        raise BlockError(errno.ENOTSUP)
    from emulator.qcow2.allocator import free_clusters
    from emulator.qcow2.snapshot_table import write_snapshots
    index = find_snapshot(s, snapshot_id, name)
    if index < 0:
        raise BlockError(errno.ENOENT, "Can't find the snapshot")
    sn = s.snapshots[index]
    _validate_snapshot_l1(s, sn)
    remaining = s.snapshots[:index] + s.snapshots[index + 1:]
    try:
        write_snapshots(s, remaining)
    except BlockError as e:
        raise BlockError(e.errno, f"Failed to remove snapshot from snapshot list: "
                                  f"{errno_message(e.errno)}")
    s.snapshots = remaining
    try:
        update_snapshot_refcount(s, sn.l1_table_offset, sn.l1_size, -1)
    except BlockError as e:
        raise BlockError(e.errno, f"Failed to free the cluster and L1 table: "
                                  f"{errno_message(e.errno)}")
    free_clusters(s, sn.l1_table_offset, sn.l1_size * 8, DISCARD_SNAPSHOT)
    try:
        update_snapshot_refcount(s, s.l1_table_offset, s.l1_size, 0)
    except BlockError as e:
        raise BlockError(e.errno, f"Failed to update snapshot status in disk: "
                                  f"{errno_message(e.errno)}")


def snapshot_load_tmp(s, snapshot_id, name) -> None:
    index = find_snapshot(s, snapshot_id, name)
    if index < 0:
        raise BlockError(errno.ENOENT, "Can't find snapshot")
    sn = s.snapshots[index]
    _validate_snapshot_l1(s, sn)
    try:
        raw = s.file_read(sn.l1_table_offset, sn.l1_size * 8)
    except BlockError as e:
        raise BlockError(e.errno, "Failed to read l1 table for snapshot") from None
    s.l1_size = sn.l1_size
    s.l1_table_offset = sn.l1_table_offset
    s.l1_table = list(struct.unpack(f">{sn.l1_size}Q", raw))
