"""Emulator backend: runs qcowlab's qemu-img / qemu-io drop-ins in this process."""
from __future__ import annotations

import io
import sys
from typing import TYPE_CHECKING, Any, Callable, Optional

from harness.backends.base import Backend, Result
from harness.backends.capture import PipeCapture

if TYPE_CHECKING:
    from harness.backends.qmp_machine import Exchange, QmpMachine


def _load_main(module: str) -> Callable[[list[str]], int]:
    if module == "img":
        from emulator.cli import img
        return img.main
    from emulator.cli import io as qio
    return qio.main


class EmulatorBackend(Backend):
    """Calls ``emulator.cli.img.main`` / ``emulator.cli.io.main`` with output captured."""

    name = "emulator"

    def __init__(self, sock_dir: str = "") -> None:
        self.sock_dir = sock_dir
        self._machines: dict[str, "QmpMachine"] = {}

    def unavailable(self) -> Optional[str]:
        return None

    def qmp_unavailable(self, machine: str) -> Optional[str]:
        return None

    def qmp(self, machine: str, command: dict[str, Any]) -> "Exchange":
        """qcowlab-qsd serves both machine kinds, in a process of its own as QEMU's:
        a fork of this one (the emulator is already imported here)."""
        import tempfile

        from emulator.qsd.main import main as qsd_main
        from harness.backends.qmp_machine import QmpMachine
        if machine not in self._machines:
            self._machines[machine] = QmpMachine(["qcowlab-qsd"],
                                                 self.sock_dir or tempfile.gettempdir(),
                                                 "qcowlab-qsd", entry=qsd_main)
        return self._machines[machine].command(command)

    def close(self) -> str:
        logs = [m.stop() for m in self._machines.values()]
        self._machines.clear()
        return "".join(logs)

    def _run(self, module: str, argv: list[str], tty: bool = False) -> Result:
        cap = PipeCapture(tty=tty)
        old_stdin = sys.stdin
        sys.stdin = io.StringIO("")
        try:
            with cap.redirect():
                try:
                    status = _load_main(module)(argv)
                except SystemExit as exc:
                    status = exc.code if isinstance(exc.code, int) else 1
                except Exception as exc:  # the log must show it, not the harness crash
                    sys.stderr.write(f"qcowlab harness: emulator raised "
                                     f"{type(exc).__name__}: {exc}\n")
                    status = 255
        finally:
            sys.stdin = old_stdin
        return Result(cap.text(), int(status or 0))

    def qemu_img(self, argv: list[str]) -> Result:
        return self._run("img", argv)

    def qemu_io(self, argv: list[str], commands: list[str], session: bool = False) -> Result:
        args = list(argv)
        for cmd in commands:
            args += ["-c", cmd]
        return self._run("io", args, tty=session)
