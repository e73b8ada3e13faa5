"""qemu-io's reopen and the names of automatically named nodes, against real QEMU 7.2.

Each line runs qemu-io and qcowlab-io on copies of the same images: combined
output, exit status and every resulting file must be identical. QEMU names
unnamed nodes '#block' + a per-process counter + two random digits, and a -s
overlay lives in a randomly named temporary file: the random parts are masked,
the counter is compared. Covered: reopen -o read-only=on while qemu-io holds
the write permission (which node the message names, after close/open, -s,
backing files, blkdebug, null-co, raw), file.read-only / backing.read-only
kept across reopens, copy-on-read, the compress filter (no reopen support),
the -s overlay whose deleted file QEMU opens again by name, and null-co file
names.
"""
from __future__ import annotations

import shlex
import shutil
from pathlib import Path

import pytest

from tests.cli_support import assert_same_output, make_qemu_images, needs_qemu, run_ours, \
    run_qemu, tree_files
from tools.difftest.filters import mask_random_names

SETUP = [
    "qemu-img create -q -f qcow2 b.qcow2 1M",
    "qemu-img create -q -f qcow2 -b b.qcow2 -F qcow2 a.qcow2 1M",
    "qemu-img create -q -f qcow2 c.qcow2 1M",
    "qemu-img create -q -f raw r.raw 1M",
    "qemu-img create -q -f qcow2 -o lazy_refcounts=on l.qcow2 1M",
    "qemu-img create -q -f qcow2 -o data_file=d.raw dimg.qcow2 1M",
]
_COMPRESS = '\'json:{"driver":"compress","file":{"driver":"qcow2","file":{"filename":"c.qcow2"}}}\''
_BLKDEBUG = "--image-opts driver=qcow2,file.driver=blkdebug,file.image.filename=a.qcow2"
LINES = [
    "-c 'reopen -o read-only=on' c.qcow2",
    "-c 'reopen -o read-only=on' -c close -c 'open a.qcow2' -c 'reopen -o read-only=on' a.qcow2",
    "-c 'reopen -o read-only=on' -c close -c 'open -s c.qcow2' -c 'reopen -o read-only=on' "
    "-c close -c 'open -o driver=qcow2,node-name=foo c.qcow2' -c 'reopen -o read-only=on' "
    "-c close -c 'open -o driver=qcow2 c.qcow2' -c 'reopen -o read-only=on' a.qcow2",
    "-c close -c 'open missing.qcow2' -c 'open -o driver=qcow2 r.raw' "
    "-c 'open -o driver=qcow2,lazy-refcounts=maybe c.qcow2' "
    "-c 'open -o driver=qcow2,backing.bogus=1 a.qcow2' -c 'open -o node-name=1bad c.qcow2' "
    "-c 'open c.qcow2' -c 'reopen -o read-only=on' a.qcow2",
    "-s -c 'reopen -o read-only=on' a.qcow2",
    "-c 'reopen -o file.read-only=on' -f raw r.raw",
    "-C -c 'reopen -o file.read-only=on' a.qcow2",
    "-C -c 'reopen -r' -c 'read 0 512' a.qcow2",
    f"-c 'reopen -o read-only=on' {_BLKDEBUG}",
    f"-c 'reopen -o file.read-only=on' {_BLKDEBUG}",
    f"-c 'reopen -o file.image.read-only=on' {_BLKDEBUG}",
    "-c 'reopen -o read-only=on' blkdebug::c.qcow2",
    "-c 'reopen -o read-only=on' 'json:{\"driver\":\"null-co\"}'",
    "-c 'reopen -r -o file.read-only=off' -c 'write 0 512' -c 'reopen -o file.read-only=on' "
    "-c 'reopen -w' a.qcow2",
    "-r -c 'reopen -o read-only=off' -c 'reopen -o file.read-only=on' "
    "-c 'reopen -w -o file.read-only=on' a.qcow2",
    "-c 'reopen -o backing.read-only=off' -c 'write 0 512' -c 'reopen -r' a.qcow2",
    "-c 'reopen -r' -c 'reopen -w' -c 'write 0 512' -c 'reopen -o read-only=on' c.qcow2",
    "-c 'reopen -r' -c 'reopen -w' -c 'reopen -o read-only=on' c.qcow2",
    "-c 'write 0 512' -c 'reopen -o read-only=on' -c 'write 4k 512' l.qcow2",
    f"-c 'reopen -o read-only=on' {_COMPRESS}",
    f"-c 'reopen -r' {_COMPRESS}",
    f"-c reopen -c 'read 0 64k' {_COMPRESS}",
    # the -s overlay: its file is opened again by name once its flags change
    "-s -c reopen -c 'reopen -o lazy-refcounts=on' -c 'reopen -c none' -c 'reopen -w' "
    "-c 'reopen -r' -c 'write 0 512' c.qcow2",
    "-s -c reopen -c 'reopen -r' c.qcow2",
    "-s -c 'reopen -r' -c 'write 0 512' c.qcow2",
    "-s -r -c 'reopen -w' -c 'write 0 512' c.qcow2",
    "-s -c reopen -c 'reopen -r' -c 'reopen -w' -c 'reopen -w' c.qcow2",
    "-c reopen -c reopen -c 'reopen -r' -c 'reopen -w' -c 'write 0 512' c.qcow2",
    # an external data file is reopened after the backing chain, checked before it
    "-c 'reopen -o data-file.read-only=on' dimg.qcow2",
    "-c 'reopen -r -o data-file.read-only=on' -c 'reopen -w' -c 'write 0 4k' dimg.qcow2",
    "-c 'reopen -o data-file.read-only=on,file.read-only=on' dimg.qcow2",
    "-c 'reopen -o backing.read-only=off,backing.file.read-only=on' "
    "-c 'reopen -o file.read-only=on,backing.read-only=off,backing.file.read-only=on' "
    "a.qcow2",
    # a read-only option overrides -r; a child's inherited one is not its own
    "-r -c 'write 0 512' --image-opts driver=qcow2,file.filename=c.qcow2,read-only=off",
    "-r -U -c 'read 0 512' --image-opts driver=qcow2,file.filename=c.qcow2,read-only=off",
    "-c close -c 'open -r -o driver=qcow2,read-only=off c.qcow2' -c 'write 0 512' "
    "-c 'reopen -o read-only=on' a.qcow2",
    "-r -c 'reopen -w' -c 'write 0 512' --image-opts "
    "driver=qcow2,file.filename=c.qcow2,read-only=on",
    "-r -c 'reopen -w' -c 'write 0 512' --image-opts "
    "driver=qcow2,file.filename=c.qcow2,file.read-only=on",
    # null-co file names
    "-c 'read -v 0 16' null-co://",
    "-f null-co -c 'read -v 0 16' null-co://x",
    "-c close -c 'open -o driver=qcow2,file.driver=null-co,file.size=1M x' -c 'open c.qcow2' "
    "-c 'reopen -o read-only=on' a.qcow2",
]

pytestmark = needs_qemu


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("block-reopen-images")
    return make_qemu_images(d, SETUP)


@pytest.mark.parametrize("line", LINES)
def test_reopen(line: str, images: Path, tmp_path: Path) -> None:
    args = shlex.split(line)
    dirs = tmp_path / "qemu", tmp_path / "ours"
    for d in dirs:
        shutil.copytree(images, d)
    q_out, q_rc = run_qemu("io", args, dirs[0])
    p_out, p_rc = run_ours("io", args, dirs[1])
    assert_same_output(mask_random_names(p_out), mask_random_names(q_out))
    assert p_rc == q_rc
    assert tree_files(dirs[1]) == tree_files(dirs[0])
