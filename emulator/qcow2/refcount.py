"""Refcount table and refcount blocks of every width (qcow2-refcount.c).

API summary (``s`` is an open :class:`emulator.qcow2.driver.Qcow2`):
- ``get_refcount_in_block(block, index, order)`` /
  ``set_refcount_in_block(block, index, order, value)`` on raw refcount
  block bytes (order 0..6 = 1..64-bit entries); ``refcounts_in_block(block,
  order, count)`` -> the first ``count`` entries as a list.
- ``refcount_metadata_size(clusters, cluster_size, order, generous)`` ->
  (bytes, refblock_count), as qcow2_refcount_metadata_size.
- ``load_refcount_table(s)``, ``get_refcount(s, cluster_index)``,
  ``update_refcount(s, offset, length, addend, decrease, discard_type)``,
  ``refcount_area(s, start, additional, exact, new_index, new_offset)``,
  ``get_last_cluster(s, size)``, ``process_discards(s, ok)``.
Discard types: DISCARD_NEVER/ALWAYS/REQUEST/SNAPSHOT/OTHER.
"""
from __future__ import annotations

import errno
import struct
from itertools import chain, compress

from emulator.block.node import BlockError
from emulator.zerospan import nonzero_span
from emulator.qcow2.header import REFT_OFFSET_MASK, c_hex

DISCARD_NEVER, DISCARD_ALWAYS, DISCARD_REQUEST, DISCARD_SNAPSHOT, DISCARD_OTHER = range(5)


class Again(Exception):
    """The caller must restart its free-cluster search (QEMU's -EAGAIN)."""


