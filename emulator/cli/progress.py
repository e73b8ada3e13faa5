"""qemu-img's progress meter (util/qemu-progress.c), in C float arithmetic."""
from __future__ import annotations

import struct
import sys


def f32(x: float) -> float:
    """Round to IEEE single precision, as a C float variable holds it."""
    return struct.unpack("f", struct.pack("f", x))[0]


class Progress:
    """-p output: '    (P/100%)\\r' on stdout when it moved by more than min_skip."""

    def __init__(self, enabled: bool, min_skip: float) -> None:
        self.enabled = enabled
        self.min_skip = f32(min_skip)
        self.current = 0.0
        self.last_print = 0.0

    def print(self, delta: float, maximum: int) -> None:
        if maximum == 0:
            current = f32(delta)
        else:
            current = f32(self.current + f32(f32(delta / 100) * maximum))
        current = min(current, 100.0)
        self.current = current
        if (current > f32(self.last_print + self.min_skip)
                or current < f32(self.last_print - self.min_skip)
                or current in (100.0, 0.0)):
            self.last_print = current
            if self.enabled:
                sys.stdout.write("    (%3.2f/100%%)\r" % current)
                sys.stdout.flush()

    def end(self) -> None:
        if self.enabled:
            sys.stdout.write("\n")
