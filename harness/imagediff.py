"""Byte comparison of the image files two implementations left behind.

Fields that QEMU fills from the wall clock (the creation time of internal
snapshots, and their VM clock when qemu-storage-daemon takes them) cannot
match between two runs, so they are masked before comparing.
"""
from __future__ import annotations

import struct
from pathlib import Path
from typing import Optional

_QCOW_MAGIC = b"QFI\xfb"
_SNAPSHOT_FIXED = 40      # bytes of a snapshot table entry before its extra data
_DATE_RANGE = (16, 32)    # date_sec, date_nsec and vm_clock_nsec within an entry


def _volatile_ranges(data: bytes) -> list[tuple[int, int]]:
    """Byte ranges of snapshot creation times in a qcow2 image (empty for anything else)."""
    if len(data) < 72 or data[:4] != _QCOW_MAGIC:
        return []
    nb, = struct.unpack_from(">I", data, 60)
    pos, = struct.unpack_from(">Q", data, 64)
    ranges = []
    for _ in range(min(nb, 65536)):
        if pos + _SNAPSHOT_FIXED > len(data):
            break
        id_size, name_size = struct.unpack_from(">HH", data, pos + 12)
        extra, = struct.unpack_from(">I", data, pos + 36)
        ranges.append((pos + _DATE_RANGE[0], pos + _DATE_RANGE[1]))
        pos += _SNAPSHOT_FIXED + extra + id_size + name_size
        pos = (pos + 7) & ~7
    return ranges


def _masked(data: bytes) -> bytes:
    ranges = _volatile_ranges(data)
    if not ranges:
        return data
    buf = bytearray(data)
    for start, end in ranges:
        buf[start:end] = bytes(end - start)
    return bytes(buf)


def file_difference(a: Path, b: Path) -> Optional[str]:
    """None when the files match (snapshot times masked), else where they first differ."""
    da, db = _masked(a.read_bytes()), _masked(b.read_bytes())
    if da == db:
        return None
    for i in range(min(len(da), len(db))):
        if da[i] != db[i]:
            return f"{a.name}: first differing byte at offset {i:#x}"
    return f"{a.name}: sizes differ ({len(da)} vs {len(db)} bytes)"
