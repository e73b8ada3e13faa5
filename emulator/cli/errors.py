"""error_report_err(): an error's message line, then its hint text if it has one."""
from __future__ import annotations

import sys

from emulator.report import error_report


def report_err(message: str, hint: str = "") -> None:
    """Print ``PROG: message`` and QEMU's appended hint (already newline-terminated)."""
    error_report(message)
    if hint:
        sys.stderr.write(hint)
        sys.stderr.flush()
