"""C stdio buffering of stdout, so stdout/stderr interleave as QEMU's do.

QEMU writes results with printf() and errors with unbuffered stderr.  When
stdout is a pipe or file glibc buffers it fully in 4096-byte blocks, so in
``2>&1 | cat`` error lines come out before earlier stdout lines.  On a terminal
stdout is line buffered.  :class:`CStdout` reproduces both while a command line
runs (see :func:`redirected_stdout`).
"""
from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import TextIO

BLOCK = 4096


class CStdout:
    """A text stream in front of ``target`` that flushes like glibc's stdout."""

    def __init__(self, target: TextIO) -> None:
        self._target = target
        try:
            self._line = bool(target.isatty())
        except (AttributeError, ValueError):
            self._line = False
        self._pending = bytearray()
        self.broken = False

    def write(self, text: str) -> int:
        self._pending += text.encode("utf-8", "surrogateescape")
        if self._line:
            cut = self._pending.rfind(b"\n") + 1
        else:
            cut = len(self._pending) // BLOCK * BLOCK
        if cut:
            self._emit(cut)
        return len(text)

    def _emit(self, cut: int) -> None:
        chunk = bytes(self._pending[:cut])
        del self._pending[:cut]
        if self.broken:
            return
        try:
            self._target.write(chunk.decode("utf-8", "surrogateescape"))
            self._target.flush()
        except OSError:  # e.g. EPIPE: QEMU ignores SIGPIPE and failed writes
            self.broken = True

    def flush(self) -> None:
        """fflush(stdout)."""
        if self._pending:
            self._emit(len(self._pending))

    def discard(self) -> None:
        """Drop what is still buffered (the process dies without flushing stdio)."""
        self._pending.clear()

    def isatty(self) -> bool:
        return self._line

    def fileno(self) -> int:
        return self._target.fileno()


class redirected_stdout:  # noqa: N801 (used as a context manager function)
    """Route sys.stdout through a :class:`CStdout` while the block runs; flush at exit."""

    def __enter__(self) -> CStdout:
        self._original = sys.stdout
        self._out = CStdout(self._original)
        sys.stdout = self._out
        return self._out

    def __exit__(self, *exc: object) -> None:
        sys.stdout = self._original
        self._out.flush()


def _quiet_stdout_at_exit() -> None:
    """Point fd 1 at /dev/null if stdout broke, so the interpreter's exit flush is silent."""
    import os
    try:
        sys.stdout.flush()
    except OSError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def exit_like_qemu(code: int) -> None:
    """End the process with ``code``; above 128, die by that signal as QEMU did."""
    _quiet_stdout_at_exit()
    if code > 128:
        import os
        import signal
        try:
            signal.signal(code - 128, signal.SIG_DFL)
        except (OSError, ValueError):  # SIGKILL/SIGSTOP cannot be handled anyway
            pass
        os.kill(os.getpid(), code - 128)
    sys.exit(code)
