"""A QMP machine for the harness: a process with a QMP monitor on a UNIX socket
(qemu-storage-daemon, qemu-system-x86_64 -M none, or qcowlab-qsd), driven
with qemu.qmp's legacy client.

Its stdout and stderr go to one log file, line-buffered (QEMU under
``stdbuf -oL``), so what HMP qemu-io prints is in the log, in program order,
before the command's reply; :meth:`QmpMachine.command` returns it with the
reply and the events.  A machine that dies is reported with its log.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from harness.backends.base import BackendError

#: longest path a UNIX socket address holds (sun_path is 108 bytes with its NUL)
_SUN_PATH_MAX = 107
#: seconds to wait for a job started by a command to conclude
JOB_TIMEOUT = 60
_JOB_COMMANDS = ("blockdev-create", "x-blockdev-amend")


class _ForkedProcess:
    """The part of subprocess.Popen the machine uses, for a forked ``entry(argv[1:])``."""

    def __init__(self, entry: Callable[[list[str]], int], argv: list[str], log_fd: int) -> None:
        import signal
        import sys
        self.returncode: int | None = None
        self.pid = os.fork()
        if self.pid:
            return
        status = 1
        try:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGPIPE):
                signal.signal(sig, signal.SIG_DFL)
            import faulthandler  # the parent's (e.g. pytest's) would report a wanted abort
            faulthandler.disable()
            devnull = os.open(os.devnull, os.O_RDONLY)
            os.dup2(devnull, 0)
            os.dup2(log_fd, 1)
            os.dup2(log_fd, 2)
            sys.stdin = open(0, closefd=False)
            sys.stdout = open(1, "w", buffering=1, closefd=False)
            sys.stderr = open(2, "w", buffering=1, closefd=False)
            sys.argv = argv
            status = entry(argv[1:])
            sys.stdout.flush()
        finally:
            os._exit(status)

    def _reap(self, flags: int) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, flags)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def poll(self) -> int | None:
        return self._reap(os.WNOHANG)

    def wait(self, timeout: float | None = None) -> int:
        deadline = time.monotonic() + (timeout if timeout is not None else 1e9)
        while self.poll() is None:
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout or 0)
            time.sleep(0.01)
        return self.returncode  # type: ignore[return-value]

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        import signal
        self.send_signal(signal.SIGKILL)


@dataclass
class Exchange:
    """One command's reply, the events that came with it and the machine's output."""

    reply: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)
    output: str = ""


class QmpMachine:
    """``argv`` plus the monitor options, started and connected."""

    def __init__(self, argv: list[str], sock_dir: str, name: str, system: bool = False,
                 entry: Callable[[list[str]], int] | None = None) -> None:
        """With ``entry`` (a main(argv) of this Python), the machine is a fork of this
        process running ``entry(argv[1:] + monitor options)``: no interpreter start-up."""
        from qemu.qmp.legacy import QEMUMonitorProtocol

        self.name = name
        self.sock = os.path.join(sock_dir, f"qmp-{os.getpid()}-{id(self)}.sock")
        self._own_dir = ""
        if len(self.sock) > _SUN_PATH_MAX:  # too long for a UNIX socket address
            self._own_dir = tempfile.mkdtemp(prefix="qcowlab-qmp-")
            self.sock = os.path.join(self._own_dir, "qmp.sock")
        chardev = f"socket,id=qmp0,path={self.sock},server=on,wait=off"
        if system:
            argv = argv + ["-chardev", chardev, "-mon", "chardev=qmp0,mode=control"]
        else:
            argv = argv + ["--chardev", chardev, "--monitor", "chardev=qmp0"]
        self.log = tempfile.TemporaryFile(mode="w+b")
        self._read_pos = 0
        if entry is not None:
            self.proc: Any = _ForkedProcess(entry, argv, self.log.fileno())
        else:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self.log,
                                         stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while not os.path.exists(self.sock):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise BackendError(f"{self.name} did not start: {self.read_all().strip()}")
            time.sleep(0.02)
        while True:
            self.qmp = QEMUMonitorProtocol(self.sock)
            try:
                self.qmp.connect()
                break
            except Exception as exc:  # socket not listening yet
                self.qmp.close()
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise BackendError(f"cannot connect to {self.name}: {exc}") from None
                time.sleep(0.05)

    def read_all(self) -> str:
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace")

    def new_output(self) -> str:
        """What the machine printed since the last call."""
        self.log.seek(self._read_pos)
        data = self.log.read()
        self._read_pos += len(data)
        return data.decode("utf-8", "replace")

    def _died(self, exc: Exception) -> BackendError:
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return BackendError(f"lost the QMP connection to {self.name}: {exc}")
        rc = self.proc.returncode
        how = f"killed by signal {-rc}" if rc < 0 else f"exit status {rc}"
        return BackendError(f"{self.name} died ({how}); its log:\n{self.read_all()}")

    def command(self, cmd: dict[str, Any]) -> Exchange:
        """Send ``cmd``; for a job, wait until it concludes (its events come along)."""
        try:
            reply = dict(self.qmp.cmd_obj(cmd))
            events = self.qmp.get_events()
            self.qmp.clear_events()
            if cmd.get("execute") in _JOB_COMMANDS and "return" in reply:
                job = (cmd.get("arguments") or {}).get("job-id")
                deadline = time.monotonic() + JOB_TIMEOUT
                while not any(e.get("event") == "JOB_STATUS_CHANGE"
                              and e["data"].get("id") == job
                              and e["data"].get("status") == "concluded" for e in events):
                    left = deadline - time.monotonic()
                    event = self.qmp.pull_event(wait=left) if left > 0 else None
                    if event is None:
                        raise BackendError(f"job {job} did not conclude in {JOB_TIMEOUT}s")
                    events.append(dict(event))
        except BackendError:
            raise
        except Exception as exc:  # EOF, a reset connection, a closed event loop...
            raise self._died(exc) from None
        return Exchange(reply, [dict(e) for e in events], self.new_output())

    def stop(self) -> str:
        """Quit the machine; return what it printed that was not returned yet."""
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
        out = self.new_output()
        self.log.close()
        if os.path.exists(self.sock):
            os.unlink(self.sock)
        return out
