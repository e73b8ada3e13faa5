"""Helpers for the qcow2 driver tests: run the same operations on real QEMU
and on the emulator's qcow2 driver, then compare the images byte for byte."""
from __future__ import annotations

import filecmp
import io as pyio
import os
import shutil
import subprocess
import sys

import pytest

from emulator.block import io
from emulator.block.node import BlockError

requires_qemu = pytest.mark.skipif(shutil.which("qemu-img") is None or
                                   shutil.which("qemu-io") is None,
                                   reason="QEMU 7.2's qemu-img/qemu-io are not installed")

_UNITS = {"k": 1 << 10, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def size(text: str) -> int:
    """'64k' -> 65536, as qemu-io parses sizes."""
    if text[-1] in _UNITS:
        return int(text[:-1]) * _UNITS[text[-1]]
    return int(text, 0)


def create_opts(spec: str) -> dict:
    """'extended_l2=on,cluster_size=16k' -> the dict qcow2.create takes."""
    opts: dict = {}
    for item in filter(None, spec.split(",")):
        key, val = item.split("=", 1)
        opts[key] = size(val) if key == "cluster_size" else val
    return opts


#: command -> qemu-io command line
def qemu_io_command(cmd: str) -> str:
    op, *args = cmd.split()
    return {
        "w": "write -P {0} {1} {2}", "z": "write -z {0} {1}", "zu": "write -z -u {0} {1}",
        "d": "discard {0} {1}", "c": "write -c -P {0} {1} {2}", "t": "truncate {0}",
    }[op].format(*args)


def emulator_command(node, cmd: str) -> None:
    op, *a = cmd.split()
    try:
        if op == "w":
            io.pwrite(node, size(a[1]), bytes([int(a[0], 0)]) * size(a[2]))
        elif op == "z":
            io.pwrite_zeroes(node, size(a[0]), size(a[1]), 0)
        elif op == "zu":
            io.pwrite_zeroes(node, size(a[0]), size(a[1]), 4)
        elif op == "d":
            io.pdiscard(node, size(a[0]), size(a[1]))
        elif op == "c":
            io.pwrite_compressed(node, size(a[1]), bytes([int(a[0], 0)]) * size(a[2]))
        elif op == "t":
            io.truncate(node, size(a[0]))
    except BlockError:
        pass


def run_both(tmp_path, spec: str, image_size: str, commands: list[str]) -> tuple[str, str]:
    """Create with qemu-img, copy, apply ``commands`` with qemu-io and with the
    emulator; returns the two image paths."""
    qemu, emu = str(tmp_path / "qemu.qcow2"), str(tmp_path / "emu.qcow2")
    subprocess.run(["qemu-img", "create", "-f", "qcow2", "-o", spec or "cluster_size=65536",
                    qemu, image_size], check=True, capture_output=True, cwd=tmp_path)
    shutil.copy(qemu, emu)
    args = ["qemu-io", "-f", "qcow2"]
    for cmd in commands:
        args += ["-c", qemu_io_command(cmd)]
    subprocess.run(args + [qemu], capture_output=True, cwd=tmp_path)
    from emulator.block.open import close_image, open_image
    cwd = os.getcwd()
    old_err = sys.stderr
    sys.stderr = pyio.StringIO()
    os.chdir(tmp_path)
    try:
        node = open_image(emu, "qcow2", unmap=True)
        for cmd in commands:
            emulator_command(node, cmd)
        close_image(node)
    finally:
        os.chdir(cwd)
        sys.stderr = old_err
    return qemu, emu


def same_image(a: str, b: str) -> bool:
    return os.path.getsize(a) == os.path.getsize(b) and filecmp.cmp(a, b, shallow=False)
