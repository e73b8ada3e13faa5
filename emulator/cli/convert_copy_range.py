"""qemu-img convert -C: copy offloading (convert_co_copy_range, bdrv_co_copy_range).

A data chunk is copied as it is, without zero detection; zero clusters of a
qcow2 source become zero writes.  A compressed cluster makes the copy fail
with ENOTSUP, and QEMU falls back to reading and writing.

When the fallback starts matters: QEMU's coroutines (8, or -m) each pick a
chunk and decide then whether to offload it, before waiting for their turn to
write.  A chunk picked before the failure is still offloaded.  Chunk m is
picked right after chunk p(m) started (p = 0 for the first batch, m - W + 1
later); a failure before any I/O of its chunk happens at that start,
otherwise during the chunk.
"""
from __future__ import annotations

import errno

SECTOR = 512


class CopyRange:
    """Offloading state of one convert run with ``coroutines`` coroutines."""

    def __init__(self, coroutines: int) -> None:
        self.coroutines = coroutines
        #: (chunk, failed before any I/O of that chunk) once offloading failed
        self.failure: tuple[int, bool] | None = None

    def _decided(self, chunk: int) -> bool:
        """Whether chunk ``chunk`` was picked while offloading was still on."""
        if self.failure is None:
            return True
        if chunk == 0:
            return True
        picked_after = 0 if chunk < self.coroutines else chunk - self.coroutines + 1
        failed, at_start = self.failure
        return failed > picked_after or (failed == picked_after and not at_start)

    def copy(self, s, chunk: int, sector_num: int, nb_sectors: int) -> bool:
        """Offload the chunk if it was picked for it; False: read and write it instead."""
        from emulator.block.node import BlockError
        if not self._decided(chunk):
            return False
        progress = [0]
        try:
            while nb_sectors > 0:
                cur, cur_offset = s.select_part(sector_num)
                offset = (sector_num - cur_offset) * SECTOR
                n = min(nb_sectors, s.src_sectors[cur] - (sector_num - cur_offset))
                _copy_range_from(s.src[cur], offset, s.target, sector_num * SECTOR, n * SECTOR,
                                 progress)
                sector_num += n
                nb_sectors -= n
        except BlockError:
            if self.failure is None:
                self.failure = (chunk, progress[0] == 0)
            return False
        return True


def _copy_range_from(src, offset: int, dst, dst_offset: int, nbytes: int,
                     progress: list) -> None:
    """bdrv_co_copy_range_from down ``src``'s chain (qcow2_co_copy_range_from)."""
    from emulator.block import io
    from emulator.block.node import (
        BDRV_BLOCK_ALLOCATED, BDRV_BLOCK_DATA, BDRV_BLOCK_OFFSET_VALID, BDRV_BLOCK_ZERO,
        BDRV_REQ_ZERO_WRITE, BlockError,
    )
    end = offset + nbytes
    while offset < end:
        st = io.block_status(src, offset, end - offset)
        n = st.pnum
        qcow2 = src.format_name == "qcow2"
        if not qcow2 or st.flags & BDRV_BLOCK_DATA:
            if qcow2 and not st.flags & BDRV_BLOCK_OFFSET_VALID:
                raise BlockError(errno.ENOTSUP)
            io.pwrite(dst, dst_offset, io.pread(src, offset, n))
            progress[0] += 1
        elif st.flags & BDRV_BLOCK_ZERO and st.flags & BDRV_BLOCK_ALLOCATED \
                or src.backing is None or offset >= io.getlength(src.backing):
            io.pwrite_zeroes(dst, dst_offset, n, BDRV_REQ_ZERO_WRITE)
            progress[0] += 1
        else:
            n = min(n, io.getlength(src.backing) - offset)
            _copy_range_from(src.backing, offset, dst, dst_offset, n, progress)
        offset += n
        dst_offset += n
