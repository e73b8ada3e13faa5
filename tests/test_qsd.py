"""qcowlab-qsd against qemu-storage-daemon (and qemu-system-x86_64 -M none):
the QMP wire protocol, the command line, the qemu.qmp cross-check, and a
daemon that dies in the middle of a case."""
from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from harness import cli
from harness.backends.qemu import find_program

QSD = find_program("qemu-storage-daemon")
needs_qsd = pytest.mark.skipif(not QSD, reason="qemu-storage-daemon (QEMU 7.2) not installed")
OURS = [sys.executable, "-m", "emulator.qsd"]


def _start(argv: list[str], sock: str) -> subprocess.Popen:
    proc = subprocess.Popen(argv + ["--chardev", f"socket,id=m0,path={sock},server=on,wait=off",
                                    "--monitor", "chardev=m0"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while not os.path.exists(sock):
        assert proc.poll() is None and time.monotonic() < deadline, "daemon did not start"
        time.sleep(0.02)
    return proc


def _transcript(argv: list[str], sock: str, lines: list[str]) -> list[str]:
    """The greeting, then every message received after each line sent (timestamps dropped)."""
    proc = _start(argv, sock)
    out = []
    with socket.socket(socket.AF_UNIX) as s:
        for _ in range(100):
            try:
                s.connect(sock)
                break
            except OSError:
                time.sleep(0.05)
        f = s.makefile("rb")
        out.append(f.readline().decode())
        for line in lines:
            s.sendall(line.encode() + b"\n")
            while True:
                msg = f.readline().decode()
                out.append(re.sub(r'"(micro)?seconds": [0-9]+', "T", msg))
                if '"event"' not in msg:
                    break
    proc.wait(timeout=30)
    return out


@needs_qsd
def test_wire_protocol_matches_qemu(tmp_path: Path) -> None:
    """Greeting, negotiation, id echo, member order and the dispatcher's errors."""
    lines = ['{"execute": "query-version", "id": 1}',
             '{"execute": "qmp_capabilities", "id": {"a": [1]}}',
             '{"execute": "qmp_capabilities"}',
             '{"execute": "query-version", "id": "v"}',
             '{"execute": "nope", "id": 2}',
             '[1, 2]', '{"execute": 5}', '{"exec": "quit"}', '{"id": 3}',
             '{"execute": "query-version", "arguments": [1]}',
             '{"execute": "block_resize", "arguments": {"node-name": "x", "size": -1}}',
             '{"execute": "query-jobs"}',
             '{"execute": "quit", "id": "q"}']
    theirs = _transcript([QSD], str(tmp_path / "q.sock"), lines)
    ours = _transcript(OURS, str(tmp_path / "o.sock"), lines)
    assert ours == theirs


@needs_qsd
@pytest.mark.parametrize("argv", [
    ["--foo"], ["extra"], ["--blockdev"], ["--chardev", "nosuch,id=x"],
    ["--monitor", "chardev=nope"],
    ["--blockdev", '{"driver": "file", "node-name": "f", "filename": "/nonexistent/x"}'],
    ["--blockdev", "driver=file,node-name=f,filename=/nonexistent/x"],
    ["-V"],
])
def test_command_line_matches_qemu(argv: list[str]) -> None:
    theirs = subprocess.run([QSD] + argv, capture_output=True, text=True, timeout=30)
    ours = subprocess.run(OURS + argv, capture_output=True, text=True, timeout=30)
    # getopt's messages start with argv[0]: the program's path on either side
    main_py = Path(cli.__file__).parent.parent / "emulator" / "qsd" / "__main__.py"
    ours_err = ours.stderr.replace(str(main_py), QSD)
    assert (ours.returncode, ours.stdout, ours_err) == \
        (theirs.returncode, theirs.stdout, theirs.stderr)


@needs_qsd
def test_stdio_monitor_matches_qemu() -> None:
    """--chardev stdio: the monitor on standard input and output."""
    text = '{"execute": "qmp_capabilities"}\n{"execute": "query-jobs"}\n{"execute": "quit"}\n'
    args = ["--chardev", "stdio,id=s", "--monitor", "chardev=s"]
    theirs = subprocess.run([QSD] + args, input=text, capture_output=True, text=True, timeout=30)
    ours = subprocess.run(OURS + args, input=text, capture_output=True, text=True, timeout=30)
    assert (ours.returncode, ours.stdout) == (theirs.returncode, theirs.stdout)


@needs_qsd
def test_qemu_qmp_crosscheck_finds_no_difference() -> None:
    """tools/qmp_crosscheck.py: QMPClient on both sides, same sequence, same answers."""
    from tools import qmp_crosscheck
    out = io.StringIO()
    with redirect_stdout(out):
        status = qmp_crosscheck.main([])
    assert status == 0, out.getvalue()
    assert out.getvalue().rstrip().endswith(": 0 differences")


CRASH_CASE = """\
description: the machine dies (qemu-io abort over HMP) in the middle of the case
requires: {formats: [qcow2]}
images:
  - {name: test, size: 1M}
steps:
  - qmp: {execute: blockdev-add, arguments: {driver: qcow2, node-name: disk, file: {driver: file, filename: $TEST_IMG}}}
    machine: system
  - qmp: {execute: human-monitor-command, arguments: {command-line: 'qemu-io disk "abort"'}}
    machine: system
  - qmp: {execute: blockdev-del, arguments: {node-name: disk}}
    machine: system
"""
AFTER_CASE = """\
description: a QMP case that runs after the crash
requires: {formats: [qcow2]}
steps:
  - qmp: {execute: query-jobs}
"""
AFTER_OUT = 'QA output created by z2\n{"execute": "query-jobs"}\n{"return": []}\n'


@pytest.mark.parametrize("how", ["abort", "sigkill"])
@pytest.mark.parametrize("impl", ["emulator", "qemu"])
def test_machine_crash_fails_that_case_and_the_run_goes_on(
        tmp_path: Path, impl: str, how: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine dies by qemu-io's abort (SIGABRT), or is killed from outside
    (SIGKILL) just before the case's second command."""
    if impl == "qemu" and not find_program("qemu-system"):
        pytest.skip("qemu-system-x86_64 not installed")
    if how == "sigkill":
        from harness.backends import qmp_machine
        real = qmp_machine.QmpMachine.command

        def command(self: qmp_machine.QmpMachine, cmd: dict) -> qmp_machine.Exchange:
            if cmd["execute"] == "human-monitor-command":
                self.proc.send_signal(signal.SIGKILL)
                self.proc.wait()
            return real(self, cmd)
        monkeypatch.setattr(qmp_machine.QmpMachine, "command", command)
    for sub in ("cases", "golden"):
        (tmp_path / sub).mkdir()
    (tmp_path / "cases" / "z1.yaml").write_text(CRASH_CASE)
    (tmp_path / "golden" / "z1.out").write_text("QA output created by z1\n")
    (tmp_path / "cases" / "z2.yaml").write_text(AFTER_CASE)
    (tmp_path / "golden" / "z2.out").write_text(AFTER_OUT)
    out = io.StringIO()
    with redirect_stdout(out):
        status = cli.main(["--cases-dir", str(tmp_path / "cases"),
                           "--golden-dir", str(tmp_path / "golden"),
                           "--scratch-dir", str(tmp_path / "scratch"), "--color", "off",
                           "--impl", impl, "z1", "z2"])
    text = out.getvalue()
    assert status != 0
    assert re.search(r"^z1 +fail", text, re.M), text
    assert re.search(r"^z2 +pass", text, re.M), text
    signum = 6 if how == "abort" else 9
    assert re.search(rf"step failed: \S+ died \(killed by signal {signum}\); its log:", text), text
    bad = next((tmp_path / "scratch").glob("*/z1/z1.out.bad"))
    assert json.dumps({"execute": "human-monitor-command"})[:30] in bad.read_text()


@needs_qsd
def test_secret_objects_and_encrypted_blockdev_add_match_qemu(tmp_path: Path) -> None:
    """object-add/object-del of secrets and blockdev-add of an AES-encrypted
    qcow2 image (deterministic: no key derivation benchmark)."""
    img = tmp_path / "a.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "--object",
                    "secret,id=s,data=pw", "-o", "encryption=on,encrypt.key-secret=s",
                    str(img), "1M"], check=True, timeout=60)
    node = {"driver": "qcow2", "read-only": True,
            "file": {"driver": "file", "filename": str(img)}}
    cmds = [{"execute": "qmp_capabilities"},
            {"execute": "object-add", "arguments": {"qom-type": "secret", "id": "s0",
                                                    "data": "pw"}},
            {"execute": "object-add", "arguments": {"qom-type": "secret", "id": "s0",
                                                    "data": "x"}},
            {"execute": "object-add", "arguments": {"qom-type": "secret", "id": "s1",
                                                    "data": "x", "format": "hex"}},
            {"execute": "object-add", "arguments": {"qom-type": "secret", "id": "1x",
                                                    "data": "x"}},
            {"execute": "blockdev-add", "arguments": {**node, "node-name": "n0"}},
            {"execute": "blockdev-add", "arguments": {**node, "node-name": "n0",
                                                      "encrypt": {"key-secret": "s0"}}},
            {"execute": "blockdev-add", "arguments": {**node, "node-name": "n0",
                                                      "encrypt": {"format": "luks",
                                                                  "key-secret": "s0"}}},
            {"execute": "blockdev-add", "arguments": {**node, "node-name": "n0",
                                                      "encrypt": {"format": "aes",
                                                                  "key-secret": "s0"}}},
            {"execute": "object-del", "arguments": {"id": "s0"}},
            {"execute": "object-del", "arguments": {"id": "s0"}},
            {"execute": "quit"}]
    lines = [json.dumps(c) for c in cmds]
    theirs = _transcript([QSD], str(tmp_path / "q.sock"), lines)
    ours = _transcript(OURS, str(tmp_path / "o.sock"), lines)
    assert ours == theirs
    assert theirs.count('{"return": {}}\r\n') == 5
