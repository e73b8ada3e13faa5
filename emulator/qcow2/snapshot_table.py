"""The snapshot table: reading its entries (qcow2_do_read_snapshots in qcow2-snapshot.c).

API summary:
- ``Snapshot``: one table entry (fields named as in the spec).
- ``read_snapshots(s, repair)`` -> ``SnapshotTable`` (entries, byte size of the
  table, count of snapshots dropped and of entries whose extra data was
  truncated); reads ``s.nb_snapshots`` entries at ``s.snapshots_offset``.
  With ``repair`` an oversized table or oversized extra data is cut down
  (with QEMU's stderr notes) instead of failing; failures raise
  ``BlockError`` carrying QEMU's message and hint.
"""
from __future__ import annotations

import errno
import struct
import sys
from dataclasses import dataclass, field

from emulator.block import io
from emulator.block.node import BlockError

#: fixed part of an entry: l1_table_offset, l1_size, id_str_size, name_size,
#: date_sec, date_nsec, vm_clock_nsec, vm_state_size, extra_data_size
_ENTRY = struct.Struct(">QIHHIIQII")
ENTRY_HEADER_SIZE = _ENTRY.size  # 40
EXTRA_DATA_SIZE = 24  # vm_state_size_large, disk_size, icount
MAX_SNAPSHOTS = 65536
MAX_EXTRA_DATA = 1024
MAX_TABLE_SIZE = 1024 * MAX_SNAPSHOTS
INT_MAX = (1 << 31) - 1


@dataclass
class Snapshot:
    l1_table_offset: int
    l1_size: int
    id_str: str
    name: str
    date_sec: int
    date_nsec: int
    vm_clock_nsec: int
    vm_state_size: int
    extra_data_size: int
    disk_size: int
    icount: int
    unknown_extra_data: bytes = b""


@dataclass
class SnapshotTable:
    snapshots: list[Snapshot] = field(default_factory=list)
    size: int = 0
    nb_clusters_reduced: int = 0
    extra_data_dropped: int = 0


def _read(s, offset: int, length: int) -> bytes:
    try:
        return io.pread(s.file, offset, length)
    except BlockError as e:
        raise BlockError(e.errno, f"Failed to read snapshot table: {e.message}") from None


