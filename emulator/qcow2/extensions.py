"""qcow2 header extensions: parse the area after the fixed header, build it back.

API summary:
- EXT_END, EXT_BACKING_FORMAT, EXT_FEATURE_TABLE, EXT_CRYPTO_HEADER,
  EXT_BITMAPS, EXT_DATA_FILE: extension magics.
- ``FEATURE_TABLE``: the (type, bit, name) records QEMU 7.2 writes, in order.
- ``read_extensions(read, start, end)`` -> yields (magic, length, payload offset)
  up to the end marker, reading each extension header through ``read(offset, n)``
  (raises ValueError("Header extension too large") like QEMU).
- ``feature_table_names(payload)`` -> list of (type, bit, name).
- ``ext_record(magic, payload)`` -> bytes padded to 8.
- ``unsupported_feature_message(table, mask)``: QEMU's
  "Unsupported qcow2 feature(s): ..." text.
"""
from __future__ import annotations

import struct

from emulator.qcow2.header import FEAT_TYPE_AUTOCLEAR, FEAT_TYPE_COMPATIBLE, FEAT_TYPE_INCOMPATIBLE

EXT_END = 0
EXT_BACKING_FORMAT = 0xE2792ACA
EXT_FEATURE_TABLE = 0x6803F857
EXT_CRYPTO_HEADER = 0x0537BE77
EXT_BITMAPS = 0x23852875
EXT_DATA_FILE = 0x44415441

FEATURE_TABLE = [
    (FEAT_TYPE_INCOMPATIBLE, 0, "dirty bit"),
    (FEAT_TYPE_INCOMPATIBLE, 1, "corrupt bit"),
    (FEAT_TYPE_INCOMPATIBLE, 2, "external data file"),
    (FEAT_TYPE_INCOMPATIBLE, 3, "compression type"),
    (FEAT_TYPE_INCOMPATIBLE, 4, "extended L2 entries"),
    (FEAT_TYPE_COMPATIBLE, 0, "lazy refcounts"),
    (FEAT_TYPE_AUTOCLEAR, 0, "bitmaps"),
    (FEAT_TYPE_AUTOCLEAR, 1, "raw external data"),
]


def ext_record(magic: int, payload: bytes) -> bytes:
    """One extension: magic, length, payload padded to a multiple of 8."""
    pad = (-len(payload)) % 8
    return struct.pack(">II", magic, len(payload)) + payload + b"\0" * pad


def feature_table_payload() -> bytes:
    """The feature name table payload QEMU writes (48 bytes a record)."""
    return b"".join(struct.pack(">BB46s", t, b, n.encode()) for t, b, n in FEATURE_TABLE)


def read_extensions(read, start: int, end: int):
    """Walk the extensions from ``start`` to ``end`` as qcow2_read_extensions does:
    ``read(offset, n)`` fetches each 8-byte extension header from the image when
    the walk reaches it; yields (magic, length, payload offset) and leaves reading
    the payload to the caller (QEMU skips some).

    Stops at the end marker or at ``end``; raises ValueError with QEMU's text
    when an extension claims more room than there is.
    """
    off = start
    while off < end:
        magic, length = struct.unpack(">II", read(off, 8))
        off += 8
        if off > end or length > end - off:
            raise ValueError("Header extension too large")
        if magic == EXT_END:
            return
        yield magic, length, off
        off += (length + 7) & ~7


def feature_table_names(payload: bytes) -> list[tuple[int, int, str]]:
    """Decode a feature name table payload into (type, bit, name) records."""
    out = []
    for i in range(0, len(payload) - 47, 48):
        t, b, raw = struct.unpack_from(">BB46s", payload, i)
        out.append((t, b, raw.split(b"\0", 1)[0].decode("latin-1")))
    return out


def unsupported_feature_message(table: list[tuple[int, int, str]] | None, mask: int) -> str:
    """QEMU's message for unknown incompatible bits, named through the image's table."""
    names: list[str] = []
    for t, b, name in table or []:
        if not name:
            break
        if t == FEAT_TYPE_INCOMPATIBLE and b < 64 and mask & (1 << b):
            names.append(name)
            mask &= ~(1 << b)
    if mask:
        names.append(f"Unknown incompatible feature: {mask:x}")
    return "Unsupported qcow2 feature(s): " + ", ".join(names)
