"""Opening damaged or unusual qcow2 images: the same error text as qemu-io,
and "Marking image as corrupt" handled the way QEMU handles it."""
from __future__ import annotations

import io as pyio
import shutil
import struct
import subprocess
import sys

import pytest

from emulator.block import io
from emulator.block.node import BlockError
from emulator.block.open import close_image, open_image
from tests.qcow2_support import requires_qemu, same_image

pytestmark = requires_qemu

PATCHES = {
    "bad magic": [(0, ">I", 0x12345678)],
    "version 1": [(4, ">I", 1)],
    "version 4": [(4, ">I", 4)],
    "cluster bits 8": [(20, ">I", 8)],
    "cluster bits 22": [(20, ">I", 22)],
    "header too short": [(100, ">I", 100)],
    "header too long": [(100, ">I", 70000)],
    "backing offset": [(8, ">Q", 70000)],
    "unknown incompat": [(72, ">Q", (1 << 20) | (1 << 33))],
    "corrupt bit": [(72, ">Q", 2)],
    "compression type 2": [(104, ">B", 2)],
    "compression bit": [(72, ">Q", 8)],
    "zstd without bit": [(104, ">B", 1)],
    "refcount order 7": [(96, ">I", 7)],
    "no refcount table": [(56, ">I", 0)],
    "refcount table offset": [(48, ">Q", 0x10001)],
    "refcount table size": [(56, ">I", 0x10000000)],
    "L1 too large": [(36, ">I", 0x10000000)],
    "L1 offset": [(40, ">Q", 0x30001)],
    "L1 too small": [(36, ">I", 0), (24, ">Q", 1 << 40)],
    "snapshot offset": [(60, ">I", 1), (64, ">Q", 0x123)],
    "snapshot count": [(60, ">I", 70000)],
    "backing name": [(8, ">Q", 0x200), (16, ">I", 2000)],
    "extension too large": [(0x74, ">I", 0xFFFF)],
}


def _first_line(args, cwd) -> str:
    r = subprocess.run(args, capture_output=True, text=True, cwd=cwd)
    lines = (r.stdout + r.stderr).strip().splitlines()
    return lines[0] if lines else ""


@pytest.mark.parametrize("read_only", [True, False], ids=["ro", "rw"])
@pytest.mark.parametrize("name", list(PATCHES))
def test_open_errors_match_qemu(tmp_path, name, read_only):
    img = tmp_path / "p.qcow2"
    subprocess.run(["qemu-img", "create", "-f", "qcow2", str(img), "1M"], check=True,
                   capture_output=True)
    data = bytearray(img.read_bytes())
    for off, fmt, val in PATCHES[name]:
        struct.pack_into(fmt, data, off, val)
    img.write_bytes(data)
    expect = _first_line(["qemu-io", "-f", "qcow2"] + (["-r"] if read_only else []) +
                         ["-c", "read 0 512", "p.qcow2"], tmp_path)
    prefix = "qemu-io: can't open device p.qcow2: "
    try:
        close_image(open_image(str(img), "qcow2", read_only=read_only))
    except BlockError as e:
        assert expect == prefix + e.message
    else:
        assert not expect.startswith(prefix)


def _corrupt_extended_entry(tmp_path):
    img = tmp_path / "c.qcow2"
    subprocess.run("qemu-img create -f qcow2 -o extended_l2=on c.qcow2 1M && "
                   "qemu-io -c 'write -P 0x11 0 4k' c.qcow2", shell=True, check=True,
                   capture_output=True, cwd=tmp_path)
    data = bytearray(img.read_bytes())
    struct.pack_into(">Q", data, 0x40008, 0x0000000300000003)  # alloc and zero bits
    img.write_bytes(data)
    shutil.copy(img, tmp_path / "q.qcow2")
    return img


def test_invalid_entry_marks_image_corrupt(tmp_path):
    img = _corrupt_extended_entry(tmp_path)
    qemu = subprocess.run(["qemu-io", "-c", "read 0 4k", "-c", "read 0 4k", "-c", "write 0 4k",
                           "q.qcow2"], capture_output=True, text=True, cwd=tmp_path)
    errors = []
    old, sys.stderr = sys.stderr, pyio.StringIO()
    try:
        node = open_image(str(img), "qcow2", unmap=True)
        for op in (lambda: io.pread(node, 0, 4096), lambda: io.pread(node, 0, 4096),
                   lambda: io.pwrite(node, 0, bytes(4096))):
            try:
                op()
            except BlockError as e:
                errors.append(e.message)
        close_image(node)
        printed = sys.stderr.getvalue()
    finally:
        sys.stderr = old
    assert printed == qemu.stderr
    assert errors == ["Input/output error", "No medium found", "No medium found"]
    assert same_image(str(img), str(tmp_path / "q.qcow2"))
    with pytest.raises(BlockError) as err:
        open_image(str(img), "qcow2")
    assert err.value.message == "qcow2: Image is corrupt; cannot be opened read/write"


