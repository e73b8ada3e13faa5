"""Generic block request layer, modelled on QEMU 7.2's block/io.c.

Every caller (command lines, drivers reaching their children) goes through
these functions, never through a node's ``drv_*`` callbacks. They apply what
block/io.c applies around the driver: request alignment with read-modify-write,
zero writes split by alignment with the explicit-zeroes fallback, discards split
by ``pdiscard_alignment``, zero-filled reads past a node's end, the cached
length in 512-byte sectors, the block-status cache of protocol nodes, and
block status through a backing chain.

A node opened by :func:`emulator.block.open.open_image` carries a
:class:`emulator.block.backend.BlockBackend` in ``node.blk``; requests on such
a node are first checked as QEMU's BlockBackend checks them (requests past the
end fail with EIO).

Optional node attributes read here (defaults in brackets):
``has_variable_length`` [False] re-query the driver's length on every
getlength; ``supported_write_flags`` [0];
``supported_truncate_flags`` [0] (qcow2 sets BDRV_REQ_ZERO_WRITE);
``max_pwrite_zeroes`` / ``max_pdiscard`` [0 = unlimited]; ``unmap`` [False]
(QEMU's BDRV_O_UNMAP open flag: discards are ignored without it);
``detect_zeroes`` ["off"] ("on"/"unmap": all-zero writes become zero writes);
``copy_on_read`` [False] (reads copy unallocated data up from the backing chain);
``cluster_size`` [0] (copy-on-read works in whole clusters when set);
``supports_backing`` [False]; ``probed`` [False]; ``no_flush`` [False]
(BDRV_O_NO_FLUSH: flushes stop before the disk); ``data_file`` [None] (a
further child that flushes reach).
"""
from __future__ import annotations

import errno

from emulator.block.node import (
    BDRV_BLOCK_ALLOCATED, BDRV_BLOCK_DATA, BDRV_BLOCK_EOF,
    BDRV_BLOCK_OFFSET_VALID, BDRV_BLOCK_RAW, BDRV_BLOCK_RECURSE, BDRV_BLOCK_ZERO,
    BDRV_REQ_FUA, BDRV_REQ_MAY_UNMAP, BDRV_REQ_NO_FALLBACK,
    BDRV_REQ_WRITE_COMPRESSED, BDRV_REQ_ZERO_WRITE, BlockError, BlockNode,
    BlockStatus,
)

SECTOR_SIZE = 512
INT_MAX = (1 << 31) - 1
INT64_MAX = (1 << 63) - 1
#: BDRV_MAX_LENGTH / BDRV_REQUEST_MAX_BYTES as in include/block/block-common.h
REQUEST_MAX_SECTORS = INT_MAX >> 9
REQUEST_MAX_BYTES = REQUEST_MAX_SECTORS << 9
#: BDRV_MAX_LENGTH: INT64_MAX aligned down to BDRV_MAX_ALIGNMENT (1 GiB)
MAX_LENGTH = INT64_MAX // (1 << 30) * (1 << 30)
#: MAX_BOUNCE_BUFFER of block/io.c
MAX_BOUNCE_BUFFER = 32768 << 9
#: BDRV_REQ_COPY_ON_READ (internal to the read path)
REQ_COPY_ON_READ = 0x1


def _min_non_zero(a: int, b: int) -> int:
    if a == 0:
        return b
    if b == 0:
        return a
    return min(a, b)


def _align_down(n: int, a: int) -> int:
    return n // a * a


