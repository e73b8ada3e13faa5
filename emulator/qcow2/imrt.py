"""The in-memory refcount table of qemu-img check, and rebuilding refcounts from it.

qcow2_check_refcounts counts every reference into an in-memory table (one
counter per host cluster, growing when references point past the end of the
file); when the on-disk refcount structure is beyond repair, new refcount
blocks and a new refcount table are allocated from that table and written
(rebuild_refcount_structure in qcow2-refcount.c).

API: ``Imrt(nb_clusters)`` with ``counts``, ``size``, ``grow(n)``, ``get(i)``,
``alloc(count, first_free, cluster_bits)``; ``rebuild_refcount_structure(s,
imrt)`` raising BlockError with QEMU's message ("ERROR writing refblock:
...") on failure.
"""
from __future__ import annotations

import os
import struct

from emulator.block import io
from emulator.block.node import BlockError
from emulator.qcow2 import overlap as ol
from emulator.qcow2 import refcount as rc

#: offset of refcount_table_offset (followed by refcount_table_clusters) in the header
_HDR_REFTABLE = 48


class Imrt:
    """One reference counter per host cluster."""

    def __init__(self, nb_clusters: int) -> None:
        self.counts: list[int] = [0] * nb_clusters

    @property
    def size(self) -> int:
        return len(self.counts)

    def grow(self, new_size: int) -> None:
        if new_size > len(self.counts):
            self.counts.extend([0] * (new_size - len(self.counts)))

    def get(self, i: int) -> int:
        return self.counts[i] if i < len(self.counts) else 0

    def alloc(self, count: int, first_free: int, cluster_bits: int) -> tuple[int, int]:
        """alloc_clusters_imrt: (offset of ``count`` free clusters, first gap seen)."""
        cluster = first_free
        first_gap = True
        contiguous = 0
        while cluster < self.size and contiguous < count:
            if not self.counts[cluster]:
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
        for i in range(count):
            self.counts[cluster + i] = 1
        return cluster << cluster_bits, first_free


def _failed(e: BlockError, what: str) -> BlockError:
    """error_setg_errno: 'WHAT: strerror'."""
    return BlockError(e.errno, f"{what}: {os.strerror(e.errno)}")


def _refblock_bytes(s, imrt: Imrt, index: int) -> bytes:
    """Refcount block ``index`` as the slice of the in-memory table it covers."""
    block = bytearray(s.cluster_size)
    base = index << s.refcount_block_bits
    for j in range(s.refcount_block_size):
        v = imrt.get(base + j)
        if v:
            rc.set_refcount_in_block(block, j, s.refcount_order, v)
    return bytes(block)


def _write_refblocks(s, imrt: Imrt, first: int, end: int, reftable: list[int]) -> bool:
    """rebuild_refcounts_write_refblocks: True when the reftable had to grow."""
    cs = s.cluster_size
    first_free = 0
    grown = False
    cluster = first
    while cluster < end:
        if not imrt.get(cluster):
            cluster += 1
            continue
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
