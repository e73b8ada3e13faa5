"""Read-only qcow2 image inspector: header fields, L1/L2 entries, refcounts.

Everything is addressed by guest offset or by structure name, never by a
host offset the caller has to know, so the same question works under any
cluster_size, extended_l2 or refcount_bits.  Built on the emulator's
``emulator.qcow2.header`` and ``emulator.qcow2.l2_entry``.

CLI::

    python -m tools.inspect IMG header [FIELD...]
    python -m tools.inspect IMG l1 GUEST_OFFSET
    python -m tools.inspect IMG l2 GUEST_OFFSET
    python -m tools.inspect IMG refcount GUEST_OFFSET
    python -m tools.inspect IMG refcount-host HOST_OFFSET
"""
from __future__ import annotations

import struct
import sys
from dataclasses import dataclass
from typing import BinaryIO, Optional

from emulator.qcow2 import header as hdr
from emulator.qcow2 import l2_entry as l2e

#: one letter per subcluster type in ``L2Info.subcluster_map``
SUBCLUSTER_LETTERS = {
    l2e.SubclusterType.UNALLOCATED_PLAIN: "-",
    l2e.SubclusterType.UNALLOCATED_ALLOC: "a",
    l2e.SubclusterType.ZERO_PLAIN: "z",
    l2e.SubclusterType.ZERO_ALLOC: "Z",
    l2e.SubclusterType.NORMAL: "D",
    l2e.SubclusterType.COMPRESSED: "C",
    l2e.SubclusterType.INVALID: "!",
}

HEADER_FIELDS = hdr.FIELDS
CLUSTER_TYPE_NAMES = {v: k.lower() for k, v in vars(l2e.ClusterType).items() if k.isupper()}


class InspectError(Exception):
    """The image cannot answer the question (not qcow2, offset out of range...)."""


@dataclass
class L1Info:
    """L1 entry covering a guest offset."""

    index: int
    file_offset: int
    entry: int

    @property
    def l2_offset(self) -> int:
        return self.entry & hdr.L1E_OFFSET_MASK


@dataclass
class L2Info:
    """L2 entry (and bitmap) covering a guest offset; ``file_offset`` None if no L2 table."""

    l1: L1Info
    index: int
    file_offset: Optional[int]
    entry: int
    bitmap: int
    extended: bool
    cluster_bits: int
    data_file: bool = False

    @property
    def cluster_type(self) -> int:
        return l2e.cluster_type(self.entry, self.extended, self.data_file)

    @property
    def host_offset(self) -> Optional[int]:
        """Host offset of the data (compressed: start of the compressed bytes)."""
        if self.cluster_type == l2e.ClusterType.COMPRESSED:
            return l2e.compressed_host_range(self.entry, self.cluster_bits)[0]
        if self.cluster_type in (l2e.ClusterType.UNALLOCATED, l2e.ClusterType.ZERO_PLAIN):
            return None
        return self.entry & l2e.L2E_OFFSET_MASK

    def subcluster_map(self) -> str:
        """One letter per subcluster (see SUBCLUSTER_LETTERS); one letter without extended L2."""
        count = l2e.SUBCLUSTERS_PER_CLUSTER if self.extended else 1
        return "".join(SUBCLUSTER_LETTERS[l2e.subcluster_type(self.entry, self.bitmap, i, self.extended,
                                                                self.data_file)]
                       for i in range(count))


