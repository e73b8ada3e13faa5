"""Error reporting to stderr the way QEMU's error_report() does."""
import sys

#: program prefix, set by each command line ("qemu-img", "qemu-io")
prog_name = ""
#: while an HMP command runs, the text error_report() sends to its monitor
#: (QEMU prints errors there, without the program prefix)
monitor = None


def error_report(msg: str) -> None:
    """Print ``PROG: msg`` to the current stderr (looked up at call time)."""
    if monitor is not None:
        monitor.append(msg + "\n")
        return
    err = sys.stderr
    if prog_name:
        err.write(f"{prog_name}: {msg}\n")
    else:
        err.write(msg + "\n")
    err.flush()


def warn_report(msg: str) -> None:
    """Print ``PROG: warning: msg`` like QEMU's warn_report()."""
    error_report("warning: " + msg)


class SignalRaised(Exception):
    """The process would die by this signal now; ``flushed``: stdout was flushed first."""

    def __init__(self, signum: int, flushed: bool) -> None:
        super().__init__(signum)
        self.signum = signum
        self.flushed = flushed


class AssertFailed(Exception):
    """A failed assert() in QEMU: the message is printed, the process dies by SIGABRT."""


def error_abort(site: str, msg: str) -> None:
    """An error set on QEMU's &error_abort: ``Unexpected error in SITE:``, then
    ``PROG: msg``; the process dies by SIGABRT."""
    err = sys.stderr
    err.write(f"Unexpected error in {site}:\n{prog_name}: {msg}\n")
    err.flush()
    raise AssertFailed(msg)


def assert_fail(where: str, func: str, expr: str) -> None:
    """glibc's __assert_fail: ``PROG: FILE:LINE: FUNC: Assertion `EXPR' failed.``"""
    err = sys.stderr
    err.write(f"{prog_name}: {where}: {func}: Assertion `{expr}' failed.\n")
    err.flush()
    raise AssertFailed(expr)
