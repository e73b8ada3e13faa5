"""-T/--trace option parsing (trace/control.c).

Event names are checked against the list Debian's QEMU 7.2 has ("help"
prints it and exits): an unknown plain name draws "does not exist", known
names and '*' patterns are accepted silently (qcowlab emits no trace output),
and an events file is read line by line with its location prefix.
"""
from __future__ import annotations

import os
import sys

from emulator.cli.qemuopts import OptDesc, OptsError, QemuOpts

_TRACE_OPTS = [OptDesc("enable"), OptDesc("events"), OptDesc("file")]


def _warn(prog: str, where: str, name: str) -> None:
    sys.stderr.write(f"{prog}{where}: warning: trace event '{name}' does not exist\n")
    sys.stderr.flush()


def _enable(prog: str, where: str, line: str) -> int | None:
    """One event name or pattern; returns 0 after "help" (QEMU exits), else None."""
    from emulator.cli.trace_events import EVENTS
    if line in ("help", "?"):
        sys.stdout.write("".join(name + "\n" for name in EVENTS))
        return 0
    name = line[1:] if line.startswith("-") else line
    if "*" not in name and name not in EVENTS:
        _warn(prog, where, name)
    return None


def trace_opt_parse(prog: str, arg: str, state: dict) -> int | None:
    """Apply one -T argument; returns an exit status when QEMU would exit, else None.

    ``state["file"]`` keeps the last file= value for :func:`init_trace_file`.
    """
    opts = QemuOpts(_TRACE_OPTS)
    try:
        opts.parse(arg, firstname="enable", warn_on_flag=True)
    except OptsError as e:
        sys.stderr.write(f"{prog}: {e.message}\n{e.hint}")
        sys.stderr.flush()
        return 1
    state["file"] = opts.get("file")
    enable = opts.get("enable")
    if enable is not None and _enable(prog, "", enable) is not None:
        return 0
    events = opts.get("events")
    if events is not None:
        try:
            with open(events, "rb") as f:
                lines = f.read().split(b"\n")
        except OSError as e:
            sys.stderr.write(f"{prog}:{events}: {os.strerror(e.errno or 0)}\n")
            sys.stderr.flush()
            return 1
        for number, raw in enumerate(_fgets_lines(lines), 1):
            if len(raw) > 1:
                text = raw[:-1].decode("utf-8", "surrogateescape")
                if not text.startswith("#") and \
                        _enable(prog, f":{events}:{number}", text) is not None:
                    return 0
    return None


def _fgets_lines(parts: list) -> list:
    """The chunks fgets() returns: each line with its newline (the last one may lack it)."""
    lines = [p + b"\n" for p in parts[:-1]]
    if parts[-1]:
        lines.append(parts[-1])
    return lines


def init_trace_file(prog: str, state: dict) -> int | None:
    """The log backend opens (truncates) the file= log once options are parsed."""
    path = state.get("file")
    if path is None:
        return None
    try:
        with open(path, "w"):
            pass
    except OSError as e:
        sys.stderr.write(f"{prog}: Error opening logfile {path}: {os.strerror(e.errno or 0)}\n")
        sys.stderr.flush()
        return 1
    return None
