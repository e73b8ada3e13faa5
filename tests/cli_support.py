"""Differential runs of the command lines: real QEMU 7.2 vs qcowlab, same inputs.

Each run starts from copies of the same images in two scratch directories;
the combined ``2>&1`` output (statistics timing figures masked), the exit
status and every resulting file must be identical.
"""
from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import pytest

QEMU = {"img": shutil.which("qemu-img"), "io": shutil.which("qemu-io")}

needs_qemu = pytest.mark.skipif(not all(QEMU.values()),
                                reason="QEMU 7.2's qemu-img/qemu-io are not on PATH")

_RATE = re.compile(r"\d+(\.\d+)? (bytes|KiB|MiB|GiB|TiB|PiB|EiB)/sec and \d+\.\d+ ops/sec")
_TIME = re.compile(r"\d\d\.\d\d sec")
_CFLAG = re.compile(r"^(\d+,\d+,)\d+:\d\d:\d\d\.\d\d,[\d.a-z-]+,[\d.a-z-]+$", re.M)


def mask_timing(text: str) -> str:
    """Hide the figures that depend on elapsed time (rate, ops/sec, seconds)."""
    text = _CFLAG.sub(r"\1T,R,R", text)
    return _TIME.sub("TT sec", _RATE.sub("R/sec and R ops/sec", text))


def run_qemu(tool: str, args: List[str], cwd: Path) -> Tuple[str, int]:
    # by name, so that argv[0] (used by glibc's getopt messages) is plain "qemu-io"
    proc = subprocess.run([f"qemu-{tool}"] + args, cwd=cwd, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=60)
    rc = proc.returncode  # death by signal N as the shell reports it (main() returns that)
    return proc.stdout.decode("utf-8", "replace"), 128 - rc if rc < 0 else rc


class _Sink(io.TextIOBase):
    def __init__(self, parts: List[str]) -> None:
        self._parts = parts

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, s: str) -> int:
        self._parts.append(s)
        return len(s)


def run_ours(tool: str, args: List[str], cwd: Path, stdin: str = "") -> Tuple[str, int]:
    if tool == "img":
        from emulator.cli.img import main
    else:
        from emulator.cli.io import main
    parts: List[str] = []
    sink = _Sink(parts)
    saved = sys.stdout, sys.stderr, sys.stdin, os.getcwd()
    sys.stdout = sys.stderr = sink  # type: ignore[assignment]
    sys.stdin = io.StringIO(stdin)
    os.chdir(cwd)
    try:
        rc = main(list(args))
    finally:
        sys.stdout, sys.stderr, sys.stdin = saved[:3]
        os.chdir(saved[3])
    return "".join(parts), rc


def assert_same_output(ours: str, qemu: str) -> None:
    """Equal after masking timing; on failure the message is a unified diff."""
    import difflib
    a, b = mask_timing(qemu), mask_timing(ours)
    if a != b:
        diff = "".join(difflib.unified_diff(a.splitlines(True), b.splitlines(True),
                                            "qemu", "qcowlab"))
        raise AssertionError("output differs:\n" + diff)


def tree_files(d: Path) -> Dict[str, bytes]:
    return {str(p.relative_to(d)): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def differential(tmp_path: Path, setup: Callable[[Path], None], tool: str,
                 args: List[str]) -> str:
    """Run ``tool args`` under QEMU and qcowlab on trees made alike; assert equality.

    Returns QEMU's output for further checks.
    """
    q, p = tmp_path / "qemu", tmp_path / "ours"
    for d in (q, p):  # set up twice: a copy would not keep the files' allocation
        d.mkdir(parents=True)
        setup(d)
    q_out, q_rc = run_qemu(tool, args, q)
    p_out, p_rc = run_ours(tool, args, p)
    assert_same_output(p_out, q_out)
    assert p_rc == q_rc, f"exit status {p_rc}, QEMU {q_rc}"
    assert tree_files(p) == tree_files(q)
    return q_out


def make_qemu_images(d: Path, lines: List[str]) -> Path:
    """Run qemu-img/qemu-io command lines (``qemu-img create ...``) with real QEMU in ``d``."""
    import shlex
    for line in lines:
        words = shlex.split(line)
        subprocess.run([QEMU[words[0][5:]], *words[1:]], cwd=d, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return d


def qemu_setup(*commands: List[str]) -> Callable[[Path], None]:
    """A setup step running real qemu-img/qemu-io commands (["img", ...] / ["io", ...])."""
    def setup(d: Path) -> None:
        for cmd in commands:
            subprocess.run([QEMU[cmd[0]]] + list(cmd[1:]), cwd=d, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return setup