def read_snapshots(s, repair: bool) -> SnapshotTable:
    """Parse the snapshot table of the open image ``s``."""
    table = SnapshotTable()
    if not s.nb_snapshots:
        return table
    start = s.snapshots_offset
    offset = start
    length = 0
    for i in range(s.nb_snapshots):
        truncate_extra = False
        pre_offset = offset
        length = -(-length // 8) * 8
        offset = -(-offset // 8) * 8
        (l1_offset, l1_size, id_size, name_size, date_sec, date_nsec, vm_clock,
         vm_state, extra_size) = _ENTRY.unpack(_read(s, offset, ENTRY_HEADER_SIZE))
        offset += ENTRY_HEADER_SIZE
        if extra_size > MAX_EXTRA_DATA:
            if not repair:
                raise BlockError(errno.EFBIG,
                                 f"Too much extra metadata in snapshot table entry {i}",
                                 "You can force-remove this extra metadata with "
                                 "qemu-img check -r all\n")
            sys.stderr.write(f"Discarding too much extra metadata in snapshot table entry "
                             f"{i} ({extra_size} > {MAX_EXTRA_DATA})\n")
            sys.stderr.flush()
            table.extra_data_dropped += 1
            truncate_extra = True
        known = min(EXTRA_DATA_SIZE, extra_size)
        extra = _read(s, offset, known).ljust(EXTRA_DATA_SIZE, b"\0")
        offset += known
        if extra_size >= 8:
            vm_state = struct.unpack_from(">Q", extra, 0)[0]
        disk_size = struct.unpack_from(">Q", extra, 8)[0] if extra_size >= 16 \
            else io.getlength(s)
        icount = struct.unpack_from(">Q", extra, 16)[0] if extra_size >= 24 \
            else (1 << 64) - 1
        unknown = b""
        if extra_size > EXTRA_DATA_SIZE:
            extra_end = offset + extra_size - EXTRA_DATA_SIZE
            if truncate_extra:
                extra_size = MAX_EXTRA_DATA
            unknown = _read(s, offset, extra_size - EXTRA_DATA_SIZE)
            offset = extra_end
        id_str = _read(s, offset, id_size).split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        offset += id_size
        name = _read(s, offset, name_size).split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
        offset += name_size
        length += ENTRY_HEADER_SIZE + extra_size + id_size + name_size
        if length > MAX_TABLE_SIZE or offset - start > INT_MAX:
            if not repair:
                raise BlockError(errno.EFBIG, "Snapshot table is too big",
                                 f"You can force-remove all {s.nb_snapshots - i} "
                                 "overhanging snapshots with qemu-img check -r all\n")
            sys.stderr.write(f"Discarding {s.nb_snapshots - i} overhanging snapshots "
                             "(snapshot table is too big)\n")
            sys.stderr.flush()
            table.nb_clusters_reduced += s.nb_snapshots - i
            offset = pre_offset
            break
        table.snapshots.append(Snapshot(l1_offset, l1_size, id_str, name, date_sec, date_nsec,
                                        vm_clock, vm_state, extra_size, disk_size, icount,
                                        unknown))
    table.size = offset - start
    return table


def write_snapshots(s, snapshots: list[Snapshot]) -> None:
    """qcow2_write_snapshots: write ``snapshots`` as a new table, then free the old one.

    Updates ``s.nb_snapshots``, ``s.snapshots_offset`` and ``s.snapshots_size``.
    """
    from emulator.qcow2.allocator import alloc_clusters, free_clusters
    from emulator.qcow2.refcount import DISCARD_ALWAYS, DISCARD_SNAPSHOT
    size = 0
    for sn in snapshots:
        size = -(-size // 8) * 8 + ENTRY_HEADER_SIZE + max(EXTRA_DATA_SIZE, sn.extra_data_size)
        size += len(sn.id_str.encode("utf-8", "surrogateescape"))
        size += len(sn.name.encode("utf-8", "surrogateescape"))
        if size > MAX_TABLE_SIZE:
            raise BlockError(errno.EFBIG)
    new_offset = alloc_clusters(s, size)
    try:
        io.flush(s)
        # the new clusters must be free: an old table whose size was misread may overlap
        from emulator.qcow2.overlap import pre_write_overlap_check
        pre_write_overlap_check(s, 0, new_offset, size)
        offset = new_offset
        for sn in snapshots:
            # C strings: the bytes read are written back unchanged
            id_b = sn.id_str.encode("utf-8", "surrogateescape")
            name_b = sn.name.encode("utf-8", "surrogateescape")
            offset = -(-offset // 8) * 8
            vm_state32 = sn.vm_state_size if sn.vm_state_size <= 0xFFFFFFFF else 0
            io.pwrite(s.file, offset, _ENTRY.pack(
                sn.l1_table_offset, sn.l1_size, len(id_b), len(name_b), sn.date_sec,
                sn.date_nsec, sn.vm_clock_nsec, vm_state32,
                max(EXTRA_DATA_SIZE, sn.extra_data_size)))
            offset += ENTRY_HEADER_SIZE
            io.pwrite(s.file, offset, struct.pack(">QQQ", sn.vm_state_size, sn.disk_size,
                                                  sn.icount))
            offset += EXTRA_DATA_SIZE
            if sn.extra_data_size > EXTRA_DATA_SIZE:
                io.pwrite(s.file, offset, sn.unknown_extra_data)
                offset += len(sn.unknown_extra_data)
            io.pwrite(s.file, offset, id_b)
            offset += len(id_b)
            io.pwrite(s.file, offset, name_b)
            offset += len(name_b)
        io.flush(s)
        io.pwrite(s.file, 60, struct.pack(">IQ", len(snapshots), new_offset))
        io.flush(s.file)
    except BlockError:
        free_clusters(s, new_offset, size, DISCARD_ALWAYS)
        raise
    free_clusters(s, s.snapshots_offset, s.snapshots_size, DISCARD_SNAPSHOT)
    s.nb_snapshots = len(snapshots)
    s.snapshots_offset = new_offset
    s.snapshots_size = size
