"""The host file node (file-posix): zero writes, punch holes, block status and
creation leave the same bytes, size and data extents as QEMU."""
from __future__ import annotations

import json
import os
import subprocess

import pytest

from emulator.block.file import FileNode
from emulator.block.node import BDRV_BLOCK_DATA, BDRV_BLOCK_ZERO
from emulator.block.open import close_image, open_image
from tests.qcow2_support import emulator_command, qemu_io_command, requires_qemu, same_image
from tests.test_qcow2_io import _extents

pytestmark = requires_qemu


@pytest.mark.parametrize("commands", [
    ["w 0x11 0 1M", "z 64k 64k"],
    ["w 0x11 0 1M", "zu 64k 64k"],
    ["w 0x11 0 1M", "zu 1000 5000"],
    ["w 0x11 0 1M", "d 128k 256k"],
    ["w 0x11 100k 1", "zu 0 1M"],
], ids=lambda c: "; ".join(c))
def test_raw_file_operations_match_qemu(tmp_path, commands):
    for name in ("q.raw", "e.raw"):
        subprocess.run(["qemu-img", "create", "-f", "raw", name, "1M"], check=True,
                       capture_output=True, cwd=tmp_path)
    args = ["qemu-io", "-f", "raw"]
    for cmd in commands:
        args += ["-c", qemu_io_command(cmd)]
    subprocess.run(args + ["q.raw"], check=True, capture_output=True, cwd=tmp_path)
    node = open_image(str(tmp_path / "e.raw"), "raw", unmap=True)
    for cmd in commands:
        emulator_command(node, cmd)
    close_image(node)
    assert same_image(str(tmp_path / "q.raw"), str(tmp_path / "e.raw"))
    assert _extents(tmp_path / "q.raw") == _extents(tmp_path / "e.raw")


@pytest.mark.parametrize("prealloc", ["off", "falloc", "full"])
def test_create_matches_qemu_img(tmp_path, prealloc):
    subprocess.run(["qemu-img", "create", "-f", "raw", "-o", f"preallocation={prealloc}",
                    "q.raw", "3M"], check=True, capture_output=True, cwd=tmp_path)
    FileNode.create(str(tmp_path / "e.raw"), 3 << 20, prealloc)
    assert same_image(str(tmp_path / "q.raw"), str(tmp_path / "e.raw"))
    assert _extents(tmp_path / "q.raw") == _extents(tmp_path / "e.raw")


def test_block_status_follows_holes(tmp_path):
    """The extents qemu-img map reports for a fresh file match the file node's status."""
    path = str(tmp_path / "f.raw")
    FileNode.create(path, 1 << 20)
    out = subprocess.run(["qemu-img", "map", "--output=json", "-f", "raw", path],
                         check=True, capture_output=True, text=True).stdout
    node = FileNode(path)
    for entry in json.loads(out):
        st = node.drv_block_status(True, entry["start"], entry["length"])
        assert st.pnum == entry["length"]
        assert bool(st.flags & BDRV_BLOCK_DATA) == entry["data"]
        assert bool(st.flags & BDRV_BLOCK_ZERO) == entry["zero"]
    node.drv_close()


def test_open_missing_file_message(tmp_path):
    with pytest.raises(Exception) as err:
        FileNode(str(tmp_path / "nope"))
    assert err.value.message == f"Could not open '{tmp_path / 'nope'}': No such file or directory"
    assert not os.path.exists(tmp_path / "nope")
    r = subprocess.run(["qemu-io", "-f", "raw", "-c", "read 0 1", str(tmp_path / "nope")],
                       capture_output=True, text=True)
    assert err.value.message in r.stderr
