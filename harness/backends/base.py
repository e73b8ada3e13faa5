"""The one narrow interface every backend implements."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    from harness.backends.qmp_machine import Exchange


@dataclass
class Result:
    """Combined stdout+stderr of one command (as ``2>&1``) and its exit status."""

    output: str
    status: int


class BackendError(Exception):
    """The backend could not run a command at all (missing binary, crashed daemon...)."""


class Backend(ABC):
    """Runs qemu-img / qemu-io commands and QMP commands for one case."""

    name: str = ""

    @abstractmethod
    def unavailable(self) -> Optional[str]:
        """Why this backend cannot run at all (shown as "not run"), or None."""

    @abstractmethod
    def qemu_img(self, argv: list[str]) -> Result:
        """Run qemu-img with ``argv`` (program name excluded)."""

    @abstractmethod
    def qemu_io(self, argv: list[str], commands: list[str], session: bool = False) -> Result:
        """Run qemu-io ``argv`` with one ``-c`` per command, or, with ``session``,
        as one interactive session typing the commands (output in program order)."""

    def qmp_unavailable(self, machine: str) -> Optional[str]:
        """Why QMP steps cannot run on ``machine`` ("daemon"/"system"), or None."""
        return f"QMP is not available on the {self.name} backend"

    def qmp(self, machine: str, command: dict[str, Any]) -> "Exchange":
        """Send one QMP command to the machine (started on first use); return the
        reply with the events and the machine's output that came with it."""
        raise BackendError(self.qmp_unavailable(machine) or "QMP not supported")

    def close(self) -> str:
        """Stop whatever the backend started; return any output that belongs to the log."""
        return ""
