"""In-memory dirty bitmaps of a node (block/dirty-bitmap.c over util/hbitmap.c).

A ``DirtyBitmap`` tracks which granules of the node's bytes were written.
The bits are kept serialised, as hbitmap writes them to disk: bit ``i``
(granule ``i``) is bit ``i % 8`` of byte ``i // 8``, in whole 64-bit words.
A node's bitmaps live in ``node.dirty_bitmaps``, newest first, as QEMU lists them.
"""
from __future__ import annotations

#: bdrv_dirty_bitmap_check flags
BITMAP_BUSY = 1
BITMAP_RO = 2
BITMAP_INCONSISTENT = 4
BITMAP_DEFAULT = BITMAP_BUSY | BITMAP_RO | BITMAP_INCONSISTENT
BITMAP_ALLOW_RO = BITMAP_BUSY | BITMAP_INCONSISTENT
MAX_NAME_SIZE = 1023


class BitmapError(Exception):
    """An Error with QEMU's message and optional hint."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class DirtyBitmap:
    """BdrvDirtyBitmap: a named bitmap of ``size`` bytes at ``granularity`` bytes a bit."""

    __slots__ = ("name", "granularity_bits", "size", "data", "enabled", "persistent",
                 "readonly", "inconsistent")

    def __init__(self, name: str, granularity: int, size: int) -> None:
        self.name = name
        self.granularity_bits = granularity.bit_length() - 1
        self.size = size
        self.data = bytearray(self.serialization_size())
        self.enabled = True
        self.persistent = False
        self.readonly = False
        self.inconsistent = False

    @property
    def granularity(self) -> int:
        return 1 << self.granularity_bits

    @property
    def nbits(self) -> int:
        g = self.granularity_bits
        return (self.size + (1 << g) - 1) >> g

    def serialization_size(self) -> int:
        """Bytes of the whole serialised bitmap (whole 64-bit words)."""
        return -(-self.nbits // 64) * 8

    def set_range(self, offset: int, length: int) -> None:
        """hbitmap_set over bytes [offset, offset + length)."""
        if length <= 0:
            return
        g = self.granularity_bits
        first, last = offset >> g, min((offset + length - 1) >> g, self.nbits - 1)
        if last < first:
            return
        d, fb, lb = self.data, first >> 3, last >> 3
        head, tail = (0xFF << (first & 7)) & 0xFF, 0xFF >> (7 - (last & 7))
        if fb == lb:
            d[fb] |= head & tail
            return
        d[fb] |= head
        d[fb + 1:lb] = b"\xff" * (lb - fb - 1)
        d[lb] |= tail

    def clear(self) -> None:
        self.data = bytearray(len(self.data))

    def truncate(self, size: int) -> None:
        """hbitmap_truncate: bits past the new end are dropped, new ones are clean."""
        self.size = size
        n = self.serialization_size()
        self.data = self.data[:n].ljust(n, b"\0")
        self._clear_tail()

    def dirty_chunks(self, chunk_bytes: int) -> list[int]:
        """Indexes of the serialised chunks of ``chunk_bytes`` holding a dirty bit."""
        d, zero = self.data, bytes(chunk_bytes)
        return [i for i in range(-(-len(d) // chunk_bytes))
                if d[i * chunk_bytes:(i + 1) * chunk_bytes] != zero[:len(d) - i * chunk_bytes]]

    def chunk(self, index: int, chunk_bytes: int) -> bytes:
        """The serialised bytes [index * chunk_bytes, +chunk_bytes), zero padded."""
        return bytes(self.data[index * chunk_bytes:(index + 1) * chunk_bytes]).ljust(
            chunk_bytes, b"\0")

    def load_chunk(self, index: int, data: bytes) -> None:
        """hbitmap_deserialize_part of one chunk (bits past the end ignored)."""
        start = index * len(data)
        part = bytes(data[:max(0, len(self.data) - start)])
        cur = self.data[start:start + len(part)]
        if cur.count(0) != len(cur):
            part = (int.from_bytes(cur, "little") | int.from_bytes(part, "little")).to_bytes(
                len(part), "little")
        self.data[start:start + len(part)] = part
        self._clear_tail()

    def set_chunk_ones(self, index: int, chunk_bytes: int) -> None:
        """hbitmap_deserialize_ones of one chunk."""
        start = index * chunk_bytes
        end = min(start + chunk_bytes, len(self.data))
        if end > start:
            self.data[start:end] = b"\xff" * (end - start)
            self._clear_tail()

    def _clear_tail(self) -> None:
        """Keep the bits past the last granule zero, as hbitmap does."""
        nbits = self.nbits
        if nbits & 7:
            self.data[nbits >> 3] &= (1 << (nbits & 7)) - 1
        tail = (nbits + 7) >> 3
        if tail < len(self.data) and any(self.data[tail:]):
            self.data[tail:] = bytes(len(self.data) - tail)

    def merge_from(self, src: "DirtyBitmap") -> None:
        """hbitmap_merge: every byte dirty in ``src`` becomes dirty here."""
        g, step = src.granularity_bits, 65536
        zero = bytes(step)
        if g == self.granularity_bits:
            for base in range(0, len(src.data), step):
                part = src.data[base:base + step]
                if part != zero[:len(part)]:
                    merged = int.from_bytes(part, "little") | \
                        int.from_bytes(self.data[base:base + step], "little")
                    self.data[base:base + len(part)] = merged.to_bytes(len(part), "little")
            return
        for base in range(0, len(src.data), step):
            bits = int.from_bytes(src.data[base:base + step], "little")
            pos = base * 8
            while bits:
                low = (bits & -bits).bit_length() - 1
                bits >>= low
                run = (~bits & (bits + 1)).bit_length() - 1
                pos += low
                self.set_range(pos << g, min(run << g, self.size - (pos << g)))
                bits >>= run
                pos += run

    def check(self, flags: int) -> None:
        """bdrv_dirty_bitmap_check: raises BitmapError for a forbidden state."""
        if flags & BITMAP_RO and self.readonly:
            raise BitmapError(f"Bitmap '{self.name}' is readonly and cannot be modified")
        if flags & BITMAP_INCONSISTENT and self.inconsistent:
            raise BitmapError(f"Bitmap '{self.name}' is inconsistent and cannot be used",
                              "Try block-dirty-bitmap-remove to delete this bitmap from disk\n")


def bitmaps_of(node) -> list:
    """The node's dirty bitmaps, newest first (created empty on first use)."""
    lst = getattr(node, "dirty_bitmaps", None)
    if lst is None:
        lst = node.dirty_bitmaps = []
    return lst


