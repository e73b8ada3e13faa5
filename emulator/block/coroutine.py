"""Coroutines for in-flight requests: one thread each, one baton between them all.

QEMU runs every request in a coroutine and switches only where a coroutine
yields. Here a request that may have to yield (an aio request on a node tree
with a blkdebug node) runs in its own thread, but a single baton lets exactly
one thread run at a time, so execution stays deterministic: ``enter(co)``
hands the baton to ``co`` and waits until it yields or terminates; ``yield_()``
hands it back. Coroutines woken with ``wake(co)`` (a dependency completed) are
entered, in order, once the running one has given the baton back, like QEMU's
wake-up queue. The module imports threading only when a coroutine is created.
"""
from __future__ import annotations

import sys

_current = None   # the running Coroutine, None for the main thread
_woken: list = []
_cond = None


class Coroutine:
    """One request: ``fn()`` runs in a thread holding the baton whenever it runs.

    While it runs, ``sys.stdout`` is ``self.out`` (its completion output);
    ``main_out`` is the stdout of whoever entered it first.
    """

    def __init__(self, fn) -> None:
        global _cond
        import io
        import threading
        if _cond is None:
            _cond = threading.Condition()
        self.fn = fn
        self.out = io.StringIO()
        self.main_out = None
        self.done = False
        self.error: BaseException | None = None
        self._running = False
        self._thread = threading.Thread(target=self._main, daemon=True)
        self._started = False

    def _main(self) -> None:
        with _cond:
            _cond.wait_for(lambda: self._running)
        try:
            self.fn()
        except BaseException as e:  # re-raised in the thread that entered it
            self.error = e
        with _cond:
            self.done = True
            self._running = False
            _cond.notify_all()


def current() -> Coroutine | None:
    """The running coroutine, None in the main thread."""
    return _current


def enter(co: Coroutine) -> None:
    """Run ``co`` until it yields or terminates, then the coroutines it woke."""
    global _current
    _switch_to(co)
    while _woken:
        _switch_to(_woken.pop(0))
    _current = None


def _switch_to(co: Coroutine) -> None:
    global _current
    if co.done:
        return
    saved = sys.stdout
    if co.main_out is None:
        co.main_out = saved
    _current = co
    sys.stdout = co.out
    with _cond:
        co._running = True
        if not co._started:
            co._started = True
            co._thread.start()
        _cond.notify_all()
        _cond.wait_for(lambda: not co._running)
    sys.stdout = saved
    _current = None
    if co.error is not None:
        error, co.error = co.error, None
        raise error


def yield_() -> None:
    """Give the baton back to the main thread until ``enter`` resumes this coroutine."""
    co = _current
    with _cond:
        co._running = False
        _cond.notify_all()
        _cond.wait_for(lambda: co._running)


def wake(co: Coroutine) -> None:
    """Queue ``co`` to be entered once the running coroutine yields or terminates."""
    if co not in _woken:
        _woken.append(co)
