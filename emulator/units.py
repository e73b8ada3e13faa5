"""Number and size parsing/formatting with QEMU's exact rules.

- :func:`strtosz` is qemu_strtosz() (util/cutils.c): "4k", "1.5M", "0x1000",
  binary suffixes B/K/M/G/T/P/E, fractions rounded half up, errors as errno.
- :func:`size_to_str` is size_to_str() ("1 MiB", "192 KiB", "1.5 GiB").
- :func:`cvtstr` is qemu-io's cvtstr() ("4 KiB", "512 bytes", "1.500 MiB").
- :func:`c_strtoul` mimics strtoul()/strtoull() for the few callers that need C's
  prefix, sign and whitespace handling.
"""
from __future__ import annotations

import errno
import math

U64 = 1 << 64
INT64_MAX = (1 << 63) - 1
_SPACE = " \t\n\v\f\r"
_ALNUM = "0123456789abcdefghijklmnopqrstuvwxyz"
_SUFFIX_POWER = {"B": 0, "K": 1, "M": 2, "G": 3, "T": 4, "P": 5, "E": 6}


def c_strtoul(s: str, base: int, limit: int = U64) -> tuple[int, int, bool]:
    """Parse like strtoull(s, &end, base) with unsigned range ``limit``.

    Returns (value, end_index, overflowed).  end_index is 0 when nothing was
    converted.  A leading '-' negates modulo ``limit`` as C does.
    """
    i, n = 0, len(s)
    while i < n and s[i] in _SPACE:
        i += 1
    neg = False
    if i < n and s[i] in "+-":
        neg = s[i] == "-"
        i += 1
    if base in (0, 16) and s[i:i + 2].lower() == "0x" and i + 2 < n and _digit(s[i + 2]) < 16:
        i += 2
        base = 16
    elif base == 0:
        base = 8 if s[i:i + 1] == "0" else 10
    digits = _ALNUM[:base] + _ALNUM[10:base].upper()
    rest = s[i:]
    count = len(rest) - len(rest.lstrip(digits))
    if not count:
        return 0, 0, False
    value = int(rest[:count], base)
    i += count
    if value >= limit:
        return limit - 1, i, True
    if neg:
        value = (limit - value) % limit
    return value, i, False


def c_strtol(s: str, base: int = 0) -> tuple[int, int]:
    """strtol() on a 64-bit long: (value clamped to LONG range, end index)."""
    value, end, over = c_strtoul(s, base, U64 * 2)
    if end == 0:
        return 0, 0
    neg = s.lstrip(_SPACE)[:1] == "-"
    mag = (U64 * 2 - value) % (U64 * 2) if neg else value
    if over or mag > (INT64_MAX + (1 if neg else 0)):
        return (-INT64_MAX - 1 if neg else INT64_MAX), end
    return (-mag if neg else mag), end


def _digit(ch: str) -> int:
    if "0" <= ch <= "9":
        return ord(ch) - 48
    if "a" <= ch.lower() <= "z":
        return ord(ch.lower()) - 87
    return 99


def _fraction(s: str, i: int) -> tuple[float | None, int, bool]:
    """strtod() on s[i:] which starts with '.': (value or None, end, has_exponent)."""
    j = i + 1
    while j < len(s) and s[j].isdigit() and s[j].isascii():
        j += 1
    if j == i + 1:
        return None, i, False
    end = j
    if j < len(s) and s[j] in "eE":
        k = j + 1
        if k < len(s) and s[k] in "+-":
            k += 1
        if k < len(s) and s[k].isdigit() and s[k].isascii():
            while k < len(s) and s[k].isdigit() and s[k].isascii():
                k += 1
            return float("0" + s[i:k]), k, True
    return float("0" + s[i:end]), end, False


def strtosz(s: str, warn=None) -> tuple[int, int]:
    """qemu_strtosz(s, NULL, &v): returns (0, value) or (-errno, 0).

    ``warn`` is called with the deprecation text for hex numbers with a suffix.
    """
    val, end, over = c_strtoul(s, 10)
    if end == 0:
        return -errno.EINVAL, 0
    if over:
        return (-errno.ERANGE if end == len(s) else -errno.EINVAL), 0
    if "-" in s[:end]:
        return -errno.EINVAL, 0
    hexa = False
    valf = 0
    if val == 0 and s[end:end + 1] in ("x", "X"):
        val, end, over = c_strtoul(s, 16)
        if over:
            return (-errno.ERANGE if end == len(s) else -errno.EINVAL), 0
        if s[end:end + 1] == ".":
            return -errno.EINVAL, 0
        hexa = True
    elif s[end:end + 1] == ".":
        frac, fend, expo = _fraction(s, end)
        if frac is None:
            end += 1
        elif expo:
            return -errno.EINVAL, 0
        else:
            end = fend
            valf = min(int(frac * U64), U64 - 1)
    power = _SUFFIX_POWER.get(s[end:end + 1].upper()) if end < len(s) else None
    if power is not None:
        if hexa and warn is not None:
            warn(f"Using a multiplier suffix on hex numbers is deprecated: {s}")
        end += 1
    else:
        power = 0
    mul = 1024 ** power
    if mul == 1:
        if valf:
            return -errno.EINVAL, 0
        total = val
    else:
        prod = valf * mul
        total = val * mul + (prod >> 64) + ((prod & (U64 - 1)) >> 63)
        if total >= U64:
            return (-errno.ERANGE if end == len(s) else -errno.EINVAL), 0
    if end != len(s):
        return -errno.EINVAL, 0
    return 0, total


_PREFIXES = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"]


def size_to_str(val: int) -> str:
    """QEMU's size_to_str(): three significant digits and an IEC prefix."""
    _, exp = math.frexp(val / (1000.0 / 1024.0))
    i = int((exp - 1) / 10) * 10
    return "%0.3g %sB" % (val / float(1 << i), _PREFIXES[i // 10])


_CVT_UNITS = [(60, " EiB"), (50, " PiB"), (40, " TiB"), (30, " GiB"), (20, " MiB"), (10, " KiB")]


def cvtstr(value: float) -> str:
    """qemu-io's cvtstr(): '%.3f' in the largest unit, '.000' dropped."""
    value = float(value)
    for shift, suffix in _CVT_UNITS:
        if value >= float(1 << shift):
            text = "%.3f" % (value / float(1 << shift))
            break
    else:
        suffix = " bytes"
        text = "%f" % value
    pos = text.find(".000")
    return text[:pos] + suffix if pos >= 0 else text + suffix
