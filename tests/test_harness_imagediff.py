"""``--impl both`` image comparison: LUKS images made by two QEMU runs differ
only in random bytes, which are masked; any other difference is still found."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from harness import imagediff

SECRET = "secret,id=sec0,data=astrochicken"
pytestmark = pytest.mark.skipif(not shutil.which("qemu-img"), reason="needs QEMU")


def qemu(tool: str, *args: str) -> None:
    for _ in range(5):  # QEMU's PBKDF2 benchmark fails now and then (see harness/steps.py)
        proc = subprocess.run([tool, *args], capture_output=True, text=True)
        if "Unable to get accurate CPU usage" not in proc.stdout + proc.stderr:
            break
    assert proc.returncode == 0, proc.stdout + proc.stderr


def make(path: Path, fmt: str, writes: list[str]) -> Path:
    opts = "key-secret=sec0,iter-time=10" if fmt == "luks" else \
        "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10,cluster_size=4k"
    qemu("qemu-img", "create", "-q", "-f", fmt, "--object", SECRET, "-o", opts, str(path), "1M")
    spec = f"driver={fmt},file.filename={path}" + \
        (",key-secret=sec0" if fmt == "luks" else ",encrypt.key-secret=sec0")
    cmds = [a for w in writes for a in ("-c", w)]
    if cmds:
        qemu("qemu-io", "--object", SECRET, *cmds, "--image-opts", spec)
    return path


@pytest.mark.parametrize("fmt", ["qcow2", "luks"])
def test_luks_runs_match_but_extra_writes_differ(tmp_path: Path, fmt: str) -> None:
    writes = ["write -P 1 0 4k", "write -P 2 100k 1k"]
    a = make(tmp_path / "a", fmt, writes)
    b = make(tmp_path / "b", fmt, writes)
    assert a.read_bytes() != b.read_bytes()
    assert imagediff.file_difference(a, b) is None
    c = make(tmp_path / "c", fmt, writes + ["write -P 3 512k 512"])
    assert imagediff.file_difference(a, c) is not None
    data = bytearray(b.read_bytes())
    data[8] ^= 1  # qcow2: backing file offset; LUKS: cipher name
    b.write_bytes(bytes(data))
    assert imagediff.file_difference(a, b) == "a: first differing byte at offset 0x8"

