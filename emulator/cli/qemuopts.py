"""QemuOpts: "key=value,..." option strings with QEMU's escaping, typing and errors.

Mirrors util/qemu-option.c: ",," escapes a comma inside a value, a bare "foo"
is the flag foo=on and "nofoo" is foo=off, "id" is dropped, the last value of
a key wins when reading, and typed options (bool, number, size) are validated
as soon as they are set, with QEMU's error texts.
"""
from __future__ import annotations

import errno

from emulator.units import U64, c_strtoul, strtosz

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

STRING, BOOL, NUMBER, SIZE = "str", "bool", "number", "size"

SIZE_HINT = ("Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\n"
             "and exabytes, respectively.\n")


class OptsError(Exception):
    """A QEMU Error: message plus optional hint text printed after it."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class OptDesc:
    """One QemuOptDesc: name, type, default value text, help text."""

    __slots__ = ("name", "type", "default", "help")

    def __init__(self, name: str, type: str = STRING, default: str | None = None,
                 help: str = "") -> None:
        self.name, self.type, self.default, self.help = name, type, default, help


class Opt:
    """One parsed option: name, text as given, typed value."""

    __slots__ = ("name", "text", "value", "desc")

    def __init__(self, name: str, text: str, value: object = None,
                 desc: OptDesc | None = None) -> None:
        self.name, self.text, self.value, self.desc = name, text, value, desc


def is_help_option(name: str) -> bool:
    return name in ("help", "?")


def parse_bool(name: str, value: str) -> bool:
    if value in ("on", "yes", "true", "y"):
        return True
    if value in ("off", "no", "false", "n"):
        return False
    raise OptsError(f"Parameter '{name}' expects 'on' or 'off'")


def parse_number(name: str, value: str) -> int:
    num, end, over = c_strtoul(value, 0)
    if over:
        raise OptsError(f"Value '{value}' is too large for parameter '{name}'")
    if end == 0 or end != len(value):
        raise OptsError(f"Parameter '{name}' expects a number")
    return num


def parse_size(name: str, value: str) -> int:
    err, num = strtosz(value)
    if err == -errno.ERANGE:
        raise OptsError(f"Value '{value}' is out of range for parameter '{name}'")
    if err:
        raise OptsError(f"Parameter '{name}' expects a non-negative number below 2^64",
                        SIZE_HINT)
    return num


_PARSERS = {BOOL: parse_bool, NUMBER: parse_number, SIZE: parse_size}


def _get_value(params: str, i: int) -> tuple[str, int]:
    """Read a value up to an unescaped comma; returns (value, index of the comma or end)."""
    out = []
    n = len(params)
    while True:
        comma = params.find(",", i)
        if comma < 0:
            out.append(params[i:])
            return "".join(out), n
        if comma + 1 < n and params[comma + 1] == ",":
            out.append(params[i:comma + 1])
            i = comma + 2
            continue
        out.append(params[i:comma])
        return "".join(out), comma


def split_params(params: str, firstname: str | None = None) -> list[tuple[str, str, bool, bool]]:
    """Split an option string as get_opt_name_value(): (name, value, is_help, short_flag)."""
    result = []
    i, n = 0, len(params)
    while i < n:
        stop = len(params)
        for ch in "=,":
            pos = params.find(ch, i)
            if 0 <= pos < stop:
                stop = pos
        is_help = flag = False
        if stop == n or params[stop] != "=":
            if firstname:
                name = firstname
                value, i = _get_value(params, i)
            else:
                name, i, flag = params[i:stop], stop, True
                if name.startswith("no"):
                    name, value = name[2:], "off"
                else:
                    value = "on"
                    is_help = is_help_option(name)
        else:
            name = params[i:stop]
            value, i = _get_value(params, stop + 1)
        firstname = None
        result.append((name, value, is_help, flag))
        if i < n and params[i] == ",":
            i += 1
    return result


def has_help_option(params: str) -> bool:
    return any(h for _, _, h, _ in split_params(params))


class QemuOpts:
    """A set of options validated against ``descs`` (empty: accept anything)."""

    def __init__(self, descs: Sequence[OptDesc] = ()) -> None:
        self.descs = descs
        self.opts: list[Opt] = []

    def find_desc(self, name: str) -> OptDesc | None:
        return next((d for d in self.descs if d.name == name), None)

    def set(self, name: str, text: str) -> None:
        """qemu_opt_set(): append and validate; raises OptsError."""
        desc = self.find_desc(name)
        if desc is None and self.descs:
            raise OptsError(f"Invalid parameter '{name}'")
        value: object = text
        if desc is not None and desc.type in _PARSERS:
            value = _PARSERS[desc.type](name, text)
        self.opts.append(Opt(name, text, value, desc))

    def set_number(self, name: str, value: int) -> None:
        desc = self.find_desc(name)
        if desc is None and self.descs:
            raise OptsError(f"Invalid parameter '{name}'")
        self.opts.append(Opt(name, str(value), value, desc))

    def parse(self, params: str, firstname: str | None = None,
              warn_on_flag: bool = False) -> None:
        """qemu_opts_do_parse(): add every option of ``params``; raises OptsError.

        ``warn_on_flag`` prints the deprecation warning for short-form booleans
        (as qemu_opts_parse_noisily() does).
        """
        for name, value, is_help, flag in split_params(params, firstname):
            if flag and warn_on_flag and not is_help:
                _warn_short_flag(name, value)
            if name == "id":
                continue
            self.set(name, value)

    def find(self, name: str) -> Opt | None:
        for opt in reversed(self.opts):
            if opt.name == name:
                return opt
        return None

    def get(self, name: str) -> str | None:
        """qemu_opt_get(): text of the last value, else the default text."""
        opt = self.find(name)
        if opt is not None:
            return opt.text
        desc = self.find_desc(name)
        return desc.default if desc else None

    def get_size(self, name: str, default: int) -> int:
        opt = self.find(name)
        if opt is not None:
            return int(opt.value)  # type: ignore[arg-type]
        desc = self.find_desc(name)
        if desc is not None and desc.default is not None:
            return parse_size(name, desc.default)
        return default

    def get_bool(self, name: str, default: bool) -> bool:
        opt = self.find(name)
        if opt is not None:
            return bool(opt.value)
        desc = self.find_desc(name)
        if desc is not None and desc.default is not None:
            return parse_bool(name, desc.default)
        return default

    def delete(self, name: str) -> None:
        self.opts = [o for o in self.opts if o.name != name]

    def to_dict(self) -> dict:
        """Text value of every option (last one wins), in first-set order."""
        out: dict = {}
        for opt in self.opts:
            out.pop(opt.name, None)
            out[opt.name] = opt.text
        return out

    def print_str(self, separator: str = " ") -> str:
        """qemu_opts_print(): set options, or defaults, in description order."""
        parts = []
        if not self.descs:
            parts = [f"{o.name}={_escape(o.text)}" for o in self.opts]
            return separator.join(parts)
        for desc in self.descs:
            opt = self.find(desc.name)
            text = opt.text if opt else desc.default
            if text is None:
                continue
            if desc.type == STRING:
                parts.append(f"{desc.name}={_escape(text)}")
            elif desc.type in (SIZE, NUMBER) and opt is not None:
                parts.append(f"{desc.name}={_as_int64(int(opt.value))}")  # type: ignore[arg-type]
            else:
                parts.append(f"{desc.name}={text}")
        return separator.join(parts)


def _warn_short_flag(name: str, value: str) -> None:
    import sys
    from emulator.report import warn_report
    prefix = "no" if value == "off" else ""
    warn_report(f"short-form boolean option '{prefix}{name}' deprecated")
    sys.stderr.write(f"Please use {name}={value} instead\n")
    sys.stderr.flush()


def _escape(text: str) -> str:
    return text.replace(",", ",,")


def _as_int64(v: int) -> int:
    return v - U64 if v >= (1 << 63) else v
