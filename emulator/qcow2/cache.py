"""Metadata table cache (L2 tables, refcount blocks), written through.

QEMU's qcow2-cache.c keeps dirty tables and writes whole tables back on
flush; writing each modified table back at once leaves the same bytes in the
image, so this cache is write-through.

API summary: ``TableCache(read, write, table_size)``; ``get(offset)`` ->
bytearray (read on miss), ``get_empty(offset)`` -> zeroed bytearray,
``put_dirty(offset)`` writes the table back, ``discard(offset)`` forgets it.
"""
from __future__ import annotations

from typing import Callable


class TableCache:
    """Tables of ``table_size`` bytes keyed by host offset."""

    def __init__(self, read: Callable[[int, int], bytes],
                 write: Callable[[int, bytes], None], table_size: int) -> None:
        self._read = read
        self._write = write
        self.table_size = table_size
        self._tables: dict[int, bytearray] = {}

    def get(self, offset: int) -> bytearray:
        table = self._tables.get(offset)
        if table is None:
            table = bytearray(self._read(offset, self.table_size))
            self._tables[offset] = table
        return table

    def get_empty(self, offset: int) -> bytearray:
        table = bytearray(self.table_size)
        self._tables[offset] = table
        return table

    def put_dirty(self, offset: int) -> None:
        self._write(offset, bytes(self._tables[offset]))

    def discard(self, offset: int) -> None:
        self._tables.pop(offset, None)

    def clear(self) -> None:
        self._tables.clear()