def get_refcount_in_block(block: bytes, index: int, order: int) -> int:
    if order <= 3:
        per_byte_bits = 1 << order
        per_byte = 8 >> order
        byte = block[index // per_byte]
        return (byte >> (per_byte_bits * (index % per_byte))) & ((1 << per_byte_bits) - 1)
    width = 1 << (order - 3)
    return int.from_bytes(block[index * width:(index + 1) * width], "big")


def set_refcount_in_block(block: bytearray, index: int, order: int, value: int) -> None:
    if order <= 3:
        bits = 1 << order
        per_byte = 8 >> order
        shift = bits * (index % per_byte)
        mask = ((1 << bits) - 1) << shift
        i = index // per_byte
        block[i] = (block[i] & ~mask & 0xFF) | (value << shift)
        return
    width = 1 << (order - 3)
    block[index * width:(index + 1) * width] = value.to_bytes(width, "big")


def refcounts_in_block(block: bytes, order: int, count: int) -> list[int]:
    """The first ``count`` entries of a refcount block."""
    if order > 3:
        return list(struct.unpack_from(f">{count}{'HIQ'[order - 4]}", block))
    if order == 3:
        return list(block[:count])
    head = block[:-(-count >> (3 - order))]
    return list(chain.from_iterable(map(_sub_byte_table(order).__getitem__, head)))[:count]


_SUB_BYTE_TABLES: dict[int, list[tuple[int, ...]]] = {}


def _sub_byte_table(order: int) -> list[tuple[int, ...]]:
    """The entries packed in each byte value for refcounts narrower than a byte
    (built once per order; functools.cache would cost the CLIs' start-up)."""
    table = _SUB_BYTE_TABLES.get(order)
    if table is None:
        bits = 1 << order
        table = _SUB_BYTE_TABLES[order] = [
            tuple((b >> (bits * k)) & ((1 << bits) - 1) for k in range(8 >> order))
            for b in range(256)]
    return table


def refcount_metadata_size(clusters: int, cluster_size: int, order: int,
                           generous: bool) -> tuple[int, int]:
    """Bytes of refcount blocks + table covering ``clusters`` and themselves."""
    per_table_cluster = cluster_size // 8
    per_block = cluster_size * 8 // (1 << order)
    table = blocks = 0
    n = 0
    while True:
        last = n
        blocks = -(-(clusters + table + blocks) // per_block)
        table = -(-blocks // per_table_cluster)
        n = clusters + blocks + table
        if n == last and generous:
            clusters += -(-table // 2)
            n = 0
            generous = False
            continue
        if n == last:
            break
    return (blocks + table) * cluster_size, blocks


def load_refcount_table(s) -> None:
    size = s.refcount_table_size
    raw = b""
    if size:
        if s.blkdbg:
            s.blkdbg("reftable_load")
        try:
            raw = s.file_read(s.refcount_table_offset, size * 8)
        except BlockError as e:  # qcow2_refcount_init failing in qcow2_do_open
            from emulator.block.node import errno_message
            raise BlockError(e.errno, "Could not initialize refcount handling: "
                                      f"{errno_message(e.errno)}") from None
    used = -(-nonzero_span(raw, len(raw))[1] // 8)  # the entries after are all zero
    s.refcount_table = list(struct.unpack_from(f">{used}Q", raw)) + [0] * (size - used)
    update_max_refcount_table_index(s, used)


def update_max_refcount_table_index(s, end: int | None = None) -> None:
    """``end``: a bound known to lie above the last non-zero entry."""
    table = s.refcount_table
    size = s.refcount_table_size if end is None else min(end, s.refcount_table_size)
    down = range(size - 1, 0, -1)
    # compress() skips the zero entries in C; a non-zero one may hold reserved bits only
    s.max_refcount_table_index = next(
        (i for i in compress(down, map(table.__getitem__, down)) if table[i] & REFT_OFFSET_MASK), 0)


def _refblock_offset(s, table_index: int) -> int:
    """Offset of the refcount block for ``table_index`` (0 when none)."""
    if table_index >= s.refcount_table_size:
        return 0
    off = s.refcount_table[table_index] & REFT_OFFSET_MASK
    if off and off & (s.cluster_size - 1):
        s.signal_corruption(True, f"Refblock offset {c_hex(off)} unaligned "
                                  f"(reftable index: {c_hex(table_index)})")
        raise BlockError(errno.EIO)
    return off


def get_refcount(s, cluster_index: int) -> int:
    off = _refblock_offset(s, cluster_index >> s.refcount_block_bits)
    if not off:
        return 0
    block = s.refcount_cache.get(off)
    return get_refcount_in_block(block, cluster_index & (s.refcount_block_size - 1),
                                 s.refcount_order)


def _in_same_refcount_block(s, a: int, b: int) -> bool:
    shift = s.cluster_bits + s.refcount_block_bits
    return (a >> shift) == (b >> shift)


def alloc_refcount_block(s, cluster_index: int) -> int:
    """Offset of the refcount block covering ``cluster_index``; raises Again
    after allocating one (and maybe a grown refcount table)."""
    from emulator.qcow2.allocator import alloc_clusters_noref
    if s.blkdbg:
        s.blkdbg("refblock_alloc")
    # QEMU keeps this index in an unsigned int: clusters at 2^(32+bits) wrap
    table_index = (cluster_index >> s.refcount_block_bits) & 0xFFFFFFFF
    off = _refblock_offset(s, table_index)
    if off:
        if s.blkdbg:
            s.blkdbg("refblock_load")
        return off
    s.l2_cache.flush()
    new_block = alloc_clusters_noref(s, s.cluster_size, (1 << 63) - 1)
    if new_block == 0:
        s.signal_corruption(True, "Preventing invalid allocation of refcount block at offset 0")
        raise BlockError(errno.EIO)
    if _in_same_refcount_block(s, new_block, cluster_index << s.cluster_bits):
        block = s.refcount_cache.get_empty(new_block)
        set_refcount_in_block(block, (new_block >> s.cluster_bits) & (s.refcount_block_size - 1),
                              s.refcount_order, 1)
    else:
        update_refcount(s, new_block, s.cluster_size, 1, False, DISCARD_NEVER)
        s.refcount_cache.flush()
        s.refcount_cache.get_empty(new_block)
    if s.blkdbg:
        s.blkdbg("refblock_alloc_write")
    s.refcount_cache.mark_dirty(new_block)
    s.refcount_cache.flush()
    if table_index < s.refcount_table_size:
        if s.blkdbg:
            s.blkdbg("refblock_alloc_hookup")
        s.file_write_sync(s.refcount_table_offset + table_index * 8,
                          struct.pack(">Q", new_block))
        s.refcount_table[table_index] = new_block
        s.max_refcount_table_index = max(s.max_refcount_table_index, table_index)
        raise Again()
    if s.blkdbg:
        s.blkdbg("reftable_grow")
    blocks_used = -(-max(cluster_index + 1, (new_block >> s.cluster_bits) + 1)
                    // s.refcount_block_size)
    meta_offset = blocks_used * s.refcount_block_size * s.cluster_size
    refcount_area(s, meta_offset, 0, False, table_index, new_block)
    if s.blkdbg:
        s.blkdbg("refblock_load")
    raise Again()


def refcount_area(s, start_offset: int, additional_clusters: int, exact_size: bool,
                  new_refblock_index: int, new_refblock_offset: int) -> int:
    """Build self-describing refcount structures at ``start_offset`` (end of
    file) covering everything plus ``additional_clusters``; returns the offset
    after them."""
    from emulator.qcow2.allocator import free_clusters
    cs = s.cluster_size
    _, total = refcount_metadata_size(start_offset // cs + additional_clusters, cs,
                                      s.refcount_order, not exact_size)
    if total > 8 * 1024 * 1024:
        raise BlockError(errno.EFBIG)
    area_index = (start_offset // cs) // s.refcount_block_size
    table_size = total if exact_size else total + -(-total // 2)
    per = cs // 8
    table_size = -(-table_size // per) * per
    table_clusters = table_size * 8 // cs
    if table_size > 8 * 1024 * 1024:
        raise BlockError(errno.EFBIG)
    new_table = [0] * table_size
    if table_size > s.max_refcount_table_index:
        n = min(s.max_refcount_table_index + 1, len(s.refcount_table))
    else:
        n = table_size
    new_table[:n] = s.refcount_table[:n]
    if new_refblock_offset:
        new_table[new_refblock_index] = new_refblock_offset
    additional = sum(1 for i in range(area_index, total) if not new_table[i])
    table_offset = start_offset + additional * cs
    end_offset = table_offset + table_clusters * cs
    block_offset = start_offset
    for i in range(area_index, total):
        if new_table[i]:
            off = new_table[i]
            block = s.refcount_cache.get(off)
        else:
            off = block_offset
            block = s.refcount_cache.get_empty(off)
            new_table[i] = off
            block_offset += cs
        first = i * s.refcount_block_size * cs
        if first < end_offset:
            j = (start_offset - first) // cs if first < start_offset else 0
            end_index = min((end_offset - first) // cs, s.refcount_block_size)
            for k in range(j, end_index):
                set_refcount_in_block(block, k, s.refcount_order, 1)
        s.refcount_cache.mark_dirty(off)
    if s.blkdbg:
        s.blkdbg("refblock_alloc_write_blocks")
    s.refcount_cache.flush()
    raw = struct.pack(f">{table_size}Q", *new_table)
    if s.blkdbg:
        s.blkdbg("refblock_alloc_write_table")
    s.file_write_sync(table_offset, raw)
    if s.blkdbg:
        s.blkdbg("refblock_alloc_switch_table")
    s.file_write_sync(48, struct.pack(">QI", table_offset, table_clusters))
    old_offset, old_size = s.refcount_table_offset, s.refcount_table_size
    s.refcount_table = new_table
    s.refcount_table_size = table_size
    s.refcount_table_offset = table_offset
    update_max_refcount_table_index(s)
    free_clusters(s, old_offset, old_size * 8, DISCARD_OTHER)
    return end_offset


def _queue_discard(s, offset: int, length: int) -> None:
    """update_refcount_discard: merge into the pending discard list."""
    d = None
    for region in s.discards:
        new_start = min(offset, region[0])
        new_end = max(offset + length, region[0] + region[1])
        if new_end - new_start <= length + region[1]:
            region[0], region[1] = new_start, new_end - new_start
            d = region
            break
    if d is None:
        d = [offset, length]
        s.discards.append(d)
    for p in list(s.discards):
        if p is d or p[0] > d[0] + d[1] or d[0] > p[0] + p[1]:
            continue
        s.discards.remove(p)
        d[0] = min(d[0], p[0])
        d[1] += p[1]


def process_discards(s, ok: bool = True) -> None:
    """Pass queued discards of freed clusters down to the file (dropped when the
    operation that queued them failed, as QEMU does)."""
    from emulator.block import io
    pending, s.discards = s.discards, []
    if not ok:
        return
    for off, length in pending:
        try:
            io.pdiscard(s.file, off, length)
        except BlockError:
            pass


def update_refcount(s, offset: int, length: int, addend: int, decrease: bool,
                    discard_type: int) -> None:
    """Add or subtract ``addend`` on every cluster touched by [offset, offset+length)."""
    if length <= 0:
        if length < 0:
            raise BlockError(errno.EINVAL)
        return
    cs = s.cluster_size
    if decrease:
        s.refcount_cache.set_dependency(s.l2_cache)
    start = offset & ~(cs - 1)
    last = (offset + length - 1) & ~(cs - 1)
    block_off = None
    old_table_index = -1
    cluster_offset = start
    try:
        while cluster_offset <= last:
            cluster_index = cluster_offset >> s.cluster_bits
            table_index = cluster_index >> s.refcount_block_bits
            if table_index != old_table_index:
                block_off = None
                try:
                    block_off = alloc_refcount_block(s, cluster_index)
                except Again:
                    if s.free_cluster_index > (start >> s.cluster_bits):
                        s.free_cluster_index = start >> s.cluster_bits
                    raise
            old_table_index = table_index
            block = s.refcount_cache.get(block_off)
            bi = cluster_index & (s.refcount_block_size - 1)
            refcount = get_refcount_in_block(block, bi, s.refcount_order)
            if decrease:
                if refcount < addend:
                    raise BlockError(errno.EINVAL)
                refcount -= addend
            else:
                if refcount + addend > s.refcount_max:
                    raise BlockError(errno.EINVAL)
                refcount += addend
            if refcount == 0 and cluster_index < s.free_cluster_index:
                s.free_cluster_index = cluster_index
            set_refcount_in_block(block, bi, s.refcount_order, refcount)
            s.refcount_cache.mark_dirty(block_off)
            if refcount == 0:
                # QEMU looks the caches up by the request's offset, not the cluster's
                if s.refcount_cache.is_cached(offset):
                    s.refcount_cache.discard(offset)
                    old_table_index = -1
                s.l2_cache.discard(offset)
                if s.discard_passthrough[discard_type]:
                    _queue_discard(s, cluster_offset, cs)
            cluster_offset += cs
    except (BlockError, Again) as e:
        if not s.cache_discards:
            process_discards(s, False)
        if cluster_offset > offset:
            try:
                update_refcount(s, offset, cluster_offset - offset, addend, not decrease,
                                DISCARD_NEVER)
            except (BlockError, Again):
                pass
        raise e
    if not s.cache_discards:
        process_discards(s)


def get_last_cluster(s, size: int) -> int:
    """Index of the last cluster with a nonzero refcount below ``size`` bytes."""
    for i in range(((size + s.cluster_size - 1) >> s.cluster_bits) - 1, -1, -1):
        if get_refcount(s, i) > 0:
            return i
    s.signal_corruption(True, "There are no references in the refcount table.")
    raise BlockError(errno.EIO)


def _discard_refcount_block(s, block_offset: int) -> None:
    """Drop the refcount of an unused refcount block and discard it."""
    cluster_index = block_offset >> s.cluster_bits
    table_index = cluster_index >> s.refcount_block_bits
    covering = s.refcount_table[table_index] & REFT_OFFSET_MASK \
        if table_index < s.refcount_table_size else 0
    if not covering:
        s.signal_corruption(True, f"Refblock at {c_hex(block_offset)} is not covered by the "
                                  f"refcount structures")
        raise BlockError(errno.EIO)
    block = s.refcount_cache.get(covering)
    bi = cluster_index & (s.refcount_block_size - 1)
    refcount = get_refcount_in_block(block, bi, s.refcount_order)
    if refcount != 1:
        s.signal_corruption(True, f"Invalid refcount: refblock offset {c_hex(covering)}, "
                                  f"reftable index {table_index}, block offset "
                                  f"{c_hex(block_offset)}, refcount {c_hex(refcount)}")
        raise BlockError(errno.EINVAL)
    set_refcount_in_block(block, bi, s.refcount_order, 0)
    s.refcount_cache.mark_dirty(covering)
    if cluster_index < s.free_cluster_index:
        s.free_cluster_index = cluster_index
    s.refcount_cache.discard(block_offset)
    _queue_discard(s, block_offset, s.cluster_size)


def shrink_reftable(s) -> None:
    """qcow2_shrink_reftable: unhook refcount blocks that count nothing but themselves."""
    new_table = []
    for i in range(s.refcount_table_size):
        off = s.refcount_table[i] & REFT_OFFSET_MASK
        if not off:
            new_table.append(0)
            continue
        block = bytearray(s.refcount_cache.get(off))
        if i == (off >> s.cluster_bits) >> s.refcount_block_bits:
            set_refcount_in_block(block, (off >> s.cluster_bits) & (s.refcount_block_size - 1),
                                  s.refcount_order, 0)
        new_table.append(s.refcount_table[i] if any(block) else 0)
    error = None
    try:
        s.file_write_sync(s.refcount_table_offset,
                          struct.pack(f">{len(new_table)}Q", *new_table))
    except BlockError as e:
        error = e
    # after a failed write the table on disk may be partly new: the dropped
    # entries are forgotten in memory all the same
    for i in range(s.refcount_table_size):
        if s.refcount_table[i] and not new_table[i]:
            if error is None:
                try:
                    _discard_refcount_block(s, s.refcount_table[i] & REFT_OFFSET_MASK)
                except BlockError as e:
                    error = e
            s.refcount_table[i] = 0
    if not s.cache_discards:
        process_discards(s, error is None)
    if error is not None:
        raise error


def _walk_over_reftable(s, new: dict, new_block, block_entries: int, new_order: int,
                        operation) -> None:
    """Feed every refcount of the image, re-packed for ``new_order``, to ``operation``
    one new refcount block at a time (walk_over_reftable). ``new_block`` (None in
    the sizing passes) is handed over zeroed for each new refcount block."""
    new_bits = 1 << new_order
    index = 0
    empty = True
    for table_index in range(s.refcount_table_size):
        off = s.refcount_table[table_index] & REFT_OFFSET_MASK
        if off and off & (s.cluster_size - 1):
            s.signal_corruption(True, f"Refblock offset {c_hex(off)} unaligned "
                                      f"(reftable index: {c_hex(table_index)})")
            raise BlockError(errno.EIO, "Image is corrupt (unaligned refblock offset)")
        block = s.refcount_cache.get(off) if off else None
        values = None
        done = 0
        while done < s.refcount_block_size:
            if index >= block_entries:
                operation(new, new_block, empty)
                new["index"] += 1
                index = 0
                empty = True
                if new_block is not None:
                    new_block[:] = bytes(len(new_block))
                values = None  # the operation may have changed refcounts in ``block``
            take = min(s.refcount_block_size - done, block_entries - index)
            if block is not None:
                if values is None:
                    values = refcounts_in_block(block, s.refcount_order, s.refcount_block_size)
                for k in compress(range(take), values[done:done + take]):
                    refcount = values[done + k]
                    if new_bits < 64 and refcount >> new_bits:
                        offset = ((table_index << s.refcount_block_bits) + done + k) \
                            << s.cluster_bits
                        raise BlockError(errno.EINVAL, f"Cannot decrease refcount entry width "
                                                       f"to {new_bits} bits: Cluster at offset "
                                                       f"{c_hex(offset)} has a refcount of "
                                                       f"{refcount}")
                    empty = False
                    if new_block is not None:
                        set_refcount_in_block(new_block, index + k, new_order, refcount)
            index += take
            done += take
    if index > 0:
        operation(new, new_block, empty)
        new["index"] += 1


def change_refcount_order(s, order: int) -> None:
    """qcow2_change_refcount_order: rewrite all refcounts with 2^order bits."""
    from emulator.qcow2.allocator import alloc_clusters, free_clusters
    from emulator.qcow2.overlap import pre_write_overlap_check
    cs = s.cluster_size
    block_entries = 1 << (s.cluster_bits - (order - 3))
    new = {"table": [], "index": 0, "allocated": False}

    def alloc_refblock(state, _block, empty):
        i = state["index"]
        table = state["table"]
        if not empty and i >= len(table):
            size = -(-(i + 1) // (cs // 8)) * (cs // 8)
            if size > 8 * 1024 * 1024 // 8:
                raise BlockError(errno.ENOTSUP, "This operation would make the refcount table "
                                                "grow beyond the maximum size supported by "
                                                "QEMU, aborting")
            table.extend([0] * (size - len(table)))
        if not empty and not table[i]:
            table[i] = alloc_clusters(s, cs)
            state["allocated"] = True

    def flush_refblock(state, block, empty):
        i = state["index"]
        table = state["table"]
        if i < len(table) and table[i]:
            pre_write_overlap_check(s, 0, table[i], cs)
            s.file_write(table[i], bytes(block))

    table_offset = 0
    allocated_size = 0
    try:
        while True:
            new["allocated"] = False
            _walk_over_reftable(s, new, None, block_entries, order, alloc_refblock)
            new["index"] = 0
            if not new["allocated"]:
                break
            if table_offset:
                free_clusters(s, table_offset, allocated_size * 8, DISCARD_NEVER)
            table_offset = alloc_clusters(s, len(new["table"]) * 8)
            allocated_size = len(new["table"])
        _walk_over_reftable(s, new, bytearray(cs), block_entries, order, flush_refblock)
        table = new["table"]
        pre_write_overlap_check(s, 0, table_offset, len(table) * 8)
        s.file_write(table_offset, struct.pack(f">{len(table)}Q", *table))
        s.refcount_cache.flush()
    except BlockError:
        for off in new["table"]:
            if off & REFT_OFFSET_MASK:
                free_clusters(s, off & REFT_OFFSET_MASK, cs, DISCARD_OTHER)
        if table_offset > 0:
            free_clusters(s, table_offset, len(new["table"]) * 8, DISCARD_OTHER)
        raise
    old_table, old_size, old_offset = s.refcount_table, s.refcount_table_size, \
        s.refcount_table_offset
    s.refcount_order = order
    s.refcount_table_size = len(table)
    s.refcount_table_offset = table_offset
    s.update_header()
    s.refcount_table = table
    update_max_refcount_table_index(s)
    s.refcount_bits = 1 << order
    s.refcount_max = (1 << s.refcount_bits) - 1
    s.refcount_block_bits = s.cluster_bits - (order - 3)
    s.refcount_block_size = 1 << s.refcount_block_bits
    s.refcount_cache.clear()
    for off in old_table[:old_size]:
        if off & REFT_OFFSET_MASK:
            free_clusters(s, off & REFT_OFFSET_MASK, cs, DISCARD_OTHER)
    if old_offset > 0:
        free_clusters(s, old_offset, old_size * 8, DISCARD_OTHER)
