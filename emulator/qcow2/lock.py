"""s->lock, the CoMutex serialising qcow2 metadata work between requests.

A request takes it around the mapping or allocation of each chunk, the L2
update after its data write, zero writes, discards, the cache write-back of a
flush, block status and truncate; it keeps it while its metadata I/O yields.
Waiters queue in order and ``unlock`` hands the mutex to the first one, which
runs once the unlocking coroutine yields (qemu_co_mutex_unlock/wake). Outside
coroutines (nothing else in flight) there is nothing to wait for: the main
thread never takes it.
"""
from __future__ import annotations

from emulator.block import coroutine


def lock(s) -> None:
    """qemu_co_mutex_lock(&s->lock)."""
    co = coroutine._current
    if co is None:
        return
    if s.lock_holder is None:
        s.lock_holder = co
        return
    if not s.lock_waiters:
        s.lock_waiters = []
    s.lock_waiters.append(co)
    while s.lock_holder is not co:
        coroutine.yield_()


def unlock(s) -> None:
    """qemu_co_mutex_unlock(&s->lock): hand it to the first waiter."""
    co = coroutine._current
    if co is None or s.lock_holder is not co:
        return
    if s.lock_waiters:
        s.lock_holder = s.lock_waiters.pop(0)
        coroutine.wake(s.lock_holder)
    else:
        s.lock_holder = None
