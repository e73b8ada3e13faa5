"""Persistent dirty bitmaps: the bitmaps extension, directory and bitmap tables (qcow2-bitmap.c).

The on-disk structures only (the in-memory bitmaps are bitmap_dirty.py, loading
and storing them bitmap_store.py):
- ``extension_fields(payload)`` -> (nb_bitmaps, directory_size, directory_offset).
- ``load_directory(s, nb_bitmaps, offset, size)`` -> list of ``BitmapEntry``
  (bitmap_list_load with check_dir_entry); BlockError with QEMU's message if
  the directory is broken.
- ``load_table(s, entry)`` -> the bitmap table entries (bitmap_table_load);
  BlockError(EINVAL) if an entry is invalid.
- ``pack_entry(e)``, ``entry_size(name_size)``, ``entry_valid(s, e)`` to write one.
"""
from __future__ import annotations

import errno
import struct
from emulator.block import io
from emulator.block.node import BlockError

MAX_BITMAPS = 65535
MAX_DIRECTORY_SIZE = 1024 * MAX_BITMAPS
MAX_TABLE_SIZE = 0x8000000
MAX_PHYS_SIZE = 0x20000000
MAX_GRANULARITY_BITS = 31
MIN_GRANULARITY_BITS = 9
MAX_NAME_SIZE = 1023
RESERVED_FLAGS = 0xFFFFFFFC
FLAG_IN_USE = 1
FLAG_AUTO = 2
TYPE_DIRTY_TRACKING = 1
TABLE_ENTRY_RESERVED_MASK = 0xFF000000000001FE
TABLE_ENTRY_OFFSET_MASK = 0x00FFFFFFFFFFFE00
TABLE_ENTRY_FLAG_ALL_ONES = 1

#: bitmap_table_offset, bitmap_table_size, flags, type, granularity_bits,
#: name_size, extra_data_size
_ENTRY = struct.Struct(">QIIBBHI")


class BitmapEntry:
    """One bitmap directory entry (Qcow2Bitmap); ``bitmap`` is its in-memory
    DirtyBitmap while the directory is being stored."""

    __slots__ = ("table_offset", "table_size", "flags", "granularity_bits", "name", "bitmap")

    def __init__(self, table_offset: int, table_size: int, flags: int,
                 granularity_bits: int, name: bytes) -> None:
        self.table_offset = table_offset
        self.table_size = table_size
        self.flags = flags
        self.granularity_bits = granularity_bits
        self.name = name
        self.bitmap = None


def extension_fields(payload: bytes) -> tuple[int, int, int]:
    """(nb_bitmaps, bitmap_directory_size, bitmap_directory_offset)."""
    nb, _reserved, size, offset = struct.unpack_from(">IIQQ", payload.ljust(24, b"\0"))
    return nb, size, offset


def entry_size(name_size: int) -> int:
    """calc_dir_entry_size without extra data: the entry padded to 8 bytes."""
    return (_ENTRY.size + name_size + 7) & ~7


def pack_entry(e: BitmapEntry) -> bytes:
    """One directory entry in its on-disk form, padded to 8 bytes."""
    raw = _ENTRY.pack(e.table_offset, e.table_size, e.flags, TYPE_DIRTY_TRACKING,
                      e.granularity_bits, len(e.name), 0) + e.name
    return raw.ljust(entry_size(len(e.name)), b"\0")


def entry_valid(s, e: BitmapEntry) -> bool:
    """check_dir_entry of an entry about to be stored."""
    return _entry_valid(s, e, TYPE_DIRTY_TRACKING, len(e.name))


def _entry_valid(s, e: BitmapEntry, type_: int, name_size: int) -> bool:
    """check_dir_entry."""
    cs = s.cluster_size
    if (e.table_size == 0 or e.table_offset == 0 or e.table_offset % cs
            or e.table_size > MAX_TABLE_SIZE or e.granularity_bits > MAX_GRANULARITY_BITS
            or e.granularity_bits < MIN_GRANULARITY_BITS or e.flags & RESERVED_FLAGS
            or name_size > MAX_NAME_SIZE or type_ != TYPE_DIRTY_TRACKING):
        return False
    phys = e.table_size * cs
    if phys > MAX_PHYS_SIZE:
        return False
    length = io.getlength(s)
    return bool(e.flags & FLAG_IN_USE) or length <= (phys * 8) << e.granularity_bits


def load_directory(s, nb_bitmaps: int, offset: int, size: int) -> list[BitmapEntry]:
    """bitmap_list_load: parse and validate the bitmap directory."""
    if size == 0:
        raise BlockError(errno.EINVAL, "Requested bitmap directory size is zero")
    if size > MAX_DIRECTORY_SIZE:
        raise BlockError(errno.EINVAL, "Requested bitmap directory size is too big")
    try:
        data = io.pread(s.file, offset, size)
    except BlockError as e:
        raise BlockError(e.errno, f"Failed to read bitmap directory: {e.message}") from None
    broken = BlockError(errno.EINVAL, "Broken bitmap directory")
    entries: list[BitmapEntry] = []
    pos = 0
    while pos < size:
        if pos + _ENTRY.size > size:
            raise broken
        if len(entries) + 1 > nb_bitmaps:
            raise BlockError(errno.EINVAL, "More bitmaps found than specified in header "
                                           "extension")
        t_off, t_size, flags, type_, gbits, name_size, extra = _ENTRY.unpack_from(data, pos)
        nxt = pos + -(-(_ENTRY.size + name_size + extra) // 8) * 8
        if nxt > size:
            raise broken
        if extra:
            raise BlockError(errno.EINVAL, "Bitmap extra data is not supported")
        name = data[pos + _ENTRY.size:pos + _ENTRY.size + name_size]
        e = BitmapEntry(t_off, t_size, flags, gbits, name)
        if not _entry_valid(s, e, type_, name_size):
            raise BlockError(errno.EINVAL, f"Bitmap '{name.decode('utf-8', 'replace')}' "
                                           "doesn't satisfy the constraints")
        entries.append(e)
        pos = nxt
    if len(entries) != nb_bitmaps:
        raise BlockError(errno.EINVAL, "Less bitmaps found than specified in header extension")
    if pos != size:
        raise broken
    return entries


def table_entry_valid(entry: int, cluster_size: int) -> bool:
    """check_table_entry."""
    if entry & TABLE_ENTRY_RESERVED_MASK:
        return False
    offset = entry & TABLE_ENTRY_OFFSET_MASK
    return not offset or (not entry & TABLE_ENTRY_FLAG_ALL_ONES and not offset % cluster_size)


def load_table(s, e: BitmapEntry) -> list[int]:
    """bitmap_table_load: the table's entries, all of them valid."""
    raw = io.pread(s.file, e.table_offset, e.table_size * 8)
    table = [v for (v,) in struct.iter_unpack(">Q", raw)]
    if not all(table_entry_valid(v, s.cluster_size) for v in table):
        raise BlockError(errno.EINVAL)
    return table