def _round_up(n: int, a: int) -> int:
    return -(-n // a) * a


# ----------------------------------------------------------------- length

def refresh_total_sectors(node: BlockNode, hint: int = 0) -> None:
    """Re-read the driver's length into the cached sector count (rounded up)."""
    length = node.drv_getlength()
    node.total_sectors = -(-length // SECTOR_SIZE)
    if node.total_sectors * SECTOR_SIZE > MAX_LENGTH:
        raise BlockError(errno.EFBIG)


def getlength(node: BlockNode) -> int:
    """bdrv_getlength: the node's length, always a multiple of 512."""
    if getattr(node, "has_variable_length", False) or getattr(node, "total_sectors", None) is None:
        refresh_total_sectors(node)
    return node.total_sectors * SECTOR_SIZE


def _write_req_finish(node: BlockNode, offset: int, length: int, truncate: bool = False) -> None:
    """A successful write or truncate may grow the cached length."""
    end_sector = -(-(offset + length) // SECTOR_SIZE)
    if truncate or end_sector > getattr(node, "total_sectors", 0):
        node.total_sectors = end_sector


def _count_write(node: BlockNode) -> None:
    """bdrv_co_write_req_finish's write generation: every finished write, zero
    write or discard request (failed ones too) and successful truncate counts;
    :func:`flush` reaches the disk only when the count moved since its last
    success."""
    node.write_gen += 1


def _set_dirty(node: BlockNode, offset: int, length: int) -> None:
    """bdrv_set_dirty from bdrv_co_write_req_finish: the node's enabled dirty
    bitmaps record a write, zero write or discard (even a failed one)."""
    if getattr(node, "dirty_bitmaps", None):
        from emulator.qcow2.bitmap_dirty import set_dirty
        set_dirty(node, offset, length)


# ----------------------------------------------------------------- checks

def _check_request(offset: int, length: int) -> None:
    """bdrv_check_request: EIO (with QEMU's message) for impossible ranges."""
    if offset < 0:
        raise BlockError(errno.EIO, f"offset is negative: {offset}")
    if length < 0:
        raise BlockError(errno.EIO, f"bytes is negative: {length}")
    if length > MAX_LENGTH:
        raise BlockError(errno.EIO, f"bytes({length}) exceeds maximum({MAX_LENGTH})")
    if offset > MAX_LENGTH:
        raise BlockError(errno.EIO, f"offset({offset}) exceeds maximum({MAX_LENGTH})")
    if offset > MAX_LENGTH - length:
        raise BlockError(errno.EIO, f"sum of offset({offset}) and bytes({length}) "
                         f"exceeds maximum({MAX_LENGTH})")


def _check_request32(offset: int, length: int) -> None:
    _check_request(offset, length)
    if length > REQUEST_MAX_BYTES:
        raise BlockError(errno.EIO)


def _blk_check(node: BlockNode, offset: int, length: int) -> None:
    blk = getattr(node, "blk", None)
    if blk is not None:
        blk.check_byte_request(offset, length)


def _write_req_prepare(node: BlockNode) -> None:
    if node.read_only:
        raise BlockError(errno.EPERM)


# ----------------------------------------------------------------- block-status cache

def _bsc_overlaps(node: BlockNode, offset: int, length: int) -> int | None:
    bsc = getattr(node, "bsc", None)
    if bsc is None:
        return None
    start, end = bsc
    if offset < end and start < offset + length:
        return end - offset
    return None


def _bsc_invalidate(node: BlockNode, offset: int, length: int) -> None:
    if _bsc_overlaps(node, offset, length) is not None:
        node.bsc = None


def _has_children(node: BlockNode) -> bool:
    return node.file is not None or node.backing is not None


# ----------------------------------------------------------------- read

def _aligned_preadv(node: BlockNode, offset: int, length: int, align: int,
                    flags: int = 0) -> bytes:
    """bdrv_aligned_preadv: copy-on-read if asked, zero-fill what lies past the node's end."""
    if flags & REQ_COPY_ON_READ:
        allocated, pnum = is_allocated(node, offset, length)
        if not allocated or pnum != length:
            return _copy_on_readv(node, offset, length)
    max_transfer = _align_down(_min_non_zero(node.max_transfer, INT_MAX), align)
    total = getlength(node)
    max_bytes = _round_up(max(0, total - offset), align)
    if length <= max_bytes and length <= max_transfer:
        return _driver_preadv(node, offset, length)
    out = bytearray()
    remaining = length
    while remaining:
        if max_bytes:
            num = min(remaining, max_bytes, max_transfer)
            out += _driver_preadv(node, offset + length - remaining, num)
            max_bytes -= num
        else:
            num = remaining
            out += bytes(num)
        remaining -= num
    return bytes(out)


def _driver_preadv(node: BlockNode, offset: int, length: int) -> bytes:
    data = node.drv_preadv(offset, length)
    if len(data) != length:
        raise AssertionError(f"{node.format_name} driver returned {len(data)} bytes for {length}")
    return bytes(data)


def _copy_on_readv(node: BlockNode, offset: int, length: int) -> bytes:
    """bdrv_co_do_copy_on_readv: read whole clusters, writing unallocated ones back."""
    cluster = getattr(node, "cluster_size", 0)
    if cluster:
        cluster_offset = _align_down(offset, cluster)
        cluster_bytes = _round_up(offset - cluster_offset + length, cluster)
    else:
        cluster_offset, cluster_bytes = offset, length
    skip = offset - cluster_offset
    max_transfer = _min_non_zero(node.max_transfer, REQUEST_MAX_BYTES)
    out = bytearray()
    # QEMU goes on over the rest of the last cluster after the request is
    # complete: its copy into the request (length - progress < 0) then aborts
    progress = 0
    while cluster_bytes:
        try:
            allocated, pnum = is_allocated(node, cluster_offset, min(cluster_bytes, max_transfer))
        except BlockError:
            allocated, pnum = False, min(cluster_bytes, max_transfer)
        if not allocated and not pnum:
            break
        if skip >= pnum:
            from emulator.report import assert_fail
            assert_fail("../../block/io.c:1388", "bdrv_co_do_copy_on_readv", "skip_bytes < pnum")
        if not allocated:
            pnum = min(pnum, MAX_BOUNCE_BUFFER)
            bounce = _driver_preadv(node, cluster_offset, pnum)
            event = getattr(node, "debug_event", None)
            if event is not None:
                event("cor_write")
            if (type(node).drv_pwrite_zeroes is not BlockNode.drv_pwrite_zeroes
                    and not any(bounce)):
                _do_pwrite_zeroes(node, cluster_offset, pnum, 0)
            else:
                node.drv_pwritev(cluster_offset, bounce, 0)
            if progress > length:
                from emulator.report import assert_fail
                assert_fail("../../util/iov.c:39", "iov_from_buf_full", "offset == 0")
            out += bounce[skip:skip + min(pnum - skip, length - progress)]
        else:
            n = min(pnum - skip, length - progress)
            if n < 0:
                from emulator.report import error_abort
                error_abort("bdrv_check_qiov_request() at ../../block/io.c:976",
                            f"bytes is negative: {n}")
            out += _driver_preadv(node, offset + progress, n)
        progress += pnum - skip
        cluster_offset += pnum
        cluster_bytes -= pnum
        skip = 0
    return bytes(out)


def pread(node: BlockNode, offset: int, length: int, flags: int = 0) -> bytes:
    """bdrv_co_preadv (blk_co_preadv on a node with a BlockBackend)."""
    _blk_check(node, offset, length)
    _check_request32(offset, length)
    align = node.request_alignment
    if length == 0 and offset % align:
        return b""
    if getattr(node, "copy_on_read", False):
        flags |= REQ_COPY_ON_READ
    head = offset % align
    tail = (offset + length) % align
    if not head and not tail:
        return _aligned_preadv(node, offset, length, align, flags)
    start = offset - head
    end = _round_up(offset + length, align)
    data = _aligned_preadv(node, start, end - start, align, flags)
    return data[head:head + length]


# ----------------------------------------------------------------- write

def _padding(node: BlockNode, offset: int, length: int) -> tuple[int, int, int, bool] | None:
    """bdrv_init_padding: (head, tail, buf_len, merge_reads) or None if aligned."""
    align = node.request_alignment
    head = offset & (align - 1)
    tail = (offset + length) & (align - 1)
    if tail:
        tail = align - tail
    if not head and not tail:
        return None
    total = head + length + tail
    buf_len = 2 * align if (total > align and head and tail) else align
    return head, tail, buf_len, total == buf_len


def _padding_rmw_read(node: BlockNode, offset: int, length: int,
                      pad: tuple[int, int, int, bool]) -> tuple[bytes, bytes]:
    """bdrv_padding_rmw_read: read the aligned head and tail blocks around
    [offset, offset+length), with the pwritev_rmw_* events of a blkdebug node.

    QEMU 7.2's callers ignore a failed read: the write goes on with the padding
    buffer as it was (fresh memory, zeroes) and the rest is not read."""
    align = node.request_alignment
    head, tail, buf_len, merge = pad
    start = offset - head
    end = offset + length + tail
    event = getattr(node, "debug_event", None) or (lambda name: None)
    head_buf = b""
    tail_buf = bytes(align) if tail else b""
    if head or merge:
        n = buf_len if merge else align
        if head:
            event("pwritev_rmw_head")
        if merge and tail:
            event("pwritev_rmw_tail")
        try:
            head_buf = _aligned_preadv(node, start, n, align)
        except BlockError:
            return bytes(n), tail_buf
        if head:
            event("pwritev_rmw_after_head")
        if merge and tail:
            event("pwritev_rmw_after_tail")
        if merge:
            return head_buf, b""
    if tail:
        event("pwritev_rmw_tail")
        try:
            tail_buf = _aligned_preadv(node, end - align, align, align)
        except BlockError:
            return head_buf, tail_buf
        event("pwritev_rmw_after_tail")
    return head_buf, tail_buf


def _aligned_pwritev(node: BlockNode, offset: int, length: int, align: int,
                     data: bytes | None, flags: int) -> None:
    """bdrv_aligned_pwritev: dispatch to zeroes, compressed or plain writes."""
    max_transfer = _align_down(_min_non_zero(node.max_transfer, INT_MAX), align)
    _write_req_prepare(node)
    _set_dirty(node, offset, length)
    detect = getattr(node, "detect_zeroes", "off")
    if (detect != "off" and not flags & BDRV_REQ_ZERO_WRITE
            and type(node).drv_pwrite_zeroes is not BlockNode.drv_pwrite_zeroes
            and not any(data)):
        flags |= BDRV_REQ_ZERO_WRITE
        if detect == "unmap":
            flags |= BDRV_REQ_MAY_UNMAP
    event = getattr(node, "debug_event", None)  # a blkdebug node sees these requests
    try:
        if flags & BDRV_REQ_ZERO_WRITE:
            if event is not None:
                event("pwritev_zero")
            _do_pwrite_zeroes(node, offset, length, flags)
        elif flags & BDRV_REQ_WRITE_COMPRESSED:
            node.drv_pwritev_compressed(offset, bytes(data))
        elif length <= max_transfer:
            if event is not None:
                event("pwritev")
            _driver_pwritev(node, offset, bytes(data), flags & ~BDRV_REQ_ZERO_WRITE)
        else:
            if event is not None:
                event("pwritev")
            done = 0
            while done < length:
                num = min(length - done, max_transfer)
                local = flags
                if (num < length - done and flags & BDRV_REQ_FUA
                        and not getattr(node, "supported_write_flags", 0) & BDRV_REQ_FUA):
                    local &= ~BDRV_REQ_FUA
                _driver_pwritev(node, offset + done, bytes(data[done:done + num]), local)
                done += num
    finally:
        if event is not None:
            event("pwritev_done")
        _count_write(node)
    _write_req_finish(node, offset, length)


def _driver_pwritev(node: BlockNode, offset: int, data: bytes, flags: int) -> None:
    """bdrv_driver_pwritev: FUA the node cannot honour becomes a flush of the
    node once the write succeeded (before the request is counted as finished)."""
    fua = flags & BDRV_REQ_FUA and not getattr(node, "supported_write_flags", 0) & BDRV_REQ_FUA
    node.drv_pwritev(offset, data, flags & ~BDRV_REQ_FUA if fua else flags)
    if fua:
        flush(node)


def _do_pwrite_zeroes(node: BlockNode, offset: int, length: int, flags: int) -> None:
    """bdrv_co_do_pwrite_zeroes: split by alignment, fall back to explicit zeroes."""
    supported = node.supports_zero_flags
    max_write_zeroes = _min_non_zero(getattr(node, "max_pwrite_zeroes", 0), INT64_MAX)
    alignment = max(node.pwrite_zeroes_alignment, node.request_alignment)
    max_transfer = _min_non_zero(node.max_transfer, MAX_BOUNCE_BUFFER)
    if (flags & ~supported) & BDRV_REQ_NO_FALLBACK:
        raise BlockError(errno.ENOTSUP)
    _bsc_invalidate(node, offset, length)
    head = offset % alignment
    tail = (offset + length) % alignment
    max_write_zeroes = _align_down(max_write_zeroes, alignment)
    need_flush = False
    while length > 0:
        num = length
        if head:
            num = min(length, max_transfer, alignment - head)
            head = (head + num) % alignment
        elif tail and num > alignment:
            num -= tail
        if num > max_write_zeroes:
            num = max_write_zeroes
        err = errno.ENOTSUP
        try:
            node.drv_pwrite_zeroes(offset, num, flags & supported)
            err = 0
            if flags & BDRV_REQ_FUA and not supported & BDRV_REQ_FUA:
                need_flush = True
        except BlockError as e:
            if e.errno != errno.ENOTSUP:
                raise
        if err == errno.ENOTSUP:
            if flags & BDRV_REQ_NO_FALLBACK:
                raise BlockError(errno.ENOTSUP)
            write_flags = flags & ~BDRV_REQ_ZERO_WRITE
            if flags & BDRV_REQ_FUA and not getattr(node, "supported_write_flags", 0) & BDRV_REQ_FUA:
                write_flags &= ~BDRV_REQ_FUA
                need_flush = True
            num = min(num, max_transfer)
            node.drv_pwritev(offset, bytes(num), write_flags)
        offset += num
        length -= num
    if need_flush:
        flush(node)


def _do_zero_pwritev(node: BlockNode, offset: int, length: int, flags: int) -> None:
    """bdrv_co_do_zero_pwritev: a zero write not aligned to request_alignment."""
    align = node.request_alignment
    pad = _padding(node, offset, length)
    tail_buf = b""
    if pad:
        head, tail, buf_len, merge = pad
        head_buf, tail_buf = _padding_rmw_read(node, offset, length, pad)
        if head or merge:
            buf = bytearray(head_buf)
            mid_end = len(buf) - (tail if merge else 0)
            buf[head:mid_end] = bytes(mid_end - head)
            aligned_offset = offset - head
            write_bytes = buf_len if merge else align
            _aligned_pwritev(node, aligned_offset, write_bytes, align, bytes(buf),
                             flags & ~BDRV_REQ_ZERO_WRITE)
            if merge:
                return
            offset += write_bytes - head
            length -= write_bytes - head
    if length >= align:
        aligned = length & ~(align - 1)
        _aligned_pwritev(node, offset, aligned, align, None, flags)
        length -= aligned
        offset += aligned
    if length:
        buf = bytearray(tail_buf)
        buf[:length] = bytes(length)
        _aligned_pwritev(node, offset, align, align, bytes(buf), flags & ~BDRV_REQ_ZERO_WRITE)


def _pwritev(node: BlockNode, offset: int, length: int, data: bytes | None, flags: int) -> None:
    """bdrv_co_pwritev_part."""
    align = node.request_alignment
    if flags & BDRV_REQ_ZERO_WRITE:
        _check_request(offset, length)
    else:
        _check_request32(offset, length)
    if flags & BDRV_REQ_NO_FALLBACK and (offset | length) % align:
        raise BlockError(errno.ENOTSUP)
    if length == 0 and offset % align:
        return
    if flags & BDRV_REQ_ZERO_WRITE:
        _do_zero_pwritev(node, offset, length, flags)
        return
    pad = _padding(node, offset, length)
    if pad:
        head, tail, _buf_len, merge = pad
        head_buf, tail_buf = _padding_rmw_read(node, offset, length, pad)
        if merge:
            data = head_buf[:head] + data + head_buf[head + length:]
        else:
            data = head_buf[:head] + data + tail_buf[align - tail:]
        offset -= head
        length += head + tail
    _aligned_pwritev(node, offset, length, align, data, flags)


def pwrite(node: BlockNode, offset: int, data: bytes, flags: int = 0) -> None:
    """bdrv_co_pwritev (blk_co_pwritev on a node with a BlockBackend)."""
    _blk_check(node, offset, len(data))
    _pwritev(node, offset, len(data), bytes(data), flags)


def pwrite_zeroes(node: BlockNode, offset: int, length: int, flags: int = 0) -> None:
    """bdrv_co_pwrite_zeroes / blk_co_pwrite_zeroes.

    Without a BlockBackend (a child reached by a driver) BDRV_REQ_MAY_UNMAP is
    dropped unless the node was opened with unmap.
    """
    if getattr(node, "blk", None) is not None:
        _blk_check(node, offset, length)
    elif not getattr(node, "unmap", False):
        flags &= ~BDRV_REQ_MAY_UNMAP
    _pwritev(node, offset, length, None, flags | BDRV_REQ_ZERO_WRITE)


def pwrite_compressed(node: BlockNode, offset: int, data: bytes) -> None:
    """blk_pwrite_compressed: a compressed write of whole clusters."""
    pwrite(node, offset, data, BDRV_REQ_WRITE_COMPRESSED)


# ----------------------------------------------------------------- discard

def pdiscard(node: BlockNode, offset: int, length: int) -> None:
    """bdrv_co_pdiscard: advisory, split at pdiscard_alignment boundaries."""
    _blk_check(node, offset, length)
    _check_request(offset, length)
    if not getattr(node, "unmap", False):
        return
    if type(node).drv_pdiscard is BlockNode.drv_pdiscard:
        return
    _bsc_invalidate(node, offset, length)
    req_align = node.request_alignment
    align = max(node.pdiscard_alignment, req_align)
    head = offset % align
    tail = (offset + length) % align
    _write_req_prepare(node)
    _set_dirty(node, offset, length)
    max_pdiscard = _align_down(_min_non_zero(getattr(node, "max_pdiscard", 0), INT64_MAX), align)
    while length > 0:
        num = length
        if head:
            num = min(length, align - head)
            if num % req_align:
                num %= req_align
            head = (head + num) % align
        elif tail:
            if num > align:
                num -= tail
            elif tail % req_align and tail > req_align:
                tail %= req_align
                num -= tail
        if num > max_pdiscard:
            num = max_pdiscard
        try:
            node.drv_pdiscard(offset, num)
        except BlockError as e:
            if e.errno != errno.ENOTSUP:
                _count_write(node)
                raise
        offset += num
        length -= num
    _count_write(node)


# ----------------------------------------------------------------- truncate / flush

def truncate(node: BlockNode, size: int, exact: bool = False, prealloc: str = "off",
             flags: int = 0) -> None:
    """bdrv_co_truncate; errors carry QEMU's message."""
    if size < 0:
        raise BlockError(errno.EINVAL, "Image size cannot be negative")
    _check_request(size, 0)
    old_size = getlength(node)
    if node.read_only:
        raise BlockError(errno.EACCES, "Image is read-only")
    new_bytes = size - old_size if size > old_size else 0
    if new_bytes and node.backing is not None and getlength(node.backing) > old_size:
        flags |= BDRV_REQ_ZERO_WRITE
    if flags & ~getattr(node, "supported_truncate_flags", 0):
        raise BlockError(errno.ENOTSUP, "Block driver does not support requested flags")
    node.drv_truncate(size, exact, prealloc, flags)
    _count_write(node)
    refresh_total_sectors(node)
    if getattr(node, "dirty_bitmaps", None):
        from emulator.qcow2.bitmap_dirty import truncate_all
        truncate_all(node, node.total_sectors * SECTOR_SIZE)


def flush(node: BlockNode) -> None:
    """bdrv_co_flush (nothing on a node made unusable): the driver's write-back
    to the OS, then, when writes were counted since the last successful flush
    (and not with cache.no-flush), its flush to disk; then every writable child
    (all of them even after a failure, the first error is raised). The events
    go to the file child. A failure leaves the node's flushed generation as it was."""
    if node.read_only or getattr(node, "dead", False):
        return
    gen = node.write_gen
    from emulator.block import coroutine
    co = coroutine._current
    if co is None:  # nothing else in flight: no flush to wait for
        _flush(node, gen)
        return
    # a flush in flight on the node: wait for it (bs->flush_queue), in order
    while getattr(node, "active_flush", False):
        node.__dict__.setdefault("flush_queue", []).append(co)
        coroutine.yield_()
    node.active_flush = True
    try:
        _flush(node, gen)
    finally:
        node.active_flush = False
        if getattr(node, "flush_queue", None):
            coroutine.wake(node.flush_queue.pop(0))


def _flush(node: BlockNode, gen: int) -> None:
    """The flush itself, ``gen`` the write generation when it was requested."""
    event = getattr(node.file, "debug_event", None)
    if event is not None:
        event("flush_to_os")
    node.drv_flush()
    if not getattr(node, "no_flush", False) and node.flushed_gen != gen:
        if event is not None:
            event("flush_to_disk")
        node.drv_flush_to_disk()
    error = None
    for child in _writable_children(node):
        try:
            flush(child)
        except BlockError as e:
            error = error or e
    if error is not None:
        raise error
    node.flushed_gen = gen


def _writable_children(node: BlockNode) -> list[BlockNode]:
    """The children a flush goes on to, in QEMU's list order (newest child first):
    an external data file, then the file."""
    children = []
    data_file = getattr(node, "data_file", None)
    if data_file is not None and data_file is not node.file:
        children.append(data_file)
    if node.file is not None:
        children.append(node.file)
    return children


# ----------------------------------------------------------------- block status

def _co_block_status(node: BlockNode, want_zero: bool, offset: int,
                     length: int) -> BlockStatus:
    """bdrv_co_block_status for a single node (RAW pass-through, RECURSE, EOF)."""
    total = getlength(node)
    if offset >= total:
        return BlockStatus(BDRV_BLOCK_EOF, 0, 0, None)
    if not length:
        return BlockStatus(0, 0, 0, None)
    length = min(length, total - offset)
    align = node.request_alignment
    aligned_offset = _align_down(offset, align)
    aligned_bytes = _round_up(offset + length, align) - aligned_offset

    cached = None if _has_children(node) else _bsc_overlaps(node, aligned_offset, 1)
    if cached is not None:
        ret, pnum, local_map, local_file = (BDRV_BLOCK_DATA | BDRV_BLOCK_OFFSET_VALID,
                                            cached, aligned_offset, node)
    else:
        st = node.drv_block_status(want_zero, aligned_offset, aligned_bytes)
        ret, pnum, local_map, local_file = st.flags, st.pnum, st.offset or 0, st.file
        if (want_zero and ret == BDRV_BLOCK_DATA | BDRV_BLOCK_OFFSET_VALID
                and not _has_children(node)):
            node.bsc = (aligned_offset, aligned_offset + pnum)

    pnum -= offset - aligned_offset
    if pnum > length:
        pnum = length
    if ret & BDRV_BLOCK_OFFSET_VALID:
        local_map += offset - aligned_offset

    if ret & BDRV_BLOCK_RAW:
        st = _co_block_status(local_file, want_zero, local_map, pnum)
        ret, pnum, local_map, local_file = st.flags, st.pnum, st.offset, st.file
    else:
        if ret & (BDRV_BLOCK_DATA | BDRV_BLOCK_ZERO):
            ret |= BDRV_BLOCK_ALLOCATED
        elif getattr(node, "supports_backing", False):
            if node.backing is None:
                ret |= BDRV_BLOCK_ZERO
            elif want_zero and offset >= getlength(node.backing):
                ret |= BDRV_BLOCK_ZERO
        if (want_zero and ret & BDRV_BLOCK_RECURSE and local_file is not None
                and local_file is not node and ret & BDRV_BLOCK_DATA
                and not ret & BDRV_BLOCK_ZERO and ret & BDRV_BLOCK_OFFSET_VALID):
            try:
                st2 = _co_block_status(local_file, want_zero, local_map, pnum)
            except BlockError:
                st2 = None
            if st2 is not None:
                if st2.flags & BDRV_BLOCK_EOF and (not st2.pnum or st2.flags & BDRV_BLOCK_ZERO):
                    ret |= BDRV_BLOCK_ZERO
                else:
                    pnum = st2.pnum
                    ret |= st2.flags & BDRV_BLOCK_ZERO
            ret &= ~BDRV_BLOCK_RECURSE
    if offset + pnum == total:
        ret |= BDRV_BLOCK_EOF
    return BlockStatus(ret, pnum, local_map, local_file)


def _filter_or_cow(node: BlockNode) -> BlockNode | None:
    """bdrv_filter_or_cow_bs: a filter's child, else the backing node."""
    if getattr(node, "is_filter", False):
        return node.file
    return node.backing if getattr(node, "supports_backing", False) else None


def common_block_status_above(node: BlockNode, base: BlockNode | None, include_base: bool,
                              want_zero: bool, offset: int,
                              length: int) -> tuple[BlockStatus, int]:
    """bdrv_co_common_block_status_above: (status, depth)."""
    if not include_base and node is base:
        return BlockStatus(0, length, 0, None), 0
    st = _co_block_status(node, want_zero, offset, length)
    depth = 1
    if st.pnum == 0 or st.flags & BDRV_BLOCK_ALLOCATED or node is base:
        return st, depth
    eof = offset + st.pnum if st.flags & BDRV_BLOCK_EOF else None
    length = st.pnum
    p = _filter_or_cow(node)
    while p is not None and (include_base or p is not base):
        st = _co_block_status(p, want_zero, offset, length)
        depth += 1
        if st.pnum == 0:
            st = BlockStatus(BDRV_BLOCK_ZERO | BDRV_BLOCK_ALLOCATED, length, st.offset, p)
            break
        if st.flags & BDRV_BLOCK_ALLOCATED:
            st = BlockStatus(st.flags & ~BDRV_BLOCK_EOF, st.pnum, st.offset, st.file)
            break
        if p is base:
            break
        length = st.pnum
        p = _filter_or_cow(p)
    if eof is not None and offset + st.pnum == eof:
        st = BlockStatus(st.flags | BDRV_BLOCK_EOF, st.pnum, st.offset, st.file)
    return st, depth


def block_status(node: BlockNode, offset: int, length: int, want_zero: bool = True) -> BlockStatus:
    """bdrv_block_status: status of ``node`` alone (its backing chain not consulted)."""
    return common_block_status_above(node, _filter_or_cow(node), False, want_zero,
                                     offset, length)[0]


def block_status_above(node: BlockNode, base: BlockNode | None, offset: int, length: int,
                       want_zero: bool = True) -> tuple[BlockStatus, int]:
    """bdrv_block_status_above with the depth qemu-img map reports."""
    return common_block_status_above(node, base, False, want_zero, offset, length)


def is_allocated(node: BlockNode, offset: int, length: int) -> tuple[bool, int]:
    """bdrv_is_allocated: (allocated in this node, pnum)."""
    st, _depth = common_block_status_above(node, node, True, False, offset, length)
    return bool(st.flags & BDRV_BLOCK_ALLOCATED), st.pnum


def is_allocated_above(top: BlockNode, base: BlockNode | None, include_base: bool,
                       offset: int, length: int) -> tuple[int, int]:
    """bdrv_is_allocated_above: (depth of the allocating layer or 0, pnum)."""
    st, depth = common_block_status_above(top, base, include_base, False, offset, length)
    return (depth if st.flags & BDRV_BLOCK_ALLOCATED else 0), st.pnum
