"""The emulator backend's in-process capture and the QEMU command-line backend."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from harness.backends import emulator as emu
from harness.backends.emulator import EmulatorBackend
from harness.backends.qemu import QemuBackend, find_program

needs_qemu = pytest.mark.skipif(not (find_program("qemu-img") and find_program("qemu-io")),
                                reason="QEMU 7.2 (qemu-img, qemu-io) not installed")


def fake_main(argv: list[str]) -> int:
    sys.stdout.write("out1\n")
    sys.stderr.write("err1\n")
    sys.stdout.write("tty\n" if sys.stdout.isatty() else "pipe\n")
    if "boom" in argv:
        raise RuntimeError("kaput")
    if "exit" in argv:
        raise SystemExit(3)
    return len(argv)


@pytest.fixture
def backend(monkeypatch: pytest.MonkeyPatch) -> EmulatorBackend:
    monkeypatch.setattr(emu, "_load_main", lambda module: fake_main)
    return EmulatorBackend()


def test_stdout_and_stderr_share_one_buffer_in_call_order(backend: EmulatorBackend) -> None:
    res = backend.qemu_img(["info", "x"])
    assert res.output == "out1\nerr1\npipe\n"
    assert res.status == 2


def test_session_looks_like_a_terminal(backend: EmulatorBackend) -> None:
    res = backend.qemu_io(["-f", "qcow2", "x"], ["read 0 1", "write 0 1"], session=True)
    assert res.output.endswith("tty\n")
    assert res.status == 7  # -f qcow2 x + two "-c CMD"


def test_exceptions_are_logged_not_raised(backend: EmulatorBackend) -> None:
    res = backend.qemu_img(["boom"])
    assert res.output.endswith("qcowlab harness: emulator raised RuntimeError: kaput\n")
    assert res.status == 255
    assert backend.qemu_img(["exit"]).status == 3


def test_real_streams_restored(backend: EmulatorBackend) -> None:
    before = sys.stdout, sys.stderr
    backend.qemu_img(["boom"])
    assert (sys.stdout, sys.stderr) == before


@needs_qemu
def test_qemu_pipe_puts_stderr_before_buffered_stdout(tmp_path: Path) -> None:
    b = QemuBackend(str(tmp_path))
    img = str(tmp_path / "t.qcow2")
    assert b.qemu_img(["create", "-f", "qcow2", img, "1M"]).status == 0
    res = b.qemu_io(["-f", "qcow2", img], ["write -q 0 4k", "frobnicate", "read -P 0 0 4k"])
    lines = res.output.splitlines()
    assert lines[0] == 'command "frobnicate" not found'
    assert lines[1].startswith("Pattern verification failed at offset 0, 4096 bytes")


@needs_qemu
def test_qemu_session_keeps_program_order(tmp_path: Path) -> None:
    b = QemuBackend(str(tmp_path))
    img = str(tmp_path / "t.qcow2")
    b.qemu_img(["create", "-f", "qcow2", img, "1M"])
    res = b.qemu_io(["-f", "qcow2", img], ["write -q 0 4k", "frobnicate", "read -q -P 0 0 4k"],
                    session=True)
    assert res.output.splitlines() == ['command "frobnicate" not found',
                                       "Pattern verification failed at offset 0, 4096 bytes"]
    assert res.status == 1


def test_session_echo_removed_wherever_async_output_falls() -> None:
    """A blkdebug message printed while the harness types stays, the echo goes."""
    from harness.backends.qemu import _without_echo
    cmd = "wait_break A"
    # qemu-io's readline redraws the whole line after every typed character
    echo = "".join("\x1b[D" * (i - 1) + cmd[:i] + "\x1b[K" for i in range(1, len(cmd) + 1))
    msg = "blkdebug: Suspended request 'A'\r\n"
    assert _without_echo(echo + "\r\n" + msg, cmd) == msg
    assert _without_echo(msg + echo + "\r\n", cmd) == msg
    assert _without_echo(echo + "\r\n", cmd) == ""
