"""Ways of running qemu-img/qemu-io command lines: real QEMU, or the emulator."""
from __future__ import annotations

import importlib
import io
import os
import shutil
import subprocess
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class Result:
    """Exit code and captured output of one command line."""

    rc: int
    out: str
    err: str


class Runner(Protocol):
    """Runs one tool ('img' or 'io') with argv in directory cwd."""

    name: str

    def run(self, tool: str, argv: list[str], cwd: Path) -> Result: ...


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="backslashreplace")


class ProcessRunner:
    """Runs programs as subprocesses (real QEMU, or the console scripts)."""

    def __init__(self, name: str, img: str, io_prog: str, timeout: float = 120) -> None:
        self.name = name
        self.progs = {"img": img, "io": io_prog}
        self.timeout = timeout

    def available(self) -> bool:
        """True when both programs are on PATH."""
        return all(shutil.which(p) for p in self.progs.values())

    def run(self, tool: str, argv: list[str], cwd: Path) -> Result:
        try:
            p = subprocess.run(
                [self.progs[tool], *argv], cwd=cwd, stdin=subprocess.DEVNULL,
                capture_output=True, timeout=self.timeout,
            )
        except subprocess.TimeoutExpired:
            return Result(-9, "", f"TIMEOUT after {self.timeout}s\n")
        rc = 128 - p.returncode if p.returncode < 0 else p.returncode  # killed: as a shell says
        return Result(rc, _decode(p.stdout), _decode(p.stderr))


def qemu_runner() -> ProcessRunner:
    """Real QEMU 7.2 (qemu-img, qemu-io on PATH)."""
    return ProcessRunner("qemu", "qemu-img", "qemu-io")


def scripts_runner() -> ProcessRunner:
    """The emulator through its console scripts."""
    return ProcessRunner("qcowlab-scripts", "qcowlab-img", "qcowlab-io")


class _Capture(io.TextIOWrapper):
    """A text stream over a byte buffer, like a pipe (has .buffer); text holding
    raw bytes as surrogates (names read from images) is stored as those bytes."""

    def __init__(self) -> None:
        super().__init__(io.BytesIO(), encoding="utf-8", errors="surrogateescape",
                         write_through=True)

    def text(self) -> str:
        self.flush()
        return _decode(self.buffer.getvalue())  # type: ignore[attr-defined]


class InProcessRunner:
    """Calls the emulator's ``main(argv)`` in this process, capturing its output."""

    name = "qcowlab"
    modules = {"img": "emulator.cli.img", "io": "emulator.cli.io"}

    def __init__(self, tools: tuple[str, ...] = ("img", "io")) -> None:
        self.tools = tools

    def available(self) -> bool:
        """True when the CLI modules needed import."""
        try:
            for m in (self.modules[t] for t in self.tools):
                importlib.import_module(m)
        except Exception:
            return False
        return True

    def run(self, tool: str, argv: list[str], cwd: Path) -> Result:
        out, err = _Capture(), _Capture()
        saved = sys.stdout, sys.stderr, os.getcwd()
        sys.stdout, sys.stderr = out, err
        try:
            os.chdir(cwd)
            main = importlib.import_module(self.modules[tool]).main
            rc = main(list(argv))
            if not isinstance(rc, int):
                err.write(f"PYTHON: main() returned {rc!r}\n")
                rc = -1
        except KeyboardInterrupt:
            raise
        except BaseException:  # a traceback is itself a divergence to report
            err.write("PYTHON TRACEBACK:\n" + traceback.format_exc())
            rc = -1
        finally:
            sys.stdout, sys.stderr = saved[0], saved[1]
            os.chdir(saved[2])
        return Result(rc, out.text(), err.text())


class SplitRunner:
    """qemu-img from one runner, qemu-io from another (isolates one CLI's bugs)."""

    def __init__(self, img: Runner, io_runner: Runner, name: str) -> None:
        self.name = name
        self.parts = {"img": img, "io": io_runner}

    def available(self) -> bool:
        return all(getattr(r, "available", lambda: True)() for r in self.parts.values())

    def run(self, tool: str, argv: list[str], cwd: Path) -> Result:
        return self.parts[tool].run(tool, argv, cwd)


class ForkRunner(InProcessRunner):
    """The in-process emulator, run in a forked child with memory and time limits.

    Keeps the speed of in-process runs (modules are imported once, in the
    parent) while a runaway allocation or loop only kills the child; that is
    reported as a divergence instead of taking the whole run down.
    """

    name = "qcowlab-fork"

    def __init__(self, mem_bytes: int = 2 << 30, seconds: int = 120) -> None:
        super().__init__()
        self.mem_bytes, self.seconds = mem_bytes, seconds

    def run(self, tool: str, argv: list[str], cwd: Path) -> Result:
        import pickle
        import resource
        import signal
        importlib.import_module(self.modules[tool])
        rfd, wfd = os.pipe()
        pid = os.fork()
        if pid == 0:  # child
            os.close(rfd)
            try:
                resource.setrlimit(resource.RLIMIT_AS, (self.mem_bytes, self.mem_bytes))
                signal.alarm(self.seconds)
                res = InProcessRunner.run(self, tool, argv, cwd)
                with os.fdopen(wfd, "wb") as w:
                    pickle.dump(res, w)
            finally:
                os._exit(0)
        os.close(wfd)
        with os.fdopen(rfd, "rb") as r:
            data = r.read()
        _, status = os.waitpid(pid, 0)
        if data:
            return pickle.loads(data)
        sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0
        return Result(-1, "", f"PYTHON CHILD DIED: signal {sig}, status {status:#x} "
                              f"(limits: {self.mem_bytes >> 20} MiB, {self.seconds} s)\n")
