"""QEMU backends: qemu-img/qemu-io processes, interactive qemu-io sessions
(pexpect) and QMP machines (qemu-storage-daemon or qemu-system) over qemu.qmp."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from typing import Any, Optional

from harness.backends.base import Backend, BackendError, Result
from harness.backends.qmp_machine import Exchange, QmpMachine

PROMPT = "qemu-io> "
#: the cursor moves and erases of qemu-io's line editing
_EDITING = re.compile(r"(\x1b\[[CDK])")
TIMEOUT = 120

_PROG_ENV = {
    "qemu-img": "QEMU_IMG_PROG",
    "qemu-io": "QEMU_IO_PROG",
    "qemu-system": "QEMU_PROG",
    "qemu-storage-daemon": "QSD_PROG",
}
_DEFAULT = {"qemu-system": "qemu-system-x86_64"}


def find_program(tool: str) -> Optional[str]:
    """Binary for ``tool`` from its *_PROG variable, else from PATH."""
    env = os.environ.get(_PROG_ENV[tool])
    if env:
        return env if os.access(env, os.X_OK) else None
    return shutil.which(_DEFAULT.get(tool, tool))


def _accelerator(prog: str) -> str:
    """qtest where the binary has it (Debian's build has not), else tcg (no CPU runs with -M none)."""
    listing = subprocess.run([prog, "-accel", "help"], stdin=subprocess.DEVNULL,
                             capture_output=True, text=True, timeout=TIMEOUT).stdout
    return "qtest" if "qtest" in listing.split() else "tcg"


def _typed_line(line: str) -> str:
    """A line of qemu-io's readline echo as the terminal shows it (its cursor
    moves and erases applied)."""
    text: list[str] = []
    pos = 0
    for part in _EDITING.split(line):
        if part == "\x1b[D":
            pos = max(pos - 1, 0)
        elif part == "\x1b[C":
            pos = min(pos + 1, len(text))
        elif part == "\x1b[K":
            del text[pos:]
        else:
            text[pos:pos + len(part)] = part
            pos += len(part)
    return "".join(text)


def _without_echo(before: str, cmd: str) -> str:
    """What qemu-io printed around a typed command, without its echo of the command.

    Output of a request that completes while the harness types (a blkdebug
    message) may come before the echo: it stays, in the order it came."""
    lines = before.split("\r\n")
    for i, line in enumerate(lines[:-1]):
        if _typed_line(line) == cmd:
            return "\r\n".join(lines[:i] + lines[i + 1:])
    return before.split("\r\n", 1)[1] if "\r\n" in before else ""


class QemuBackend(Backend):
    """Real QEMU 7.2 binaries."""

    name = "qemu"

    def __init__(self, sock_dir: str = "") -> None:
        self.sock_dir = sock_dir or tempfile.gettempdir()
        self._machines: dict[str, QmpMachine] = {}

    def unavailable(self) -> Optional[str]:
        for tool in ("qemu-img", "qemu-io"):
            if not find_program(tool):
                return f"{tool} not found (set {_PROG_ENV[tool]} or PATH)"
        return None

    def _prog(self, tool: str) -> str:
        prog = find_program(tool)
        if not prog:
            raise BackendError(f"{tool} not found (set {_PROG_ENV[tool]} or PATH)")
        return prog

    def _process(self, argv: list[str]) -> Result:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=TIMEOUT)
        status = proc.returncode
        # killed by a signal: the shell's $? (128 + signal), as in the session path
        return Result(proc.stdout.decode("utf-8", "replace"),
                      status if status >= 0 else 128 - status)

    def qemu_img(self, argv: list[str]) -> Result:
        return self._process([self._prog("qemu-img")] + argv)

    def qemu_io(self, argv: list[str], commands: list[str], session: bool = False) -> Result:
        if not session:
            args = list(argv)
            for cmd in commands:
                args += ["-c", cmd]
            return self._process([self._prog("qemu-io")] + args)
        return self._session(argv, commands)

    def _session(self, argv: list[str], commands: list[str]) -> Result:
        import pexpect

        child = pexpect.spawn(self._prog("qemu-io"), argv, encoding="utf-8",
                              codec_errors="replace", echo=False, timeout=TIMEOUT)
        child.delaybeforesend = None  # the prompt is awaited before every send anyway
        out: list[str] = []
        alive = child.expect_exact([PROMPT, pexpect.EOF]) == 0
        out.append(child.before)
        for cmd in commands + ["quit"]:
            if not alive:
                break
            child.sendline(cmd)
            alive = child.expect_exact([PROMPT, pexpect.EOF]) == 0
            out.append(_without_echo(child.before, cmd))
        child.expect(pexpect.EOF)
        child.close()
        status = child.exitstatus if child.exitstatus is not None else 128 + (child.signalstatus or 0)
        return Result("".join(out).replace("\r\n", "\n"), status)

    def qmp_unavailable(self, machine: str) -> Optional[str]:
        tool = "qemu-storage-daemon" if machine == "daemon" else "qemu-system"
        if not find_program(tool):
            return f"{tool} not found (set {_PROG_ENV[tool]} or PATH)"
        return None

    def qmp(self, machine: str, command: dict[str, Any]) -> Exchange:
        if machine not in self._machines:
            if machine == "daemon":
                argv = [self._prog("qemu-storage-daemon")]
            else:
                prog = self._prog("qemu-system")
                argv = [prog, "-M", "none", "-nodefaults", "-display", "none",
                        "-accel", _accelerator(prog)]
            name = os.path.basename(argv[0])
            stdbuf = shutil.which("stdbuf")  # HMP qemu-io's printf() output in program order
            argv = ([stdbuf, "-oL"] if stdbuf else []) + argv
            self._machines[machine] = QmpMachine(argv, self.sock_dir, name,
                                                 system=machine == "system")
        return self._machines[machine].command(command)

    def close(self) -> str:
        logs = [m.stop() for m in self._machines.values()]
        self._machines.clear()
        return "".join(logs)
