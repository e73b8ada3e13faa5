"""qcow2 image header: fields, parse and serialise (docs/interop/qcow2.txt).

API summary:
- constants: QCOW_MAGIC, HEADER_V2_SIZE (72), HEADER_V3_SIZE (104),
  HEADER_SIZE (112, with compression type + padding), INCOMPAT_* / COMPAT_* /
  AUTOCLEAR_* bits and their masks, FEAT_TYPE_*, COMPRESSION_ZLIB/ZSTD,
  L1E_OFFSET_MASK, L1E_RESERVED_MASK, REFT_OFFSET_MASK, REFT_RESERVED_MASK,
  MIN_CLUSTER_BITS, MAX_CLUSTER_BITS, QCOW_MAX_* limits.
- ``Header``: every header field (names as in the spec); ``FIELDS`` lists them in order.
  ``Header.parse(buf)`` reads the first HEADER_SIZE bytes (version 2 images
  get the version-3 defaults: refcount_order 4, header_length 72);
  ``header.pack()`` returns the fixed part as QEMU writes it (72 bytes for
  version 2, 112 for version 3).
- helpers on Header: ``cluster_size``, ``refcount_bits``, ``extended_l2``.
"""
from __future__ import annotations

import struct

QCOW_MAGIC = 0x514649FB
HEADER_V2_SIZE = 72
HEADER_V3_SIZE = 104
HEADER_SIZE = 112

MIN_CLUSTER_BITS = 9
MAX_CLUSTER_BITS = 21

QCOW_MAX_CRYPT_CLUSTERS = 32
QCOW_MAX_SNAPSHOTS = 65536
QCOW_MAX_REFTABLE_SIZE = 8 * 1024 * 1024
QCOW_MAX_L1_SIZE = 32 * 1024 * 1024
QCOW_MAX_CLUSTER_OFFSET = (1 << 56) - 1
SNAPSHOT_HEADER_SIZE = 40

INCOMPAT_DIRTY = 1 << 0
INCOMPAT_CORRUPT = 1 << 1
INCOMPAT_DATA_FILE = 1 << 2
INCOMPAT_COMPRESSION = 1 << 3
INCOMPAT_EXTL2 = 1 << 4
INCOMPAT_MASK = 0x1F

COMPAT_LAZY_REFCOUNTS = 1 << 0
COMPAT_MASK = COMPAT_LAZY_REFCOUNTS

AUTOCLEAR_BITMAPS = 1 << 0
AUTOCLEAR_DATA_FILE_RAW = 1 << 1
AUTOCLEAR_MASK = AUTOCLEAR_BITMAPS | AUTOCLEAR_DATA_FILE_RAW

FEAT_TYPE_INCOMPATIBLE = 0
FEAT_TYPE_COMPATIBLE = 1
FEAT_TYPE_AUTOCLEAR = 2

COMPRESSION_ZLIB = 0
COMPRESSION_ZSTD = 1
COMPRESSION_NAMES = {COMPRESSION_ZLIB: "zlib", COMPRESSION_ZSTD: "zstd"}

L1E_OFFSET_MASK = 0x00FFFFFFFFFFFE00
L1E_RESERVED_MASK = 0x7F000000000001FF
REFT_OFFSET_MASK = 0xFFFFFFFFFFFFFE00
REFT_RESERVED_MASK = 0x1FF

_V2 = struct.Struct(">IIQIIQIIQQIIQ")
_V3 = struct.Struct(">QQQII")


class Header:
    """The fixed part of a qcow2 header (fields named as in the spec)."""

    def __init__(self, magic: int = QCOW_MAGIC, version: int = 3, backing_file_offset: int = 0,
                 backing_file_size: int = 0, cluster_bits: int = 16, size: int = 0,
                 crypt_method: int = 0, l1_size: int = 0, l1_table_offset: int = 0,
                 refcount_table_offset: int = 0, refcount_table_clusters: int = 0,
                 nb_snapshots: int = 0, snapshots_offset: int = 0,
                 incompatible_features: int = 0, compatible_features: int = 0,
                 autoclear_features: int = 0, refcount_order: int = 4,
                 header_length: int = HEADER_SIZE, compression_type: int = COMPRESSION_ZLIB) -> None:
        self.magic = magic
        self.version = version
        self.backing_file_offset = backing_file_offset
        self.backing_file_size = backing_file_size
        self.cluster_bits = cluster_bits
        self.size = size
        self.crypt_method = crypt_method
        self.l1_size = l1_size
        self.l1_table_offset = l1_table_offset
        self.refcount_table_offset = refcount_table_offset
        self.refcount_table_clusters = refcount_table_clusters
        self.nb_snapshots = nb_snapshots
        self.snapshots_offset = snapshots_offset
        self.incompatible_features = incompatible_features
        self.compatible_features = compatible_features
        self.autoclear_features = autoclear_features
        self.refcount_order = refcount_order
        self.header_length = header_length
        self.compression_type = compression_type

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Header) and self.__dict__ == other.__dict__

    def __repr__(self) -> str:
        return "Header(" + ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items()) + ")"

    @classmethod
    def parse(cls, buf: bytes) -> "Header":
        """Decode a header from the image's first bytes (shorter input is zero padded)."""
        buf = bytes(buf[:HEADER_SIZE]).ljust(HEADER_SIZE, b"\0")
        h = cls(*_V2.unpack_from(buf, 0))
        if h.version == 2:
            h.incompatible_features = h.compatible_features = h.autoclear_features = 0
            h.refcount_order = 4
            h.header_length = HEADER_V2_SIZE
        else:
            (h.incompatible_features, h.compatible_features, h.autoclear_features,
             h.refcount_order, h.header_length) = _V3.unpack_from(buf, HEADER_V2_SIZE)
        h.compression_type = buf[HEADER_V3_SIZE]
        if h.header_length <= HEADER_V3_SIZE:
            h.compression_type = COMPRESSION_ZLIB
        return h

    def pack(self) -> bytes:
        """Encode the fixed header as QEMU writes it for this version."""
        v2 = _V2.pack(self.magic, self.version, self.backing_file_offset,
                      self.backing_file_size, self.cluster_bits, self.size,
                      self.crypt_method, self.l1_size, self.l1_table_offset,
                      self.refcount_table_offset, self.refcount_table_clusters,
                      self.nb_snapshots, self.snapshots_offset)
        if self.version == 2:
            return v2
        return (v2 + _V3.pack(self.incompatible_features, self.compatible_features,
                              self.autoclear_features, self.refcount_order,
                              self.header_length)
                + bytes([self.compression_type]) + b"\0" * 7)

    @property
    def cluster_size(self) -> int:
        return 1 << self.cluster_bits

    @property
    def refcount_bits(self) -> int:
        return 1 << self.refcount_order

    @property
    def extended_l2(self) -> bool:
        return bool(self.incompatible_features & INCOMPAT_EXTL2)


#: the header fields in on-disk order
FIELDS = tuple(Header().__dict__)


def c_hex(value: int) -> str:
    """``value`` formatted like C's ``%#x`` (zero has no 0x prefix)."""
    return f"{value:#x}" if value else "0"
