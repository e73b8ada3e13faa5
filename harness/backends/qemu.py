"""QEMU backends: qemu-img/qemu-io processes, interactive qemu-io sessions
(pexpect) and QMP machines (qemu-storage-daemon or qemu-system) over qemu.qmp."""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from typing import Any, Optional

from harness.backends.base import Backend, BackendError, Result

PROMPT = "qemu-io> "
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


#: longest path a UNIX socket address holds (sun_path is 108 bytes with its NUL)
_SUN_PATH_MAX = 107


class _QmpMachine:
    """A QEMU process with a QMP monitor on a UNIX socket."""

    def __init__(self, argv: list[str], sock_dir: str) -> None:
        from qemu.qmp.legacy import QEMUMonitorProtocol

        self.sock = os.path.join(sock_dir, f"qmp-{os.getpid()}-{id(self)}.sock")
        self._own_dir = ""
        if len(self.sock) > _SUN_PATH_MAX:  # too long for a UNIX socket address
            self._own_dir = tempfile.mkdtemp(prefix="qcowlab-qmp-")
            self.sock = os.path.join(self._own_dir, "qmp.sock")
        argv = argv + ["--chardev", f"socket,id=qmp0,path={self.sock},server=on,wait=off"]
        argv += ["-mon" if "qemu-system" in os.path.basename(argv[0]) else "--monitor",
                 "chardev=qmp0,mode=control" if "qemu-system" in os.path.basename(argv[0])
                 else "chardev=qmp0"]
        self.log = tempfile.TemporaryFile(mode="w+")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not os.path.exists(self.sock):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.log.seek(0)
                raise BackendError(f"{argv[0]} did not start: {self.log.read().strip()}")
            time.sleep(0.02)
        while True:
            self.qmp = QEMUMonitorProtocol(self.sock)
            try:
                self.qmp.connect()
                break
            except Exception as exc:  # socket not listening yet
                self.qmp.close()
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise BackendError(f"cannot connect to {argv[0]}: {exc}") from None
                time.sleep(0.05)

    def command(self, cmd: dict[str, Any]) -> dict[str, Any]:
        return dict(self.qmp.cmd_obj(cmd))

    def stop(self) -> str:
        try:
            self.qmp.cmd_obj({"execute": "quit"})
        except Exception:  # the process may already be gone
            pass
        try:
            self.qmp.close()
        except Exception:  # EOF once the machine has quit
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self._own_dir:
            shutil.rmtree(self._own_dir, ignore_errors=True)
        self.log.seek(0)
        out = self.log.read()
        self.log.close()
        if os.path.exists(self.sock):
            os.unlink(self.sock)
        return out


class QemuBackend(Backend):
    """Real QEMU 7.2 binaries."""

    name = "qemu"

    def __init__(self, sock_dir: str = "") -> None:
        self.sock_dir = sock_dir or tempfile.gettempdir()
        self._machines: dict[str, _QmpMachine] = {}

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
        return Result(proc.stdout.decode("utf-8", "replace"), proc.returncode)

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
            # the first line is qemu-io's own echo of what was typed
            out.append(child.before.split("\r\n", 1)[1] if "\r\n" in child.before else "")
        child.expect(pexpect.EOF)
        child.close()
        status = child.exitstatus if child.exitstatus is not None else 128 + (child.signalstatus or 0)
        return Result("".join(out).replace("\r\n", "\n"), status)

    def qmp_unavailable(self, machine: str) -> Optional[str]:
        tool = "qemu-storage-daemon" if machine == "daemon" else "qemu-system"
        if not find_program(tool):
            return f"{tool} not found (set {_PROG_ENV[tool]} or PATH)"
        return None

    def qmp(self, machine: str, command: dict[str, Any]) -> dict[str, Any]:
        if machine not in self._machines:
            if machine == "daemon":
                argv = [self._prog("qemu-storage-daemon")]
            else:
                prog = self._prog("qemu-system")
                argv = [prog, "-M", "none", "-nodefaults", "-display", "none",
                        "-accel", _accelerator(prog)]
            self._machines[machine] = _QmpMachine(argv, self.sock_dir)
        return self._machines[machine].command(command)

    def close(self) -> str:
        logs = [m.stop() for m in self._machines.values()]
        self._machines.clear()
        return "".join(logs)
