"""Metadata overlap checks before writes (qcow2_check_metadata_overlap, qcow2-refcount.c).

API summary:
- OL_* section bits, OL_CONSTANT / OL_CACHED (QEMU's default) / OL_ALL.
- ``check_metadata_overlap(s, ign, offset, size)`` -> the first overlapping
  section bit (0 if none), testing the sections in ``s.overlap_check``
  (default OL_CACHED) minus ``ign``; the range is widened to whole clusters
  except for the header test.
- ``pre_write_overlap_check(s, ign, offset, size)``: on an overlap, marks the
  image corrupt through ``s.signal_corruption`` with QEMU's message and
  raises BlockError(EIO).
"""
from __future__ import annotations

import errno
import struct

from emulator.block import io
from emulator.block.node import BlockError
from emulator.qcow2.header import AUTOCLEAR_BITMAPS, L1E_OFFSET_MASK, REFT_OFFSET_MASK

OL_MAIN_HEADER = 1 << 0
OL_ACTIVE_L1 = 1 << 1
OL_ACTIVE_L2 = 1 << 2
OL_REFCOUNT_TABLE = 1 << 3
OL_REFCOUNT_BLOCK = 1 << 4
OL_SNAPSHOT_TABLE = 1 << 5
OL_INACTIVE_L1 = 1 << 6
OL_INACTIVE_L2 = 1 << 7
OL_BITMAP_DIRECTORY = 1 << 8
OL_CONSTANT = (OL_MAIN_HEADER | OL_ACTIVE_L1 | OL_REFCOUNT_TABLE | OL_SNAPSHOT_TABLE
               | OL_BITMAP_DIRECTORY)
OL_CACHED = OL_CONSTANT | OL_ACTIVE_L2 | OL_REFCOUNT_BLOCK | OL_INACTIVE_L1
OL_ALL = OL_CACHED | OL_INACTIVE_L2

SECTION_NAMES = ("qcow2_header", "active L1 table", "active L2 table", "refcount table",
                 "refcount block", "snapshot table", "inactive L1 table",
                 "inactive L2 table", "bitmap directory")

_MAX_L1_BYTES = 32 * 1024 * 1024


def _overlaps(offset: int, size: int, start: int, length: int) -> bool:
    return offset < start + length and start < offset + size


def _ranges_overlap(first1: int, len1: int, first2: int, len2: int) -> bool:
    """QEMU's ranges_overlap on uint64: a zero-length range at 0 ends at 2^64-1, so
    the bitmaps bit without a bitmap directory makes every write overlap it."""
    last1 = (first1 + len1 - 1) & ((1 << 64) - 1)
    last2 = (first2 + len2 - 1) & ((1 << 64) - 1)
    return not (last2 < first1 or last1 < first2)


def check_metadata_overlap(s, ign: int, offset: int, size: int) -> int:
    """The first metadata section [offset, offset+size) would overwrite, or 0."""
    chk = getattr(s, "overlap_check", OL_CACHED) & ~ign
    cs = s.cluster_size
    if not size:
        return 0
    if chk & OL_MAIN_HEADER and offset < cs:
        return OL_MAIN_HEADER
    size = -(-((offset & (cs - 1)) + size) // cs) * cs
    offset &= ~(cs - 1)
    snapshots = getattr(s, "snapshots", None) or []
    if chk & OL_ACTIVE_L1 and s.l1_size and \
            _overlaps(offset, size, s.l1_table_offset, s.l1_size * 8):
        return OL_ACTIVE_L1
    if chk & OL_REFCOUNT_TABLE and s.refcount_table_size and \
            _overlaps(offset, size, s.refcount_table_offset, s.refcount_table_size * 8):
        return OL_REFCOUNT_TABLE
    snapshots_size = getattr(s, "snapshots_size", 0)
    if chk & OL_SNAPSHOT_TABLE and snapshots_size and \
            _overlaps(offset, size, s.snapshots_offset, snapshots_size):
        return OL_SNAPSHOT_TABLE
    if chk & OL_INACTIVE_L1:
        for sn in snapshots:
            if sn.l1_size and _overlaps(offset, size, sn.l1_table_offset, sn.l1_size * 8):
                return OL_INACTIVE_L1
    if chk & OL_ACTIVE_L2:
        for entry in s.l1_table:
            l2 = entry & L1E_OFFSET_MASK
            if l2 and _overlaps(offset, size, l2, cs):
                return OL_ACTIVE_L2
    if chk & OL_REFCOUNT_BLOCK and s.refcount_table:
        for entry in s.refcount_table[:s.max_refcount_table_index + 1]:
            block = entry & REFT_OFFSET_MASK
            if block and _overlaps(offset, size, block, cs):
                return OL_REFCOUNT_BLOCK
    if chk & OL_INACTIVE_L2:
        for sn in snapshots:
            if sn.l1_size > _MAX_L1_BYTES // 8:
                raise BlockError(errno.EFBIG)
            if (1 << 63) - 1 - sn.l1_size * 8 < sn.l1_table_offset or \
                    sn.l1_table_offset & (cs - 1):
                raise BlockError(errno.EINVAL)
            raw = io.pread(s.file, sn.l1_table_offset, sn.l1_size * 8)
            for (entry,) in struct.iter_unpack(">Q", raw):
                l2 = entry & L1E_OFFSET_MASK
                if l2 and _overlaps(offset, size, l2, cs):
                    return OL_INACTIVE_L2
    if chk & OL_BITMAP_DIRECTORY and s.autoclear_features & AUTOCLEAR_BITMAPS and \
            _ranges_overlap(offset, size, getattr(s, "bitmap_directory_offset", 0),
                            getattr(s, "bitmap_directory_size", 0)):
        return OL_BITMAP_DIRECTORY
    return 0


def pre_write_overlap_check(s, ign: int, offset: int, size: int) -> None:
    """qcow2_pre_write_overlap_check: refuse (and mark corrupt) writes onto metadata."""
    section = check_metadata_overlap(s, ign, offset, size)
    if section:
        name = SECTION_NAMES[(section & -section).bit_length() - 1]
        s.signal_corruption(True, f"Preventing invalid write on metadata (overlaps with {name})")
        raise BlockError(errno.EIO)
