"""Error reporting to stderr the way QEMU's error_report() does."""
import sys

#: program prefix, set by each command line ("qemu-img", "qemu-io")
prog_name = ""


def error_report(msg: str) -> None:
    """Print ``PROG: msg`` to the current stderr (looked up at call time)."""
    err = sys.stderr
    if prog_name:
        err.write(f"{prog_name}: {msg}\n")
    else:
        err.write(msg + "\n")
    err.flush()


def warn_report(msg: str) -> None:
    """Print ``PROG: warning: msg`` like QEMU's warn_report()."""
    error_report("warning: " + msg)