def find(node, name: str):
    """bdrv_find_dirty_bitmap."""
    for bm in getattr(node, "dirty_bitmaps", None) or ():
        if bm.name == name:
            return bm
    return None


def create(node, granularity: int, name: str) -> DirtyBitmap:
    """bdrv_create_dirty_bitmap: a new empty enabled bitmap at the head of the list."""
    from emulator.block import io
    if find(node, name) is not None:
        raise BitmapError(f"Bitmap already exists: {name}")
    if len(name.encode("utf-8", "surrogateescape")) > MAX_NAME_SIZE:
        raise BitmapError(f"Bitmap name too long: {name}")
    bm = DirtyBitmap(name, granularity, io.getlength(node))
    bitmaps_of(node).insert(0, bm)
    return bm


def release(node, bm: DirtyBitmap) -> None:
    """bdrv_release_dirty_bitmap."""
    bitmaps_of(node).remove(bm)


def set_dirty(node, offset: int, length: int) -> None:
    """bdrv_set_dirty: a write, zero write or discard hit [offset, offset + length)."""
    for bm in node.dirty_bitmaps:
        if bm.enabled:
            bm.set_range(offset, length)


def truncate_all(node, size: int) -> None:
    """bdrv_dirty_bitmap_truncate."""
    for bm in getattr(node, "dirty_bitmaps", None) or ():
        bm.truncate(size)


def default_granularity(node) -> int:
    """bdrv_get_default_bitmap_granularity: the cluster size within [4k, 64k]."""
    cs = getattr(node, "cluster_size", 0)
    return min(65536, max(4096, cs)) if cs > 0 else 65536