class Image:
    """A qcow2 image file opened read-only (or read-write for pokes)."""

    def __init__(self, path: str, writable: bool = False) -> None:
        self.path = path
        try:
            self._f: BinaryIO = open(path, "r+b" if writable else "rb")
        except OSError as exc:
            raise InspectError(f"{path}: {exc.strerror}") from None
        raw = self._read(0, hdr.HEADER_SIZE)
        self.header = hdr.Header.parse(raw)
        if self.header.magic != hdr.QCOW_MAGIC:
            self.close()
            raise InspectError(f"{path}: not a qcow2 image")
        if not hdr.MIN_CLUSTER_BITS <= self.header.cluster_bits <= hdr.MAX_CLUSTER_BITS:
            self.close()
            raise InspectError(f"{path}: invalid cluster_bits {self.header.cluster_bits}")

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "Image":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read(self, offset: int, length: int) -> bytes:
        self._f.seek(offset)
        return self._f.read(length).ljust(length, b"\0")

    def _write(self, offset: int, data: bytes) -> None:
        self._f.seek(offset)
        self._f.write(data)
        self._f.flush()

    # --- structure lookups -------------------------------------------------
    @property
    def cluster_size(self) -> int:
        return self.header.cluster_size

    @property
    def l2_entries(self) -> int:
        """Entries per L2 table."""
        return self.cluster_size // l2e.entry_size(self.header.extended_l2)

    def l1(self, guest_offset: int) -> L1Info:
        """The L1 entry covering ``guest_offset``."""
        if not 0 <= guest_offset < self.header.size:
            raise InspectError(f"guest offset {guest_offset} is outside the image "
                               f"(size {self.header.size})")
        index = (guest_offset >> self.header.cluster_bits) // self.l2_entries
        if index >= self.header.l1_size:
            raise InspectError(f"guest offset {guest_offset} is beyond the L1 table")
        at = self.header.l1_table_offset + 8 * index
        return L1Info(index, at, struct.unpack(">Q", self._read(at, 8))[0])

    def l2(self, guest_offset: int) -> L2Info:
        """The L2 entry (and subcluster bitmap) covering ``guest_offset``."""
        l1 = self.l1(guest_offset)
        index = (guest_offset >> self.header.cluster_bits) % self.l2_entries
        ext = self.header.extended_l2
        data_file = bool(self.header.incompatible_features & hdr.INCOMPAT_DATA_FILE)
        if not l1.l2_offset:
            return L2Info(l1, index, None, 0, 0, ext, self.header.cluster_bits, data_file)
        at = l1.l2_offset + index * l2e.entry_size(ext)
        entry, bitmap = l2e.get_entry(self._read(at, l2e.entry_size(ext)), 0, ext)
        return L2Info(l1, index, at, entry, bitmap, ext, self.header.cluster_bits, data_file)

    def refcount_location(self, host_offset: int) -> Optional[tuple[int, int]]:
        """(refcount block file offset, index in block) for a host cluster, None if no block."""
        h = self.header
        cluster = host_offset >> h.cluster_bits
        per_block = (h.cluster_size * 8) >> h.refcount_order
        table_index = cluster // per_block
        if table_index >= h.refcount_table_clusters * h.cluster_size // 8:
            return None
        at = h.refcount_table_offset + 8 * table_index
        block = struct.unpack(">Q", self._read(at, 8))[0] & hdr.REFT_OFFSET_MASK
        if not block:
            return None
        return block, cluster % per_block

    def refcount(self, host_offset: int) -> int:
        """Refcount of the host cluster containing ``host_offset`` (0 if not covered)."""
        loc = self.refcount_location(host_offset)
        if loc is None:
            return 0
        block, index = loc
        bits = self.header.refcount_bits
        bit_pos = index * bits
        data = self._read(block + bit_pos // 8, max(1, bits // 8))
        value = int.from_bytes(data, "big")
        if bits < 8:
            value = (value >> (bit_pos % 8)) & ((1 << bits) - 1)
        return value

    # --- pokes (corruption tests) -----------------------------------------
    def set_refcount(self, host_offset: int, value: int) -> None:
        """Overwrite the refcount of the host cluster containing ``host_offset``."""
        loc = self.refcount_location(host_offset)
        if loc is None:
            raise InspectError(f"no refcount block covers host offset {host_offset:#x}")
        block, index = loc
        bits = self.header.refcount_bits
        if not 0 <= value < (1 << bits):
            raise InspectError(f"refcount {value} does not fit in {bits} bits")
        bit_pos = index * bits
        if bits >= 8:
            self._write(block + bit_pos // 8, value.to_bytes(bits // 8, "big"))
            return
        at = block + bit_pos // 8
        shift = bit_pos % 8
        mask = ((1 << bits) - 1) << shift
        old = self._read(at, 1)[0]
        self._write(at, bytes([(old & ~mask) | (value << shift)]))

    def poke_u64(self, offset: int, value: int) -> None:
        self._write(offset, struct.pack(">Q", value & (2**64 - 1)))

    def set_header_field(self, name: str, value: int) -> None:
        """Rewrite one fixed header field (other fields keep their stored value)."""
        if name not in HEADER_FIELDS:
            raise InspectError(f"unknown header field '{name}'")
        h = hdr.Header(**{**self.header.__dict__, name: value})
        packed = h.pack()
        self._write(0, packed)
        self.header = hdr.Header.parse(self._read(0, hdr.HEADER_SIZE))


# --- text rendering (used by the CLI and the harness' inspect steps) -------
def describe_header(img: Image, fields: list[str]) -> list[str]:
    """``name: value`` lines for the given header fields (all when empty)."""
    names = fields or list(HEADER_FIELDS)
    out = []
    for name in names:
        if name not in HEADER_FIELDS:
            raise InspectError(f"unknown header field '{name}'")
        value = getattr(img.header, name)
        out.append(f"{name}: {value:#x}" if name not in ("version", "cluster_bits",
                                                          "refcount_order", "l1_size",
                                                          "nb_snapshots", "header_length")
                   else f"{name}: {value}")
    return out


def describe_l1(img: Image, guest_offset: int) -> list[str]:
    l1 = img.l1(guest_offset)
    return [f"L1 entry #{l1.index} (guest offset {guest_offset}): 0x{l1.entry:016x}"]


def describe_l2(img: Image, guest_offset: int) -> list[str]:
    info = img.l2(guest_offset)
    if info.file_offset is None:
        return [f"L2 entry for guest offset {guest_offset}: no L2 table (L1 entry #{info.l1.index} is 0)"]
    line = f"L2 entry #{info.index} (guest offset {guest_offset}): 0x{info.entry:016x}"
    if info.extended:
        line += f" {info.bitmap:016x}"
    kind = CLUSTER_TYPE_NAMES[info.cluster_type]
    return [line, f"  type {kind}, subclusters {info.subcluster_map()}"]


def describe_refcount(img: Image, guest_offset: int) -> list[str]:
    info = img.l2(guest_offset)
    host = info.host_offset
    if host is None:
        return [f"refcount for guest offset {guest_offset}: no host cluster"]
    return [f"refcount of the host cluster holding guest offset {guest_offset}: {img.refcount(host)}"]


def describe_refcount_host(img: Image, host_offset: int) -> list[str]:
    return [f"refcount of host cluster {host_offset >> img.header.cluster_bits}: {img.refcount(host_offset)}"]


_SUFFIXES = {"k": 10, "m": 20, "g": 30, "t": 40, "b": 0}


def parse_offset(text: object) -> int:
    """An offset as int, or a string with a k/M/G/T suffix (powers of 1024) or 0x prefix."""
    if isinstance(text, bool):
        raise InspectError(f"invalid offset '{text}'")
    if isinstance(text, int):
        return text
    s = str(text).strip().lower()
    try:
        if s and s[-1] in _SUFFIXES:
            return int(float(s[:-1]) * (1 << _SUFFIXES[s[-1]]))
        return int(s, 0)
    except ValueError:
        raise InspectError(f"invalid offset '{text}'") from None


def main(argv: list[str]) -> int:
    """CLI entry point; returns the exit status."""
    if len(argv) < 2:
        print(__doc__.split("CLI::", 1)[1].rstrip(), file=sys.stderr)
        return 2
    path, what, args = argv[0], argv[1], argv[2:]
    try:
        with Image(path) as img:
            if what == "header":
                lines = describe_header(img, args)
            elif what in ("l1", "l2", "refcount", "refcount-host") and len(args) == 1:
                fn = {"l1": describe_l1, "l2": describe_l2, "refcount": describe_refcount,
                      "refcount-host": describe_refcount_host}[what]
                lines = fn(img, parse_offset(args[0]))
            else:
                print(f"inspect: bad arguments: {' '.join(argv[1:])}", file=sys.stderr)
                return 2
    except InspectError as exc:
        print(f"inspect: {exc}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
