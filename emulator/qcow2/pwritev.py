"""A guest data write (qcow2_co_pwritev_part and qcow2_co_pwritev_task).

The write is cut into chunks, each mapping to one contiguous host area. Each
chunk is allocated under the qcow2 lock; its data write and L2 update (the
task) run outside it. A write of one chunk runs its task directly; a write of
several runs them as parallel tasks (at most MAX_WORKERS), so later chunks
are allocated while earlier data writes are in flight, and a failing task
stops the allocation of the chunks after it only once it has failed. A
request of the main thread that needs tasks continues as a coroutine from
there (the main thread cannot yield).
"""
from __future__ import annotations

from emulator.block import coroutine
from emulator.block.node import BlockError
from emulator.qcow2.lock import lock, unlock

INT_MAX = (1 << 31) - 1
#: QCOW2_MAX_WORKERS: tasks of one write in flight at a time
MAX_WORKERS = 8
#: QCOW_MAX_CRYPT_CLUSTERS: clusters per encrypted chunk
MAX_CRYPT_CLUSTERS = 32


def pwritev(s, offset: int, data: bytes) -> None:
    """Write ``data`` at guest ``offset``; raise the first error."""
    req = _Write(s, offset, data)
    req.run()
    if req.error is not None:
        raise req.error


class _Write:
    """One write request's progress (its chunks and task pool)."""

    def __init__(self, s, offset: int, data: bytes) -> None:
        self.s, self.offset, self.data = s, offset, data
        self.pos = 0
        self.pool = None
        self.error: BlockError | None = None
        self.chunk = None  # allocated by the main thread, to be started by the coroutine

    def run(self) -> None:
        s = self.s
        while self.pos < len(self.data) and (self.pool is None or self.pool.status is None):
            chunk, self.chunk = self.chunk, None
            if chunk is None:
                lock(s)
                try:
                    chunk = self._allocate()
                except BlockError as e:
                    self.error = e
                    unlock(s)
                    self._wait_tasks()
                    return
                unlock(s)
            cur = chunk[0]
            if self.pool is None and cur != len(self.data) - self.pos:
                if coroutine._current is None:
                    from emulator.block import aio_context
                    self.chunk = chunk
                    aio_context.run(self.run)
                    return
                from emulator.block.aio_task import AioTaskPool
                self.pool = AioTaskPool(MAX_WORKERS)
            if self.pool is None:
                self.error = self._task(*chunk)
                if self.error is not None:
                    return
            else:
                self.pool.start(lambda c=chunk: self._task(*c))
            self.pos += cur
        lock(s)
        unlock(s)
        self._wait_tasks()

    def _wait_tasks(self) -> None:
        if self.pool is not None:
            self.pool.wait_all()
            self.error = self.error or self.pool.status

    def _allocate(self) -> tuple:
        """qcow2_alloc_host_offset and the overlap check of the next chunk (lock held)."""
        from emulator.qcow2.cluster import abort_meta, alloc_host_offset
        from emulator.qcow2.dependencies import register
        from emulator.qcow2.overlap import pre_write_overlap_check
        s = self.s
        offset = self.offset + self.pos
        length = len(self.data) - self.pos
        limit = INT_MAX if s.crypto is None else \
            MAX_CRYPT_CLUSTERS * s.cluster_size - (offset & (s.cluster_size - 1))
        cur, host, metas = alloc_host_offset(s, offset, min(length, limit))
        register(s, metas)
        try:
            if not s.has_data_file:
                pre_write_overlap_check(s, 0, host, cur)
        except BlockError:
            for m in metas:
                abort_meta(s, m)
            raise
        return cur, host, metas, offset, self.pos

    def _task(self, cur: int, host: int, metas: list, offset: int, pos: int) -> BlockError | None:
        """qcow2_co_pwritev_task: the data (merged with its COW when it can be),
        then the L2 update under the lock; None or the error."""
        from emulator.block import io
        from emulator.qcow2.cluster import abort_meta
        s = self.s
        chunk = self.data[pos:pos + cur]
        try:
            if s.crypto is not None:
                from emulator.qcow2 import crypto
                chunk = crypto.encrypt(s, host, offset, chunk)
            s._handle_alloc_space(metas)
            if not s._merge_cow(offset, cur, chunk, metas):
                if s.blkdbg:
                    s.blkdbg("write_aio")
                io.pwrite(s.data_file, host, chunk)
        except BlockError as e:
            lock(s)
            for m in metas:
                abort_meta(s, m)
            unlock(s)
            return e
        lock(s)
        try:
            return link_metas(s, metas)
        finally:
            unlock(s)


def link_metas(s, metas: list) -> BlockError | None:
    """qcow2_handle_l2meta: link one task's allocations; after a failure the
    rest are aborted. None or the error."""
    from emulator.qcow2.cluster import abort_meta, link_l2
    error = None
    for m in metas:
        if error is None:
            try:
                link_l2(s, m)
                continue
            except BlockError as e:
                error = e
        abort_meta(s, m)
    return error
