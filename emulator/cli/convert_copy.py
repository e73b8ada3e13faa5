"""The copy loop of qemu-img convert (ImgConvertState and convert_do_copy).

QEMU runs the loop in up to 8 coroutines, but with writes kept in order
(the default; -W is modelled the same way) every write completes before the
next one starts, so a sequential loop gives the same requests in the same
order.  Chunks are classified from the source's block status (data, zero, or
left to the target's backing file), data chunks are scanned sector by sector
for zeroes (``min_sparse``), and zero chunks are skipped when the new target
reads as zeroes anyway.
"""
from __future__ import annotations

from dataclasses import dataclass

SECTOR = 512
REQUEST_MAX_SECTORS = ((1 << 31) - 1) >> 9
BLK_ZERO, BLK_DATA, BLK_BACKING_FILE = "zero", "data", "backing"
_ZERO_SECTOR = bytes(SECTOR)


class ConvertError(Exception):
    """A failed convert; the message was already reported."""


def _strerror(e) -> str:
    """strerror(-ret): QEMU prints the errno text, not the driver's message."""
    import os
    return os.strerror(e.errno)


@dataclass
class ConvertState:
    """The fields of ImgConvertState the sequential loop needs."""

    src: list[object]
    src_sectors: list[int]
    src_alignment: list[int]
    target: object
    total_sectors: int = 0
    min_sparse: int = 8
    alignment: int = 1
    buf_sectors: int = 4096
    cluster_sectors: int = 0
    compressed: bool = False
    copy_range: object | None = None
    has_zero_init: bool = False
    target_has_backing: bool = False
    target_backing_sectors: int = -1
    salvage: bool = False
    quiet: bool = False
    progress: object | None = None
    status: str = BLK_DATA
    sector_next_status: int = 0
    allocated_sectors: int = 0
    allocated_done: int = 0

    def select_part(self, sector_num: int) -> tuple[int, int]:
        """(index of the source holding sector_num, its first sector)."""
        cur = offset = 0
        while sector_num - offset >= self.src_sectors[cur]:
            offset += self.src_sectors[cur]
            cur += 1
        return cur, offset


