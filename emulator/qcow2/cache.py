"""Metadata table cache for L2 tables and refcount blocks (qcow2-cache.c).

Tables are kept in a fixed number of slots and written back only when QEMU
writes them back: on an explicit flush, when a slot is reused (least
recently used first) or when a dependent cache is flushed. A table dropped
with ``discard`` (its cluster was freed) is never written, and nothing is
written once the node is dead after a fatal corruption event, exactly the
state QEMU leaves in the file.

API summary: ``TableCache(node, kind, slots, table_size)`` with kind "l2" or
"refcount"; ``get(offset)`` -> bytearray (read on miss), ``get_empty(offset)``
-> zeroed bytearray, ``mark_dirty(offset)``, ``flush()``,
``set_dependency(other)`` (flush ``other`` before writing this cache),
``is_cached(offset)``, ``discard(offset)``, ``clear()`` (forget everything,
dirty or not).
"""
from __future__ import annotations



class _Slot:
    __slots__ = ("offset", "table", "dirty", "lru")

    def __init__(self) -> None:
        self.offset = 0
        self.table: bytearray | None = None
        self.dirty = False
        self.lru = 0


class TableCache:
    """Tables of ``table_size`` bytes keyed by host offset, written back lazily."""

    def __init__(self, node, kind: str, slots: int, table_size: int) -> None:
        self.node = node
        self.kind = kind
        self.table_size = table_size
        self.slots = [_Slot() for _ in range(max(slots, 1))]
        self.lru_counter = 0
        self.depends: TableCache | None = None

    def _find(self, offset: int) -> _Slot | None:
        for slot in self.slots:
            if slot.offset == offset:
                return slot
        return None

    def _load(self, offset: int, read: bool) -> bytearray:
        if offset == 0:
            from emulator.report import assert_fail
            assert_fail("../../block/qcow2-cache.c:330", "qcow2_cache_do_get", "offset != 0")
        n = len(self.slots)
        start = (offset // self.table_size * 4) % n
        victim = None
        for k in range(n):
            slot = self.slots[(start + k) % n]
            if slot.offset == offset:
                victim = slot
                break
            if victim is None or slot.lru < victim.lru:
                victim = slot
        if victim.offset != offset:
            self._write_back(victim)
            victim.offset = 0
            if read and self.kind == "l2" and self.node.blkdbg:
                self.node.blkdbg("l2_load")
            data = self.node.file_read(offset, self.table_size) if read \
                else bytes(self.table_size)
            victim.table = bytearray(data)
            victim.offset = offset
        elif not read:
            victim.table[:] = bytes(self.table_size)
        self.lru_counter += 1
        victim.lru = self.lru_counter
        return victim.table

    def get(self, offset: int) -> bytearray:
        return self._load(offset, True)

    def get_empty(self, offset: int) -> bytearray:
        return self._load(offset, False)

    def is_cached(self, offset: int) -> bool:
        return self._find(offset) is not None

    def mark_dirty(self, offset: int) -> None:
        slot = self._find(offset)
        if slot is not None:
            slot.dirty = True

    def _write_back(self, slot: _Slot) -> None:
        if not slot.dirty or not slot.offset:
            return
        if self.depends is not None:
            self.depends.flush()  # on failure the dependency stays, as in QEMU
            self.depends = None
        from emulator.qcow2.overlap import OL_ACTIVE_L2, OL_REFCOUNT_BLOCK, pre_write_overlap_check
        pre_write_overlap_check(self.node, OL_ACTIVE_L2 if self.kind == "l2"
                                else OL_REFCOUNT_BLOCK, slot.offset, self.table_size)
        if self.node.blkdbg:
            self.node.blkdbg("l2_update" if self.kind == "l2" else "refblock_update_part")
        self.node.file_write(slot.offset, bytes(slot.table))
        slot.dirty = False

    def write(self) -> None:
        """qcow2_cache_write: write every dirty table back; after a failure the
        others are still tried, and the last error is raised (an ENOSPC sticks)."""
        from emulator.block.node import BlockError
        error = None
        for slot in self.slots:
            try:
                self._write_back(slot)
            except BlockError as e:
                if error is None or error.errno != 28:
                    error = e
        if error is not None:
            raise error

    def flush(self) -> None:
        """qcow2_cache_flush: write back, then flush the file (observable only
        through a blkdebug node, or as a yield between requests in flight, so
        only then is it issued)."""
        from emulator.block import coroutine
        self.write()
        if self.node.blkdbg or coroutine._current is not None:
            from emulator.block import io
            io.flush(self.node.file)

    def set_dependency(self, dependency: "TableCache") -> None:
        """qcow2_cache_set_dependency: ``dependency`` is flushed before this cache writes.

        A failed flush leaves the state as it was; every caller in QEMU ignores it."""
        from emulator.block.node import BlockError
        try:
            if dependency.depends is not None:
                dependency.depends.flush()
                dependency.depends = None
            if self.depends is not None and self.depends is not dependency:
                self.depends.flush()
                self.depends = None
        except BlockError:
            return
        self.depends = dependency

    def discard(self, offset: int) -> None:
        slot = self._find(offset)
        if slot is not None:
            slot.offset, slot.table, slot.dirty, slot.lru = 0, None, False, 0

    def clear(self) -> None:
        for slot in self.slots:
            slot.offset, slot.table, slot.dirty, slot.lru = 0, None, False, 0
        self.depends = None
