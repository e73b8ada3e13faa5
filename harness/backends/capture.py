"""Capturing an in-process command's output as one ``2>&1`` stream.

The emulator's command lines reproduce C stdio buffering themselves
(emulator/cli/stdio.py): they buffer stdout fully unless ``sys.stdout``
says it is a terminal.  So this capture writes both streams straight into
one buffer, in call order, and reports ``isatty()`` as asked: False for a
pipe (one-shot commands), True for an interactive session.
"""
from __future__ import annotations

import contextlib
import io
import sys
from typing import Iterator


class _Stream(io.TextIOBase):
    def __init__(self, sink: list[str], tty: bool) -> None:
        self._sink = sink
        self._tty = tty

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return self._tty

    def write(self, s: str) -> int:
        self._sink.append(s)
        return len(s)


class PipeCapture:
    """Holds the combined output of one in-process command."""

    def __init__(self, tty: bool = False) -> None:
        self._parts: list[str] = []
        self.stdout = _Stream(self._parts, tty)
        self.stderr = _Stream(self._parts, tty)

    def text(self) -> str:
        return "".join(self._parts)

    @contextlib.contextmanager
    def redirect(self) -> Iterator["PipeCapture"]:
        """Point sys.stdout/sys.stderr here for the duration of the block."""
        old = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = self.stdout, self.stderr  # type: ignore[assignment]
        try:
            yield self
        finally:
            sys.stdout, sys.stderr = old
