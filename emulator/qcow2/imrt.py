"""The in-memory refcount table of qemu-img check, and rebuilding refcounts from it.

qcow2_check_refcounts counts every reference into an in-memory table (one
counter per host cluster, growing when references point past the end of the
file); when the on-disk refcount structure is beyond repair, new refcount
blocks and a new refcount table are allocated from that table and written
(rebuild_refcount_structure in qcow2-refcount.c).

API: ``Imrt(nb_clusters, refcount_block_bits)`` with ``size``, ``grow(n)``,
``get(i)``, ``block(index)``, ``writable_block(index)``, ``next_block(index)``,
``next_used(cluster, end)``, ``alloc(count, first_free, cluster_bits)``; ``rebuild_refcount_structure(s,
imrt)`` raising BlockError with QEMU's message ("ERROR writing refblock:
...") on failure.
"""
from __future__ import annotations

import os
import struct
from bisect import bisect_right
from itertools import compress

from emulator.block import io
from emulator.block.node import BlockError
from emulator.qcow2 import overlap as ol
from emulator.qcow2 import refcount as rc

#: offset of refcount_table_offset (followed by refcount_table_clusters) in the header
_HDR_REFTABLE = 48


class Imrt:
    """One reference counter per host cluster, stored sparsely.

    The counters live in blocks of ``1 << block_bits`` clusters (the clusters one
    refcount block covers), made on first use: a reference far past the end of
    the file costs one block, not a table up to it.
    """

    def __init__(self, nb_clusters: int, block_bits: int) -> None:
        self.size = nb_clusters
        self.bits = block_bits
        self.blocks: dict[int, list[int]] = {}
        self._order: list[int] | None = None  # sorted block indices, made on demand

    def grow(self, new_size: int) -> None:
        self.size = max(self.size, new_size)

    def get(self, i: int) -> int:
        block = self.blocks.get(i >> self.bits)
        return block[i & ((1 << self.bits) - 1)] if block else 0

    def block(self, index: int) -> list[int] | None:
        """The counters of block ``index``, None while all are zero."""
        return self.blocks.get(index)

    def writable_block(self, index: int) -> list[int]:
        block = self.blocks.get(index)
        if block is None:
            block = self.blocks[index] = [0] * (1 << self.bits)
            self._order = None
        return block

    def next_block(self, index: int) -> int | None:
        """The lowest index of a made block after ``index``, or None."""
        if self._order is None:
            self._order = sorted(self.blocks)
        k = bisect_right(self._order, index)
        return self._order[k] if k < len(self._order) else None

    def next_used(self, cluster: int, end: int) -> int:
        """First cluster in [cluster, end) with a reference, else ``end``."""
        stop = min(end, self.size)
        index = cluster >> self.bits
        while cluster < stop:
            block = self.blocks.get(index)
            if block is not None:
                j = cluster & ((1 << self.bits) - 1)
                hit = next(compress(range(j, len(block)), block[j:]), None)
                if hit is not None:
                    found = (index << self.bits) + hit
                    return found if found < stop else end
            index = self.next_block(index)
            if index is None:
                break
            cluster = index << self.bits
        return end

    def alloc(self, count: int, first_free: int, cluster_bits: int) -> tuple[int, int]:
        """alloc_clusters_imrt: (offset of ``count`` free clusters, first gap seen)."""
        cluster = first_free
        first_gap = True
        contiguous = 0
        per_block = 1 << self.bits
        while cluster < self.size and contiguous < count:
            block = self.blocks.get(cluster >> self.bits)
            if block is None:  # a whole block of free clusters
                if first_gap:
                    first_free = cluster
                    first_gap = False
                n = min(per_block - (cluster & (per_block - 1)), self.size - cluster,
                        count - contiguous)
                contiguous += n
                cluster += n
                continue
            if not block[cluster & (per_block - 1)]:
                contiguous += 1
                if first_gap:
                    first_free = cluster
                    first_gap = False
            elif contiguous:
                contiguous = 0
            cluster += 1
        if contiguous < count:
            self.grow(cluster + count - contiguous)
        cluster -= contiguous
        for i in range(cluster, cluster + count):
            self.writable_block(i >> self.bits)[i & (per_block - 1)] = 1
        return cluster << cluster_bits, first_free


def _failed(e: BlockError, what: str) -> BlockError:
    """error_setg_errno: 'WHAT: strerror'."""
    return BlockError(e.errno, f"{what}: {os.strerror(e.errno)}")


def _refblock_bytes(s, imrt: Imrt, index: int) -> bytes:
    """Refcount block ``index`` as the slice of the in-memory table it covers."""
    n, order = s.refcount_block_size, s.refcount_order
    values = imrt.block(index) or [0] * n
    if order > 3:
        return struct.pack(f">{n}{'HIQ'[order - 4]}", *values)
    if order == 3:
        return bytes(values)
    bits = 1 << order
    shifts = range(0, 8, bits)
    return bytes(sum(v << k for v, k in zip(values[j:j + len(shifts)], shifts))
                 for j in range(0, n, len(shifts)))


def _write_refblocks(s, imrt: Imrt, first: int, end: int, reftable: list[int]) -> bool:
    """rebuild_refcounts_write_refblocks: True when the reftable had to grow."""
    cs = s.cluster_size
    first_free = 0
    grown = False
    cluster = first
    while True:
        cluster = imrt.next_used(cluster, end)
        if cluster >= end:
            break
        index = cluster >> s.refcount_block_bits
        start = index << s.refcount_block_bits
        if len(reftable) > index and reftable[index]:
            block_offset = reftable[index]
        else:
            first_free = max(first_free, start)
            block_offset, first_free = imrt.alloc(1, first_free, s.cluster_bits)
            end = max(end, block_offset // cs + 1)
            if len(reftable) <= index:
                entries = -(-((index + 1) * 8) // cs) * cs // 8
                reftable.extend([0] * (entries - len(reftable)))
                grown = True
            reftable[index] = block_offset
        try:
            ol.pre_write_overlap_check(s, 0, block_offset, cs)
            io.pwrite(s.file, block_offset, _refblock_bytes(s, imrt, index))
        except BlockError as e:
            raise _failed(e, "ERROR writing refblock") from None
        cluster = start + s.refcount_block_size
    return grown


def rebuild_refcount_structure(s, imrt: Imrt) -> None:
    """New refcount blocks and table for everything ``imrt`` counts; the old ones leak."""
    s.refcount_cache.clear()
    reftable: list[int] = []
    _write_refblocks(s, imrt, 0, imrt.size, reftable)
    while True:
        clusters = -(-len(reftable) * 8 // s.cluster_size)
        table_offset, _ = imrt.alloc(clusters, 0, s.cluster_bits)
        start = table_offset // s.cluster_size
        if not _write_refblocks(s, imrt, start, start + clusters, reftable):
            break
    try:
        ol.pre_write_overlap_check(s, 0, table_offset, len(reftable) * 8)
        io.pwrite(s.file, table_offset, struct.pack(f">{len(reftable)}Q", *reftable))
    except BlockError as e:
        raise _failed(e, "ERROR writing reftable") from None
    try:
        io.pwrite(s.file, _HDR_REFTABLE, struct.pack(">QI", table_offset, clusters))
        io.flush(s.file)
    except BlockError as e:
        raise _failed(e, "ERROR setting reftable") from None
    s.refcount_table = reftable
    s.refcount_table_offset = table_offset
    s.refcount_table_size = len(reftable)
    rc.update_max_refcount_table_index(s)