def _iteration_sectors(s: ConvertState, sector_num: int) -> int:
    """convert_iteration_sectors: length of the next chunk; sets s.status."""
    from emulator.block import io
    from emulator.block.node import BDRV_BLOCK_DATA, BDRV_BLOCK_ZERO, BlockError
    cur, cur_offset = s.select_part(sector_num)
    n = min(s.total_sectors - sector_num, REQUEST_MAX_SECTORS)
    post_backing_zero = False
    if s.target_backing_sectors >= 0:
        if sector_num >= s.target_backing_sectors:
            post_backing_zero = True
        elif sector_num + n > s.target_backing_sectors:
            n = s.target_backing_sectors - sector_num
    if s.sector_next_status <= sector_num:
        offset = (sector_num - cur_offset) * SECTOR
        src = s.src[cur]
        base = src.backing if s.target_has_backing and getattr(src, "supports_backing",
                                                                False) else None
        while True:
            try:
                st, _depth = io.block_status_above(src, base, offset, n * SECTOR)
                flags, count = st.flags, st.pnum
                break
            except BlockError as e:
                if not s.salvage:
                    from emulator.report import error_report
                    error_report(f"error while reading block status at offset {offset}: "
                                 f"{_strerror(e)}")
                    raise ConvertError() from None
                if n == 1:
                    if not s.quiet:
                        from emulator.report import warn_report
                        warn_report(f"error while reading block status at offset {offset}: "
                                    f"{_strerror(e)}")
                    flags, count = BDRV_BLOCK_DATA, SECTOR
                    break
                n = -(-n // 4)
        n = -(-count // SECTOR)
        tail = (sector_num - cur_offset + n) % s.src_alignment[cur]
        if n > tail:
            n -= tail
        if flags & BDRV_BLOCK_ZERO:
            s.status = BLK_BACKING_FILE if post_backing_zero else BLK_ZERO
        elif flags & BDRV_BLOCK_DATA:
            s.status = BLK_DATA
        else:
            s.status = BLK_BACKING_FILE if s.target_has_backing else BLK_DATA
        s.sector_next_status = sector_num + n
    n = min(n, s.sector_next_status - sector_num)
    if s.status == BLK_DATA:
        n = min(n, s.buf_sectors)
    if s.compressed:
        if n < s.cluster_sectors:
            n = min(s.cluster_sectors, s.total_sectors - sector_num)
            s.status = BLK_DATA
        else:
            n -= n % s.cluster_sectors
    return n


def _is_allocated_sectors(zero: list, start: int, n: int, sector_num: int,
                          alignment: int) -> tuple[bool, int]:
    """is_allocated_sectors over the per-sector zero flags ``zero[start:start+n]``."""
    if n <= 0:
        return False, 0
    is_zero = zero[start]
    i = 1
    while i < n and zero[start + i] == is_zero:
        i += 1
    if i == n:
        return not is_zero, i
    tail = (sector_num + i) & (alignment - 1)
    if tail:
        if is_zero and i <= tail:
            is_zero = False
        if not is_zero:
            i = min(i + alignment - tail, n)
        else:
            i -= tail
    return not is_zero, i


def _is_allocated_sectors_min(zero: list, start: int, n: int, minimum: int, sector_num: int,
                              alignment: int) -> tuple[bool, int]:
    """is_allocated_sectors_min: data runs swallow zero runs shorter than ``minimum``."""
    minimum = min(minimum, n)
    ret, pnum = _is_allocated_sectors(zero, start, n, sector_num, alignment)
    if not ret:
        return ret, pnum
    used = checked = pnum
    start += pnum
    n -= pnum
    sector_num += pnum
    while n > 0:
        ret, pnum = _is_allocated_sectors(zero, start, n, sector_num, alignment)
        start += pnum
        n -= pnum
        sector_num += pnum
        checked += pnum
        if ret:
            used = checked
        elif pnum >= minimum:
            break
    return True, used


def _read(s: ConvertState, sector_num: int, nb_sectors: int) -> bytes:
    """convert_co_read: the chunk from the source(s), salvaging failed sectors."""
    from emulator.block import io
    from emulator.block.node import BlockError
    out = bytearray()
    single_until = 0
    while nb_sectors > 0:
        cur, cur_offset = s.select_part(sector_num)
        offset = (sector_num - cur_offset) * SECTOR
        n = min(nb_sectors, s.src_sectors[cur] - (sector_num - cur_offset))
        if single_until > offset:
            n = 1
        try:
            out += io.pread(s.src[cur], offset, n * SECTOR)
        except BlockError as e:
            if not s.salvage:
                raise
            if n > 1:
                single_until = offset + n * SECTOR
                continue
            if not s.quiet:
                from emulator.report import warn_report
                warn_report(f"error while reading offset {offset}: {_strerror(e)}")
            out += _ZERO_SECTOR
        sector_num += n
        nb_sectors -= n
    return bytes(out)


def _write(s: ConvertState, sector_num: int, nb_sectors: int, buf: bytes, status: str) -> None:
    """convert_co_write: data, explicit zeroes, or nothing for each part of the chunk."""
    from emulator.block import io
    from emulator.block.node import BDRV_REQ_MAY_UNMAP, BDRV_REQ_WRITE_COMPRESSED
    zero = [buf[i:i + SECTOR] == _ZERO_SECTOR for i in range(0, len(buf), SECTOR)] \
        if status == BLK_DATA and s.min_sparse and not s.compressed else None
    pos = 0
    while nb_sectors > 0:
        n = nb_sectors
        if status == BLK_BACKING_FILE:
            pass
        else:
            write_data = False
            if status == BLK_DATA:
                if not s.min_sparse:
                    write_data = True
                elif not s.compressed:
                    write_data, n = _is_allocated_sectors_min(zero, pos, n, s.min_sparse,
                                                              sector_num, s.alignment)
                else:
                    write_data = buf[pos * SECTOR:(pos + n) * SECTOR].count(0) != n * SECTOR
            if write_data:
                io.pwrite(s.target, sector_num * SECTOR, buf[pos * SECTOR:(pos + n) * SECTOR],
                          BDRV_REQ_WRITE_COMPRESSED if s.compressed else 0)
            elif not s.has_zero_init:
                io.pwrite_zeroes(s.target, sector_num * SECTOR, n * SECTOR, BDRV_REQ_MAY_UNMAP)
        sector_num += n
        nb_sectors -= n
        pos += n


def do_copy(s: ConvertState) -> None:
    """convert_do_copy after the state is set up; raises ConvertError after a message."""
    from emulator.block import io
    from emulator.block.node import BlockError
    from emulator.report import error_report
    if s.compressed:
        if s.cluster_sectors <= 0 or s.cluster_sectors > s.buf_sectors:
            error_report("invalid cluster size")
            raise ConvertError()
        s.buf_sectors = s.cluster_sectors
    sector_num = 0
    while sector_num < s.total_sectors:
        n = _iteration_sectors(s, sector_num)
        if s.status == BLK_DATA or (not s.min_sparse and s.status == BLK_ZERO):
            s.allocated_sectors += n
        sector_num += n
    s.sector_next_status = 0
    sector_num = 0
    chunk = -1
    while sector_num < s.total_sectors:
        chunk += 1
        n = _iteration_sectors(s, sector_num)
        status = s.status
        if not s.min_sparse and status == BLK_ZERO:
            n = min(n, s.buf_sectors)
        if status == BLK_DATA or (not s.min_sparse and status == BLK_ZERO):
            s.allocated_done += n
            if s.progress is not None:
                s.progress.print(100.0 * s.allocated_done / s.allocated_sectors, 0)
        if status == BLK_DATA and s.copy_range is not None \
                and s.copy_range.copy(s, chunk, sector_num, n):
            sector_num += n
            continue
        buf = b""
        if status == BLK_DATA:
            try:
                buf = _read(s, sector_num, n)
            except BlockError as e:
                error_report(f"error while reading at byte {sector_num * SECTOR}: {_strerror(e)}")
                raise ConvertError() from None
        elif not s.min_sparse and status == BLK_ZERO:
            status = BLK_DATA
            buf = bytes(n * SECTOR)
        try:
            _write(s, sector_num, n, buf, status)
        except BlockError as e:
            error_report(f"error while writing at byte {sector_num * SECTOR}: {_strerror(e)}")
            raise ConvertError() from None
        sector_num += n
    if s.compressed:
        try:
            io.pwrite_compressed(s.target, 0, b"")
        except BlockError:
            raise ConvertError() from None
