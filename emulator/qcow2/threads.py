"""Compression and encryption work handed to the thread pool (qcow2-threads.c).

QEMU compresses, decompresses, encrypts and decrypts in a worker of the
thread pool while the request's coroutine yields, at most QCOW2_MAX_THREADS
jobs of a node at once; the job counter is kept under ``s->lock``, so a
request whose job starts or ends waits for the lock another request holds
across its metadata I/O. From the main thread (nothing in flight) the work
is simply done.
"""
from __future__ import annotations

from emulator.block import coroutine

#: QCOW2_MAX_THREADS: jobs of one node in the thread pool at once
MAX_THREADS = 4


def co_process(s, fn):
    """qcow2_co_process: ``fn()`` as a thread-pool job; its result (or exception)."""
    co = coroutine._current
    if co is None:
        return fn()
    from emulator.block import aio_context
    from emulator.qcow2.lock import lock, unlock
    lock(s)
    while s.thread_jobs >= MAX_THREADS:  # qemu_co_queue_wait on s->thread_task_queue
        if not s.thread_waiters:
            s.thread_waiters = []
        s.thread_waiters.append(co)
        unlock(s)
        while co in s.thread_waiters:
            coroutine.yield_()
        lock(s)
    s.thread_jobs += 1
    unlock(s)
    try:
        return fn()
    finally:
        aio_context.host_io(False)
        lock(s)
        s.thread_jobs -= 1
        if s.thread_waiters:  # qemu_co_queue_next
            coroutine.wake(s.thread_waiters.pop(0))
        unlock(s)
