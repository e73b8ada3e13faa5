"""aio requests held at blkdebug breakpoints against qemu-io 7.2.

Requests waiting for an allocation held at a breakpoint (subcluster granularity
with extended L2 entries, qemu-iotests 271), requests that do not wait, and
the random blkdebug sequences of tools/difftest/generate_aio.py.
"""
from __future__ import annotations

import subprocess

import pytest

from tests.cli_support import QEMU, differential, needs_qemu, qemu_setup, run_ours

pytestmark = needs_qemu


def image(opts: str, size: str = "1M", *io: list):
    return qemu_setup(["img", "create", "-q", "-f", "qcow2", "-o", opts, "t.qcow2", size], *io)


def c(*cmds: str) -> list:
    out = []
    for cmd in cmds:
        out += ["-c", cmd]
    return out


def test_271_concurrent_requests(tmp_path):
    """qemu-iotests 271 'concurrent requests': the two later writes wait for the
    first; QEMU completes them in either order, so their lines are compared as a set."""
    script = ("open -o driver=qcow2 blkdebug::t.qcow2\nbreak write_aio A\n"
              "aio_write -P 10 30k 2k\nwait_break A\naio_write -P 11 20k 2k\n"
              "aio_write -P 12 40k 2k\nresume A\naio_flush\n")
    outs = []
    for side in ("qemu", "ours"):
        d = tmp_path / side
        d.mkdir()
        image("extended_l2=on")(d)
        if side == "qemu":
            p = subprocess.run([QEMU["io"]], input=script, cwd=d, capture_output=True,
                               text=True)
            out = p.stdout + p.stderr
        else:
            out, _ = run_ours("io", [], d, stdin=script)
        lines = [ln for ln in out.replace("qemu-io> ", "").splitlines() if "ops/sec" not in ln]
        outs.append((lines[:3], sorted(lines[3:]), (d / "t.qcow2").read_bytes()))
    assert outs[0][0] == ["blkdebug: Suspended request 'A'", "blkdebug: Resuming request 'A'",
                          "wrote 2048/2048 bytes at offset 30720"]
    assert outs[1] == outs[0]


HELD = [
    # A allocates a new cluster; requests in the same cluster wait for it
    ("extended_l2=on", c("break write_aio A", "aio_write -P 1 30k 2k", "wait_break A",
                         "aio_write -q -P 2 20k 2k", "resume A", "aio_flush",
                         "read -P 1 30k 2k", "read -P 2 20k 2k")),
    # without subclusters too, and a zero write and a read while A is held
    ("cluster_size=4096", c("break write_aio A", "aio_write -P 1 4608 512", "wait_break A",
                            "aio_write -q -z 4096 512", "aio_read -q 4096 4k",
                            "write -q -P 3 64k 4k", "resume A", "aio_flush",
                            "read -P 1 4608 512", "read -P 0 4096 512", "read -P 3 64k 4k")),
    # a request in another cluster does not wait
    ("extended_l2=on,cluster_size=16384", c("break write_aio A", "aio_write -P 5 0 1k",
                                            "wait_break A", "aio_write -q -P 6 32k 1k",
                                            "resume A", "aio_flush", "read -P 5 0 1k",
                                            "read -P 6 32k 1k")),
    # overwriting an allocated cluster in place (subcluster allocation keeps it)
    ("extended_l2=on", c("write -q -P 9 0 64k", "discard 0 64k", "write -q -P 8 0 2k",
                         "break write_aio A", "aio_write -P 1 4k 2k", "wait_break A",
                         "aio_write -q -P 2 8k 2k", "aio_write -q -P 3 4k 1k", "resume A",
                         "aio_flush", "read -P 3 4k 1k", "read -P 2 8k 2k", "map")),
    # other breakpoints, resume of an unknown tag, remove_break releasing a request
    ("cluster_size=65536", c("break pwritev A", "aio_write -P 1 0 4k", "wait_break A",
                             "resume B", "remove_break A", "aio_flush", "read -P 1 0 4k")),
    ("cluster_size=65536", c("break flush_to_os A", "aio_write -P 1 0 4k", "wait_break A",
                             "resume A", "aio_flush", "break pwritev_done B",
                             "aio_write -q -z 64k 4k", "wait_break B", "resume B", "aio_flush")),
]


@pytest.mark.parametrize("opts,cmds", HELD, ids=range(len(HELD)))
def test_held_requests(tmp_path, opts, cmds):
    differential(tmp_path, image(opts), "io", ["-f", "qcow2"] + cmds + ["blkdebug::t.qcow2"])


def test_aio_error_injection(tmp_path):
    """An aio request failing by an injected error completes with QEMU's message."""
    opts = ("driver=qcow2,file.driver=blkdebug,file.image.filename=t.qcow2,"
            "file.inject-error.0.event=write_aio,file.inject-error.0.errno=28,"
            "file.inject-error.0.once=on")
    differential(tmp_path, image("cluster_size=4096"), "io",
                 ["--image-opts"] + c("aio_write -P 1 0 4k", "aio_flush", "aio_write -P 2 8k 4k",
                                      "aio_flush", "aio_read -P 2 8k 4k", "aio_flush") + [opts])


@pytest.mark.parametrize("seed", range(0, 30))
def test_random_blkdebug_sequences(tmp_path, seed):
    """tools/difftest's blkdebug generator: identical outputs and image bytes."""
    from tools.difftest.choices import RandomChooser
    from tools.difftest.compare import differential as run_both
    from tools.difftest.generate_aio import aio_sequence
    from tools.difftest.runners import InProcessRunner, qemu_runner
    seq = aio_sequence(RandomChooser(seed), f"seed {seed}")
    out = run_both(seq, qemu_runner(), InProcessRunner(), tmp_path, False, True)
    assert out.ok, out.report()
