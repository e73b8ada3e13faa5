"""human-monitor-command: HMP's ``qemu-io [-d] DEVICE "COMMAND"`` on an open node.

The qemu-io command runs on the node the daemon keeps open (session
semantics: allocations, caches and the dirty bit carry over between
commands), through a fresh BlockBackend with the write cache on, as QEMU's
hmp_qemu_io does.  Its printf/fprintf output goes to the daemon's own stdout
and stderr; error_report() text goes to the monitor, i.e. into the reply.
"""
from __future__ import annotations

import io
import os
import signal
from typing import Any

from emulator.qsd.protocol import QmpError

_ESCAPES = {"n": "\n", "r": "\r", "\\": "\\", "'": "'", '"': '"'}


class _HmpSyntax(Exception):
    pass


class _FdStream(io.TextIOBase):
    """Unbuffered text output on a file descriptor (the daemon's stdout or stderr)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, s: str) -> int:
        data = s.encode("utf-8", "surrogateescape")
        try:
            while data:
                data = data[os.write(self._fd, data):]
        except OSError:
            pass
        return len(s)


def _word(line: str, pos: int) -> tuple[str, int]:
    """HMP's get_str: a quoted string with escapes, or up to the next blank."""
    while pos < len(line) and line[pos].isspace():
        pos += 1
    if pos >= len(line):
        raise _HmpSyntax("string expected")
    if line[pos] != '"':
        end = pos
        while end < len(line) and not line[end].isspace():
            end += 1
        return line[pos:end], end
    out, pos = "", pos + 1
    while pos < len(line) and line[pos] != '"':
        if line[pos] == "\\" and pos + 1 < len(line):
            pos += 1
            if line[pos] not in _ESCAPES:
                raise _HmpSyntax(f"unsupported escape code: '\\{line[pos]}'")
            out += _ESCAPES[line[pos]]
        else:
            out += line[pos]
        pos += 1
    if pos >= len(line):
        raise _HmpSyntax("unterminated string")
    return out, pos + 1


def human_monitor_command(graph: Any, line: str) -> str:
    """Run one HMP command line; return what the monitor printed (CRLF line ends)."""
    name, pos = _word(line, 0) if line.strip() else ("", 0)
    if name != "qemu-io":
        return f"unknown command: '{name}'\r\n" if name else ""
    try:
        rest = line[pos:].lstrip()
        qdev = rest.startswith("-d ")
        if qdev:
            pos = line.index("-d", pos) + 2
        device, pos = _word(line, pos)
        command, pos = _word(line, pos)
        if line[pos:].strip():
            raise _HmpSyntax("extraneous characters at the end of line")
    except _HmpSyntax as exc:
        return (f"qemu-io: {exc}\r\nTry \"help qemu-io\" for more information\r\n")
    if qdev:
        return f"Error: Device '{device}' not found\r\n"
    try:
        entry = graph.lookup(None, device)
    except QmpError as exc:
        return f"Error: {exc.desc}\r\n"
    return _qemu_io(entry.node, command).replace("\n", "\r\n")


def _qemu_io(node: Any, command: str) -> str:
    """qemuio_command on ``node``; returns the monitor's share of the output."""
    import sys

    from emulator import report
    from emulator.block.backend import BlockBackend
    from emulator.cli.io_cmds import IoSession
    from emulator.report import AssertFailed, SignalRaised
    session = IoSession()
    session.blk = node
    session.writethrough = False
    if getattr(node, "blk", None) is None:
        node.blk = BlockBackend(node)
    monitor: list[str] = []
    saved = sys.stdout, sys.stderr, report.monitor, report.prog_name
    sys.stdout, sys.stderr = _FdStream(1), _FdStream(2)
    report.monitor, report.prog_name = monitor, "qemu-io"
    try:
        session.command(command)
        session.drain()  # the daemon's main loop completes the aio requests
    except (SignalRaised, AssertFailed) as exc:  # abort, sigraise: the daemon dies
        os.kill(os.getpid(), exc.signum if isinstance(exc, SignalRaised) else signal.SIGABRT)
    except Exception as exc:  # a model bug: report it, keep serving
        monitor.append(f"qcowlab: qemu-io raised {type(exc).__name__}: {exc}\n")
    finally:
        sys.stdout, sys.stderr, report.monitor, report.prog_name = saved
    return "".join(monitor)
