"""Image locking between processes, against real QEMU 7.2.

An interactive qemu-io session (the holder, possibly after a reopen) keeps an
image open while a second tool (the contender: qemu-img info/check/commit/map,
qemu-io write or read, -U, -r) runs on the same image or its backing file.
The four pairings of implementations, QEMU holder with QEMU contender (the
reference), qcowlab with qcowlab, and the two mixed ones, must give the
contender the same output and exit status (QEMU's 'Failed to get "write"
lock' / 'Is another process using the image [...]?' or success), the holder
the same answers, and the images the same bytes: both implementations take
the same OFD locks on the same bytes of the image file.
"""
from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.cli_support import make_qemu_images, mask_timing, needs_qemu, tree_files
from tools.difftest.filters import mask_random_names

pexpect = pytest.importorskip("pexpect")

SETUP = [
    "qemu-img create -q -f qcow2 base.qcow2 1M",
    "qemu-io -c 'write -P 0x5a 0 64k' base.qcow2",
    "qemu-img create -q -f qcow2 -b base.qcow2 -F qcow2 img.qcow2 1M",
    "qemu-img create -q -f raw r.raw 1M",
]
#: (holder's qemu-io options and commands run before the contender, contender)
CASES = [
    ("img.qcow2", "qemu-img info img.qcow2"),
    ("img.qcow2", "qemu-img info -U img.qcow2"),
    ("img.qcow2", "qemu-img check img.qcow2"),
    ("img.qcow2", "qemu-io -c 'write 0 512' img.qcow2"),
    ("img.qcow2", "qemu-io -U -r -c 'read 0 512' img.qcow2"),
    ("img.qcow2", "qemu-io -c 'write 0 512' base.qcow2"),
    ("img.qcow2", "qemu-img info base.qcow2"),
    ("-r img.qcow2", "qemu-img commit img.qcow2"),
    ("-r img.qcow2", "qemu-img info img.qcow2"),
    ("-r img.qcow2", "qemu-io -r -c 'read 0 512' img.qcow2"),
    ("-r img.qcow2", "qemu-img resize img.qcow2 2M"),
    ("-U -r img.qcow2", "qemu-img commit img.qcow2"),
    ("-U -r img.qcow2", "qemu-io -c 'write -P 7 0 4k' img.qcow2"),
    ("-f raw r.raw", "qemu-io -f raw -c 'write 0 512' r.raw"),
    ("-f raw r.raw", "qemu-img info -U r.raw"),
    ("img.qcow2 | reopen -r", "qemu-img info img.qcow2"),
    ("img.qcow2 | reopen -r", "qemu-io -c 'write 0 512' img.qcow2"),
    ("-r img.qcow2 | reopen -w", "qemu-img info img.qcow2"),
    ("img.qcow2 | reopen -r | reopen -w | write 0 4k", "qemu-img check img.qcow2"),
    ("img.qcow2 | reopen -o file.read-only=on", "qemu-img info img.qcow2"),
]

pytestmark = needs_qemu


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("image-locking-images")
    return make_qemu_images(d, SETUP)


def _answer(before: str) -> str:
    """A holder command's output without the echo of the command line (QEMU's
    readline redraws it with escape sequences)."""
    lines = before.replace("\r", "").split("\n")[1:]
    return mask_random_names(mask_timing("\n".join(lines)))


def _run(holder_tool: str, contender_tool: str, holder: str, contender: str,
         cwd: Path) -> tuple[list[str], str, int]:
    """The holder's answers, the contender's combined output and exit status."""
    args, *commands = [part.strip() for part in holder.split("|")]
    prog = "qcowlab-io" if holder_tool == "ours" else "qemu-io"
    session = pexpect.spawn(prog, shlex.split(args), cwd=str(cwd), encoding="utf-8",
                            timeout=60)
    answers = []
    try:
        session.expect_exact("qemu-io> ")
        for command in [*commands, "length"]:
            session.sendline(command)
            session.expect_exact("qemu-io> ")
            answers.append(_answer(session.before))
        words = shlex.split(contender)
        if contender_tool == "ours":
            words[0] = words[0].replace("qemu-", "qcowlab-")
        proc = subprocess.run(words, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, timeout=60)
        session.sendline("quit")
        session.expect(pexpect.EOF)
    finally:
        session.close(force=True)
    return answers, mask_timing(proc.stdout.decode("utf-8", "replace")), proc.returncode


@pytest.mark.parametrize("holder,contender", CASES)
def test_lock_between_processes(holder: str, contender: str, images: Path,
                                tmp_path: Path) -> None:
    results = {}
    for pair in (("qemu", "qemu"), ("ours", "ours"), ("ours", "qemu"), ("qemu", "ours")):
        d = tmp_path / "-".join(pair)
        shutil.copytree(images, d)
        results[pair] = (*_run(*pair, holder, contender, d), tree_files(d))
    reference = results[("qemu", "qemu")]
    for pair, result in results.items():
        assert result[:3] == reference[:3], f"{pair}: {result[:3]} != {reference[:3]}"
        assert result[3] == reference[3], f"{pair}: the images differ"
