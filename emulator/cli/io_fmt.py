"""qemu-io's output formatting: statistics lines, hex dumps, number arguments."""
from __future__ import annotations

import errno
import sys

from emulator.report import warn_report
from emulator.units import INT64_MAX, c_strtol, cvtstr, strtosz

#: largest request qemu-io accepts (BDRV_REQUEST_MAX_BYTES)
REQUEST_MAX_BYTES = (0x7FFFFFFF >> 9) << 9
INT_MAX = 0x7FFFFFFF


def out(text: str) -> None:
    """printf() to the current stdout."""
    sys.stdout.write(text)


def err(text: str) -> None:
    """fprintf(stderr, ...) to the current stderr."""
    sys.stderr.write(text)
    sys.stderr.flush()


def cvtnum(text: str) -> int:
    """qemu-io's cvtnum(): the size, or -errno."""
    rc, value = strtosz(text, warn_report)
    if rc < 0:
        return rc
    if value > INT64_MAX:
        return -errno.ERANGE
    return value


def print_cvtnum_err(rc: int, arg: str) -> None:
    if rc == -errno.EINVAL:
        out(f"Parsing error: non-numeric argument, or extraneous/unrecognized suffix -- {arg}\n")
    elif rc == -errno.ERANGE:
        out(f"Parsing error: argument too large -- {arg}\n")
    else:
        out(f"Parsing error: {arg}\n")


def parse_pattern(arg: str) -> int:
    """Pattern byte for -P, or -1 after printing QEMU's complaint."""
    value, end = c_strtol(arg, 0)
    if value < 0 or value > 255 or end != len(arg):
        out(f"{arg} is not a valid pattern byte\n")
        return -1
    return value


def timestr(ns: int, verbose: bool) -> str:
    sec, nsec = divmod(ns, 1_000_000_000)
    frac = nsec / 1e9
    if verbose or sec:
        return "%u:%02u:%05.2f" % (sec // 3600, sec % 3600 // 60, sec % 60 + frac)
    return "%05.2f sec" % frac


def _tdiv(value: float, ns: int) -> float:
    seconds = ns // 1_000_000_000 + (ns % 1_000_000_000) / 1e9
    if seconds == 0:
        return float("inf") if value else float("nan")
    return value / seconds


def _c_float(fmt: str, v: float) -> str:
    text = fmt % v
    return "-nan" if text == "nan" else text


def print_report(op: str, ns: int, offset: int, count: int, total: int, cnt: int,
                 cflag: bool) -> None:
    ts = timestr(ns, cflag)
    if not cflag:
        out(f"{op} {total}/{count} bytes at offset {offset}\n")
        rate = _tdiv(float(total), ns)
        rate_s = "-nan bytes" if rate != rate else cvtstr(rate)
        out("%s, %d ops; %s (%s/sec and %s ops/sec)\n"
            % (cvtstr(total), cnt, ts, rate_s, _c_float("%.4f", _tdiv(float(cnt), ns))))
    else:
        out("%d,%d,%s,%s,%s\n" % (total, cnt, ts, _c_float("%.3f", _tdiv(float(total), ns)),
                                  _c_float("%.3f", _tdiv(float(cnt), ns))))


_PRINTABLE = bytes(b if bytes([b]).isalnum() else 0x2E for b in range(256))


def dump_buffer(buf: bytes, offset: int) -> None:
    """read -v: 16 bytes a line, hex then the alphanumeric characters ('.' for others)."""
    lines = []
    for i in range(0, len(buf), 16):
        chunk = buf[i:i + 16]
        lines.append("%08x:  %s  %s\n" % (offset + i, chunk.hex(" "),
                                            chunk.translate(_PRINTABLE).decode("ascii")))
    out("".join(lines))
