"""Coroutines for in-flight requests: one thread each, one baton between them all.

QEMU runs every request in a coroutine and switches only where a coroutine
yields. Here a coroutine runs in its own thread, but a single baton lets
exactly one thread run at a time, so execution stays deterministic:
``enter(co)`` hands the baton to ``co`` and waits until it yields or
terminates; ``yield_()`` hands it back to whoever entered it. Coroutines woken
with ``wake(co)`` from inside a coroutine are entered once the running one
has given the baton back, depth-first (qemu_aio_coroutine_enter's wake-up
queue). The module imports threading only when a coroutine is created, so
requests of the main thread (nothing in flight) pay nothing.
"""
from __future__ import annotations

import sys

_current = None   # the running Coroutine, None for the main thread


class Coroutine:
    """``fn()`` run in a thread holding the baton whenever it runs.

    While it runs, ``sys.stdout`` is ``out`` when one is given (the request's
    completion output), else the stdout of whoever entered it; ``main_out``
    is the stdout of whoever entered it first. Two semaphores pass the baton:
    ``_resume`` to the coroutine, ``_back`` to whoever entered it.
    """

    def __init__(self, fn, out=None) -> None:
        import threading
        self.fn = fn
        self.out = out
        self.main_out = None
        self.done = False
        self.error: BaseException | None = None
        self.wakeup: list = []
        self._resume = threading.Semaphore(0)
        self._back = threading.Semaphore(0)
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._started = False

    def _main(self) -> None:
        self._resume.acquire()
        try:
            self.fn()
        except BaseException as e:  # re-raised in the thread that entered it
            self.error = e
        self.done = True
        self._back.release()


def current() -> Coroutine | None:
    """The running coroutine, None in the main thread."""
    return _current


def enter(co: Coroutine) -> None:
    """Run ``co`` until it yields or terminates, then the coroutines it woke
    (depth-first); an exception a coroutine ended with is raised here."""
    pending = [co]
    error = None
    while pending:
        to = pending.pop(0)
        _switch_to(to)
        pending[0:0] = to.wakeup
        to.wakeup = []
        if to.error is not None:
            error = error or to.error
            to.error = None
    if error is not None:
        raise error


def _switch_to(co: Coroutine) -> None:
    global _current
    if co.done:
        return
    saved, prev = sys.stdout, _current
    if co.main_out is None:
        co.main_out = saved
    _current = co
    if co.out is not None:
        sys.stdout = co.out
    if not co._started:
        co._started = True
        co._thread.start()
    co._resume.release()
    co._back.acquire()
    sys.stdout = saved
    _current = prev


def yield_() -> None:
    """Give the baton back to whoever entered this coroutine until it is entered again."""
    co = _current
    co._back.release()
    co._resume.acquire()


def wake(co: Coroutine) -> None:
    """aio_co_wake: from a coroutine, queue ``co`` to run once the running one
    yields or terminates; from the main thread, enter it now."""
    if _current is None:
        enter(co)
    elif co not in _current.wakeup:
        _current.wakeup.append(co)
