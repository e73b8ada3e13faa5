"""Coroutines for in-flight requests, switched only where they yield.

QEMU runs every request in a coroutine and switches only where a coroutine
yields. Here a coroutine is a greenlet (a stackful coroutine of its own):
``enter(co)`` runs ``co`` until it yields or terminates; ``yield_()`` switches
back to whoever entered it. Execution stays deterministic, one coroutine at a
time. Coroutines woken with ``wake(co)`` from inside a coroutine are entered
once the running one has yielded, depth-first (qemu_aio_coroutine_enter's
wake-up queue). greenlet is imported only when a coroutine is created, so
requests of the main thread (nothing in flight) pay nothing.
"""
from __future__ import annotations

import sys

_current = None   # the running Coroutine, None outside any coroutine


class Coroutine:
    """``fn()`` run as a greenlet.

    While it runs, ``sys.stdout`` is ``out`` when one is given (the request's
    completion output), else the stdout of whoever entered it; ``main_out``
    is the stdout of whoever entered it first.
    """

    def __init__(self, fn, out=None) -> None:
        from greenlet import greenlet
        self.fn = fn
        self.out = out
        self.main_out = None
        self.done = False
        self.error: BaseException | None = None
        self.wakeup: list = []
        self._greenlet = greenlet(self._main)

    def _main(self) -> None:
        try:
            self.fn()
        except BaseException as e:  # re-raised by whoever entered it
            self.error = e
        self.done = True


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
    from greenlet import getcurrent
    co._greenlet.parent = getcurrent()   # where yield_ and termination return to
    co._greenlet.switch()
    sys.stdout = saved
    _current = prev


def yield_() -> None:
    """Switch back to whoever entered this coroutine until it is entered again."""
    _current._greenlet.parent.switch()


def wake(co: Coroutine) -> None:
    """aio_co_wake: from a coroutine, queue ``co`` to run once the running one
    yields or terminates; from the main thread, enter it now."""
    if _current is None:
        enter(co)
    elif co not in _current.wakeup:
        _current.wakeup.append(co)
