"""`qemu-img snapshot` and `qemu-img amend` against QEMU 7.2.

Each scenario runs the same command lines with real QEMU on one image and with
qcowlab (in process) on a copy; every output (dates masked) and exit status
must match, the images must be byte-identical apart from the snapshot dates,
and real `qemu-img check` must say the same of both (QEMU itself leaks a
cluster when a snapshot overflows 2-bit refcounts).
"""
from __future__ import annotations

import re
import shutil
import struct
import subprocess
from pathlib import Path
from typing import List

import pytest

from tests.cli_support import assert_same_output, needs_qemu, run_ours, run_qemu

pytestmark = needs_qemu

_DATE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")


def _masked_image(path: Path) -> bytes:
    """The image with the date fields of every snapshot table entry zeroed."""
    data = bytearray(path.read_bytes())
    nb, off = struct.unpack_from(">IQ", data, 60)
    for _ in range(nb):
        off = -(-off // 8) * 8
        _, _, id_size, name_size, _, _, _, _, extra = struct.unpack_from(">QIHHIIQII", data, off)
        data[off + 16:off + 24] = bytes(8)
        off += 40 + extra + id_size + name_size
    return bytes(data)


def _scenario(tmp_path: Path, create: List[str], steps: List[List[str]]) -> None:
    q, p = tmp_path / "qemu", tmp_path / "ours"
    q.mkdir()
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", *create], cwd=q, check=True)
    shutil.copytree(q, p, dirs_exist_ok=True)
    for step in steps:
        tool, args = step[0], step[1:]
        q_out, q_rc = run_qemu(tool, args, q)
        p_out, p_rc = run_ours(tool, args, p)
        assert_same_output(_DATE.sub("DATE", p_out), _DATE.sub("DATE", q_out))
        assert p_rc == q_rc, f"{step}: exit status {p_rc}, QEMU {q_rc}"
    assert _masked_image(p / "t.qcow2") == _masked_image(q / "t.qcow2")
    checks = [subprocess.run(["qemu-img", "check", "t.qcow2"], cwd=d, capture_output=True,
                             text=True) for d in (q, p)]
    assert [(c.returncode, c.stdout, c.stderr) for c in checks][0] == \
        (checks[1].returncode, checks[1].stdout, checks[1].stderr)


OPTIONS = ["", "extended_l2=on", "cluster_size=4096", "cluster_size=2M,extended_l2=on",
           "refcount_bits=2,cluster_size=16k", "compat=0.10"]


@pytest.mark.parametrize("opts", OPTIONS)
def test_snapshot_lifecycle(tmp_path: Path, opts: str) -> None:
    create = (["-o", opts] if opts else []) + ["t.qcow2", "4M"]
    _scenario(tmp_path, create, [
        ["io", "-c", "write -q -P 1 0 1M", "-c", "write -q -z 1M 64k", "t.qcow2"],
        ["img", "snapshot", "-c", "one", "t.qcow2"],
        ["io", "-c", "write -q -P 2 4k 4k", "-c", "write -q -P 3 1100k 2k",
         "-c", "discard -q 512k 64k", "-c", "write -q -z 100k 8k", "t.qcow2"],
        ["img", "snapshot", "-c", "two", "t.qcow2"],
        ["io", "-c", "write -q -P 7 3M 100k", "t.qcow2"],
        ["img", "snapshot", "-a", "one", "t.qcow2"],
        ["io", "-c", "read -q -P 1 0 4k", "-c", "write -q -P 9 512k 12k", "t.qcow2"],
        ["img", "snapshot", "-d", "one", "t.qcow2"],
        ["img", "snapshot", "-l", "t.qcow2"],
        ["img", "snapshot", "-U", "-l", "t.qcow2"],
        ["img", "check", "t.qcow2"],
        ["img", "snapshot", "-q", "-d", "two", "t.qcow2"],
        ["img", "snapshot", "-l", "t.qcow2"],
        ["img", "map", "--output=json", "t.qcow2"],
    ])


def test_snapshot_errors(tmp_path: Path) -> None:
    _scenario(tmp_path, ["t.qcow2", "1M"], [
        ["img", "snapshot", "-c", "s", "t.qcow2"],
        ["img", "snapshot", "-a", "nope", "t.qcow2"],
        ["img", "snapshot", "-d", "1", "t.qcow2"],
        ["img", "snapshot", "-l", "-c", "x", "t.qcow2"],
        ["img", "snapshot", "-l"],
        ["img", "snapshot", "-c"],
        ["img", "snapshot", "-f", "qcow2", "-l", "t.qcow2"],
        ["img", "snapshot", "-U", "-c", "x", "t.qcow2"],
        ["img", "snapshot", "-l", "missing.qcow2"],
        ["img", "resize", "t.qcow2", "2M"],
        ["img", "snapshot", "-a", "s", "t.qcow2"],
        ["img", "snapshot", "-l", "t.qcow2"],
    ])


def test_snapshot_refcount_overflow(tmp_path: Path) -> None:
    _scenario(tmp_path, ["-o", "refcount_bits=1", "t.qcow2", "1M"], [
        ["io", "-c", "write -q -P 1 0 64k", "t.qcow2"],
        ["img", "snapshot", "-c", "one", "t.qcow2"],
    ])


@pytest.mark.parametrize("opts", ["", "cluster_size=4096", "refcount_bits=1"])
def test_amend_compat_and_refcounts(tmp_path: Path, opts: str) -> None:
    create = (["-o", opts] if opts else []) + ["t.qcow2", "4M"]
    _scenario(tmp_path, create, [
        ["io", "-c", "write -q -P 1 0 1M", "-c", "write -q -z 1M 256k", "t.qcow2"],
        ["img", "snapshot", "-c", "one", "t.qcow2"],
        ["io", "-c", "write -q -z 64k 64k", "-c", "discard -q 2M 64k", "t.qcow2"],
        ["img", "amend", "-o", "compat=0.10", "t.qcow2"],
        ["img", "amend", "-o", "refcount_bits=4", "t.qcow2"],
        ["img", "amend", "-p", "-o", "compat=1.1,lazy_refcounts=on", "t.qcow2"],
        ["io", "-c", "write -q -P 5 0 4k", "t.qcow2"],
        ["img", "amend", "-o", "refcount_bits=64,lazy_refcounts=off", "t.qcow2"],
        ["img", "amend", "-o", "size=8M", "t.qcow2"],
        ["img", "amend", "-o", "compat=0.10", "t.qcow2"],
        ["img", "amend", "-o", "refcount_bits=16", "t.qcow2"],
        ["img", "snapshot", "-d", "one", "t.qcow2"],
        ["img", "amend", "-p", "-o", "compat=0.10", "t.qcow2"],
        ["img", "check", "t.qcow2"],
    ])


def test_amend_errors(tmp_path: Path) -> None:
    _scenario(tmp_path, ["-o", "extended_l2=on", "t.qcow2", "1M"], [
        ["img", "amend", "t.qcow2"],
        ["img", "amend", "-f", "qcow2", "-o", "help"],
        ["img", "amend", "-f", "raw", "-o", "help"],
        ["img", "amend", "-o", "cluster_size=4k", "t.qcow2"],
        ["img", "amend", "-o", "extended_l2=off", "t.qcow2"],
        ["img", "amend", "-o", "foo=1", "t.qcow2"],
        ["img", "amend", "-o", "compat=2.0", "t.qcow2"],
        ["img", "amend", "-o", "compat=0.10", "t.qcow2"],
        ["img", "amend", "-o", "refcount_bits=3", "t.qcow2"],
        ["img", "amend", "-o", "backing_file=foo", "t.qcow2"],
        ["img", "amend", "-o", "data_file=x", "t.qcow2"],
        ["img", "amend", "-o", "encrypt.keyslot=1", "t.qcow2"],
        ["img", "amend", "-t", "bogus", "-o", "size=2M", "t.qcow2"],
        ["img", "amend", "-o", "size=2M"],
        ["img", "amend", "-o", ",", "t.qcow2"],
    ])
