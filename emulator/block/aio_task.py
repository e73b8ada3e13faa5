"""A pool of tasks a request runs in parallel (block/aio_task.c).

A task is a coroutine entered at once by the request that starts it; the
request goes on when the task first yields. At most ``max_busy`` tasks run at
a time: starting one more waits for a slot. The first failure is kept as the
pool's status.
"""
from __future__ import annotations

from emulator.block import coroutine


class AioTaskPool:
    """The tasks of one request (``main`` is the request's coroutine)."""

    def __init__(self, max_busy: int) -> None:
        self.main = coroutine.current()
        self.max_busy = max_busy
        self.busy = 0
        self.status = None  # the first task's BlockError
        self.waiting = False

    def start(self, fn) -> None:
        """aio_task_pool_start_task: ``fn()`` returns None or the task's BlockError."""
        if self.busy >= self.max_busy:
            self._wait_one()
        coroutine.enter(coroutine.Coroutine(lambda: self._task(fn)))

    def _task(self, fn) -> None:
        self.busy += 1
        error = fn()
        self.busy -= 1
        if error is not None and self.status is None:
            self.status = error
        if self.waiting:
            self.waiting = False
            coroutine.wake(self.main)

    def _wait_one(self) -> None:
        self.waiting = True
        coroutine.yield_()

    def wait_all(self) -> None:
        while self.busy:
            self._wait_one()
