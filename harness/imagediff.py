"""Byte comparison of the image files two implementations left behind.

Fields that QEMU fills from the wall clock (the creation time of internal
snapshots, and their VM clock when qemu-storage-daemon takes them) cannot
match between two runs, so they are masked before comparing.

LUKS images (``-f luks``, and qcow2 with LUKS encryption) hold random bytes:
the UUID, salts, the master key digest, benchmarked iteration counts, the
anti-forensic key material and every ciphertext. Those fields are zeroed;
in the key material and ciphertext areas only whether each 512-byte sector
is all zeroes is compared (so a sector written by one implementation only
still shows up).
"""
from __future__ import annotations

import struct
from pathlib import Path
from typing import Optional

_QCOW_MAGIC = b"QFI\xfb"
_SNAPSHOT_FIXED = 40      # bytes of a snapshot table entry before its extra data
_DATE_RANGE = (16, 32)    # date_sec, date_nsec and vm_clock_nsec within an entry
_LUKS_MAGIC = b"LUKS\xba\xbe"
_LUKS_HDR = 592            # bytes of the LUKS header (8 key slots of 48 bytes from 208)
_LUKS_RANDOM = (112, 208)  # master key digest, its salt and iterations, UUID
_LUKS_SLOTS = 208
_SECTOR = 512
_CRYPT_LUKS = 2            # qcow2 crypt_method
_EXT_LUKS = 0x0537BE77     # qcow2 full disk encryption header extension
_OFLAG_MASK = 0x00FFFFFFFFFFFE00
_COMPRESSED = 1 << 62

#: (start, end, kind): "zero" ranges are zeroed, "sector" ranges keep only zero-ness
Range = tuple[int, int, str]


def _luks_ranges(data: bytes, base: int, end: int) -> list[Range]:
    """The random parts of a LUKS header at ``base`` whose key material ends at ``end``."""
    if data[base:base + 6] != _LUKS_MAGIC or base + _LUKS_HDR > len(data):
        return []
    ranges = [(base + _LUKS_RANDOM[0], base + _LUKS_RANDOM[1], "zero")]
    first_key = end
    for i in range(8):
        slot = base + _LUKS_SLOTS + 48 * i
        ranges.append((slot + 4, slot + 40, "zero"))  # iterations and salt
        key_sector, = struct.unpack_from(">I", data, slot + 40)
        first_key = min(first_key, base + key_sector * _SECTOR)
    ranges.append((max(first_key, base + _LUKS_HDR), end, "sector"))
    return ranges


def _raw_luks_ranges(data: bytes) -> list[Range]:
    """Header fields, key material and payload of a LUKS file."""
    if len(data) < _LUKS_HDR or data[:6] != _LUKS_MAGIC:
        return []
    payload, = struct.unpack_from(">I", data, 104)
    return _luks_ranges(data, 0, payload * _SECTOR) + \
        [(payload * _SECTOR, len(data), "sector")]


def _qcow2_luks_ranges(data: bytes) -> list[Range]:
    """The LUKS header area and the data clusters of a LUKS-encrypted qcow2 image."""
    if len(data) < 104:
        return []
    version, = struct.unpack_from(">I", data, 4)
    cluster_bits, = struct.unpack_from(">I", data, 20)
    crypt, l1_size = struct.unpack_from(">II", data, 32)
    l1_offset, = struct.unpack_from(">Q", data, 40)
    if crypt != _CRYPT_LUKS or version < 3 or not 9 <= cluster_bits <= 21:
        return []
    incompat, = struct.unpack_from(">Q", data, 72)
    header_len, = struct.unpack_from(">I", data, 100)
    ranges: list[Range] = []
    pos = header_len
    while pos + 8 <= len(data):
        magic, length = struct.unpack_from(">II", data, pos)
        if magic == 0:
            break
        if magic == _EXT_LUKS and length >= 16:
            offset, size = struct.unpack_from(">QQ", data, pos + 8)
            ranges += _luks_ranges(data, offset, min(offset + size, len(data)))
        pos += 8 + ((length + 7) & ~7)
    csize = 1 << cluster_bits
    extended = bool(incompat & 16)
    for i in range(min(l1_size, len(data) // 8)):
        if l1_offset + 8 * i + 8 > len(data):
            break
        l2, = struct.unpack_from(">Q", data, l1_offset + 8 * i)
        l2 &= _OFLAG_MASK
        if not l2 or l2 + csize > len(data):
            continue
        for l2e, in struct.iter_unpack(">Q8x" if extended else ">Q", data[l2:l2 + csize]):
            host = l2e & _OFLAG_MASK
            if host and not l2e & _COMPRESSED:
                ranges.append((host, min(host + csize, len(data)), "sector"))
    return ranges


def _volatile_ranges(data: bytes) -> list[Range]:
    """Byte ranges whose contents differ from run to run (empty for plain images)."""
    if data[:6] == _LUKS_MAGIC:
        return _raw_luks_ranges(data)
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
        ranges.append((pos + _DATE_RANGE[0], pos + _DATE_RANGE[1], "zero"))
        pos += _SNAPSHOT_FIXED + extra + id_size + name_size
        pos = (pos + 7) & ~7
    return ranges + _qcow2_luks_ranges(data)


def _masked(data: bytes) -> bytes:
    ranges = _volatile_ranges(data)
    if not ranges:
        return data
    buf = bytearray(data)
    for start, end, kind in ranges:
        if kind == "zero":
            buf[start:end] = bytes(end - start)
            continue
        for sector in range(start, end, _SECTOR):
            stop = min(sector + _SECTOR, end)
            written = any(data[sector:stop])
            buf[sector:stop] = (b"\x01" if written else b"\x00") * (stop - sector)
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
