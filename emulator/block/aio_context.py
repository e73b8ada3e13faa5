"""The event loop requests in flight are resumed from (util/async.c, util/thread-pool.c).

QEMU's file-posix hands each host I/O (aio=threads) to a worker thread and
the request's coroutine yields; a bottom half of the main loop resumes it
once the worker is done. Here the I/O is done at once and the coroutine
yields at the same point (``host_io``); one ``poll`` runs the pending
bottom halves (the newest first, as QEMU's BH list), and the thread-pool
completion resumes the waiting coroutines newest first (its element list),
the I/Os of earlier qemu-io commands (``epoch``) before those of the current
one: a worker has long finished an I/O submitted before the main thread went
on to another command, while one submitted just before the poll is still
running. Within one completion run, a read submitted before the newest
I/O counts as done when the run looks again (a read from the host page cache
is done before a worker could finish a write). Which of several concurrent
host I/Os really completes first depends on QEMU's thread timing.

``inflight`` counts the BlockBackend's aio requests not yet completed: drains
(qemu-io's aio_flush and exit) poll until it is zero.
"""
from __future__ import annotations

from emulator.block import coroutine

_bhs: list = []        # scheduled bottom halves, newest first
_pool: list = []       # (epoch, coroutine, is a read) waiting for their host I/O, newest first
_scheduled: list = []  # coroutines of aio_co_schedule, in call order
inflight = 0
epoch = 0              # qemu-io commands started


def reset() -> None:
    """A new process (tool run): nothing in flight."""
    global inflight
    del _bhs[:], _pool[:], _scheduled[:]
    inflight = 0


def busy() -> bool:
    """Something is in flight: a new request must run as a coroutine."""
    return bool(inflight or _bhs or _pool)


def schedule_bh(fn) -> None:
    """qemu_bh_schedule: run ``fn`` at the next poll (a pending BH is not queued twice)."""
    if fn not in _bhs:
        _bhs.insert(0, fn)


def host_io(read: bool) -> None:
    """The running coroutine's host I/O went to the thread pool: yield until it completes."""
    co = coroutine.current()
    _pool.insert(0, (epoch, co, read))
    schedule_bh(_pool_completion)
    coroutine.yield_()


def co_schedule(co) -> None:
    """aio_co_schedule: enter ``co`` from a bottom half (the caller then yields)."""
    _scheduled.append(co)
    schedule_bh(_co_schedule_bh)


def _pool_completion() -> None:
    """thread_pool_completion_bh: resume the coroutines whose I/O is done, newest first."""
    done = [e for e in _pool if e[0] < epoch] + [e for e in _pool if e[0] == epoch]
    seen = set(map(id, done))
    while done:
        e = done.pop(0)
        _pool.remove(e)
        coroutine.enter(e[1])
        fresh = [x for x in _pool[1:] if x[2] and id(x) not in seen]
        seen.update(map(id, fresh))
        done[0:0] = fresh


def _co_schedule_bh() -> None:
    batch = list(_scheduled)
    del _scheduled[:]
    for co in batch:
        coroutine.enter(co)


def poll() -> bool:
    """One aio_poll iteration: the bottom halves pending now; False when none was."""
    global _bhs
    batch, _bhs = _bhs, []
    for fn in batch:
        fn()
    return bool(batch)


def poll_while(cond) -> None:
    """BDRV_POLL_WHILE; where QEMU would wait for ever (nothing left to run) it returns."""
    while cond() and poll():
        pass


def drain() -> None:
    """bdrv_drain_all: poll until every aio request has completed."""
    poll_while(lambda: inflight > 0)


def poll_co(fn):
    """bdrv_poll_co for one block-layer call of a command making several
    (qemu-io's map and alloc): with requests in flight ``fn`` runs in a
    coroutine of its own, polled until done, so the command goes on only
    after the poll iteration that completed it (never inside a completion
    run). Its exception is raised here; where QEMU would wait for ever, EIO."""
    if not busy():
        return fn()
    box: list = []

    def body() -> None:
        try:
            box.append((fn(), None))
        except Exception as e:  # raised outside the event loop
            box.append((None, e))
    run(body)
    if not box:
        from emulator.block.node import BlockError
        raise BlockError(5)
    if box[0][1] is not None:
        raise box[0][1]
    return box[0][0]


def run(fn):
    """A synchronous request while others are in flight: ``fn`` runs in a
    coroutine of its own (writing to the caller's stdout), polled until done."""
    co = coroutine.Coroutine(fn)
    result = []
    co.fn = lambda: result.append(fn())
    coroutine.enter(co)
    poll_while(lambda: not co.done)
    # not done: QEMU would wait for ever; here the command gives up (returns 0)
    return result[0] if result else 0