def test_unknown_extensions_kept_on_header_rewrite(tmp_path):
    """QEMU keeps unknown header extensions, in reverse order, when it rewrites the header."""
    img = tmp_path / "u.qcow2"
    subprocess.run(["qemu-img", "create", "-f", "qcow2", str(img), "1M"], check=True,
                   capture_output=True)
    data = bytearray(img.read_bytes())
    exts = struct.pack(">II", 0x12345678, 3) + b"abc\0\0\0\0\0" + \
        struct.pack(">II", 0x87654321, 8) + b"12345678" + bytes(8)
    data[0x70:0x70 + len(exts)] = exts
    img.write_bytes(data)
    shutil.copy(img, tmp_path / "q.qcow2")
    subprocess.run(["qemu-img", "rebase", "-u", "-f", "qcow2", "-b", "base.raw", "-F", "raw",
                    "q.qcow2"], check=True, capture_output=True, cwd=tmp_path)
    node = open_image(str(img), "qcow2", no_backing=True)
    node.change_backing_file("base.raw", "raw")
    close_image(node)
    assert same_image(str(img), str(tmp_path / "q.qcow2"))


@pytest.mark.parametrize("target", [0x30000, 0x10000, 0x20000, 0x40000, 0])
def test_write_onto_metadata_is_prevented(tmp_path, target):
    """An L2 entry pointing at metadata: the write is refused with QEMU's message,
    the image is marked corrupt, and nothing else reaches the file."""
    img = tmp_path / "o.qcow2"
    subprocess.run("qemu-img create -f qcow2 o.qcow2 1M && qemu-io -c 'write -P 1 0 4k' o.qcow2",
                   shell=True, check=True, capture_output=True, cwd=tmp_path)
    data = bytearray(img.read_bytes())
    struct.pack_into(">Q", data, 0x40000, (1 << 63) | target)
    img.write_bytes(data)
    shutil.copy(img, tmp_path / "q.qcow2")
    qemu = subprocess.run(["qemu-io", "-c", "write -P 2 0 4k", "-c", "write -P 3 64k 4k",
                           "q.qcow2"], capture_output=True, text=True, cwd=tmp_path)
    old, sys.stderr = sys.stderr, pyio.StringIO()
    errors = []
    try:
        node = open_image(str(img), "qcow2", unmap=True)
        for off in (0, 65536):
            try:
                io.pwrite(node, off, bytes([2 if off == 0 else 3]) * 4096)
            except BlockError as e:
                errors.append(e.message)
        close_image(node)
        printed = sys.stderr.getvalue()
    finally:
        sys.stderr = old
    assert printed == qemu.stderr
    assert [f"write failed: {e}" for e in errors] == \
        [line for line in qemu.stdout.splitlines() if line.startswith("write failed")]
    assert same_image(str(img), str(tmp_path / "q.qcow2"))


def test_bitmaps_without_autoclear_bit_are_dropped(tmp_path):
    """A bitmaps extension whose autoclear bit an old program cleared: QEMU's
    warning, and the extension is dropped from the header on a read-write open."""
    img = tmp_path / "b.qcow2"
    subprocess.run("qemu-img create -f qcow2 b.qcow2 1M && qemu-img bitmap --add b.qcow2 b0",
                   shell=True, check=True, capture_output=True, cwd=tmp_path)
    data = bytearray(img.read_bytes())
    struct.pack_into(">Q", data, 88, struct.unpack_from(">Q", data, 88)[0] & ~1)
    img.write_bytes(data)
    shutil.copy(img, tmp_path / "q.qcow2")
    qemu = subprocess.run(["qemu-io", "-c", "write -q -P 1 0 4k", "q.qcow2"],
                          capture_output=True, text=True, cwd=tmp_path)
    from emulator import report
    old_err, old_prog = sys.stderr, report.prog_name
    sys.stderr, report.prog_name = pyio.StringIO(), "qemu-io"
    try:
        node = open_image(str(img), "qcow2", unmap=True)
        io.pwrite(node, 0, b"\1" * 4096)
        close_image(node)
        printed = sys.stderr.getvalue()
    finally:
        sys.stderr, report.prog_name = old_err, old_prog
    assert printed == qemu.stderr
    assert same_image(str(img), str(tmp_path / "q.qcow2"))
