"""aio requests in flight together and held at blkdebug breakpoints against qemu-io 7.2.

Requests waiting for an allocation held at a breakpoint (subcluster granularity
with extended L2 entries, qemu-iotests 271), requests that do not wait,
requests interleaving at their host I/O and at the qcow2 lock
(emulator/block/aio_context.py), qemu-img bench with several requests in
flight, and the random blkdebug sequences of tools/difftest/generate_aio.py.
Only sequences QEMU answers the same way run after run are compared (each
was run at least five times against QEMU).
"""
from __future__ import annotations

import subprocess

import pytest

from tests.cli_support import QEMU, differential, needs_qemu, qemu_setup, run_ours, run_qemu

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


BD = "driver=qcow2,file.driver=blkdebug,file.image.filename=t.qcow2"

INTERLEAVED = [
    # B1: the first write fails after its data write yielded; the second one
    # allocated meanwhile, next to the first one's cluster (QEMU: 8k -> 0x6000)
    ("cluster_size=4096", [], ["--image-opts"] + c(
        "aio_write -P 1 0 4k", "aio_write -P 2 8k 4k", "aio_flush", "map") + [
        f"{BD},file.inject-error.0.event=write_aio,file.inject-error.0.errno=28,"
        "file.inject-error.0.once=on"]),
    # B8: a failing task of a write of several chunks (no immediately): the
    # write goes on allocating; another write in flight
    ("cluster_size=4096", [["io", "-f", "qcow2", "-c", "write -P 9 4k 4k", "t.qcow2"]],
     ["--image-opts"] + c("aio_write -P 1 0 16k", "aio_write -q -P 2 32k 8k", "aio_flush",
                          "map") + [
        f"{BD},file.inject-error.0.event=write_aio,file.inject-error.0.errno=22,"
        "file.inject-error.0.once=on"]),
    ("cluster_size=4096", [["io", "-f", "qcow2", "-c", "write -P 9 4k 4k", "t.qcow2"]],
     ["--image-opts"] + c("write -P 1 0 16k", "map", "truncate 512k") + [
        f"{BD},file.inject-error.0.event=write_aio,file.inject-error.0.errno=22,"
        "file.inject-error.1.event=refblock_load,file.inject-error.1.iotype=read"]),
    # B2: A held at cluster_alloc keeps the qcow2 lock; the others wait for it
    ("cluster_size=4096", [], ["-f", "qcow2"] + c(
        "break cluster_alloc A", "aio_write -P 1 4k 4k", "wait_break A",
        "aio_write -q -P 2 8k 4k", "aio_write -q -P 3 6k 1k", "resume A", "aio_flush",
        "read -P 1 4k 2k", "read -P 3 6k 1k", "map") + ["blkdebug::t.qcow2"]),
    ("cluster_size=4096", [], ["-f", "qcow2"] + c(
        "break l2_update A", "aio_write -P 1 4k 4k", "wait_break A",
        "aio_write -q -P 2 64k 4k", "aio_read -q 0 8k", "resume A", "aio_flush",
        "map") + ["blkdebug::t.qcow2"]),
    # a request completing without yielding is printed by the next poll: only
    # synchronous requests that do host I/O poll
    ("cluster_size=4096", [], ["-f", "qcow2"] + c(
        "write -q 0 4k", "aio_read 64k 4k", "read -q 128k 4k", "length", "write -q 8k 4k",
        "aio_read 64k 4k", "length", "write -q 0 4k", "aio_read 64k 4k", "read -q 0 4k",
        "length") + ["t.qcow2"]),
    # a request reading while another one allocates under the lock
    ("cluster_size=4096", [], ["-f", "qcow2"] + c(
        "aio_write -P 1 0 4k", "aio_read 64k 4k", "aio_flush") + ["t.qcow2"]),
    # the FUA flushes of three writes in flight wait for each other (flush_queue):
    # the newest one's flush fails and completes first, then the others in order
    ("cluster_size=4096", [["io", "-f", "qcow2", "-c", "write -P 7 0 64k", "t.qcow2"]],
     ["--image-opts"] + c("aio_write -P 1 0 4k", "aio_write -P 2 8k 4k", "aio_write -P 3 16k 4k",
                          "aio_flush") + [
        f"{BD},file.inject-error.0.event=flush_to_os,file.inject-error.0.errno=5,"
        "file.inject-error.0.once=on,file.inject-error.0.iotype=flush"]),
    # a synchronous read waits for the lock an aio read holds while loading
    # the L2 table; the aio read's data read, submitted first, completes first
    ("cluster_size=4096", [["io", "-f", "qcow2", "-c", "write -P 7 0 64k", "t.qcow2"]],
     ["-f", "qcow2"] + c("aio_read -P 7 0 4k", "aio_read -i 0 1", "read -P 7 8k 4k",
                         "aio_flush") + ["t.qcow2"]),
    # B12: a compressed write compresses in the thread pool (a yield) and
    # allocates under the qcow2 lock, after the aio writes in flight
    ("cluster_size=4096", [], ["-f", "qcow2"] + c(
        "aio_write -q -P 2 64k 4k", "aio_write -q -P 3 128k 8k", "write -q -c -P 1 0 4k",
        "aio_write -q -P 4 256k 4k", "write -q -c -P 1 8k 4k", "aio_flush", "map") +
     ["t.qcow2"]),
    # B12: decompression is a thread-pool job too, started under the qcow2 lock
    ("cluster_size=4096", [["io", "-f", "qcow2", "-c", "write -c -P 1 0 4k", "-c",
                            "write -c -P 2 8k 4k", "t.qcow2"]],
     ["-f", "qcow2"] + c("aio_write -q -P 5 128k 4k", "read -q -P 1 0 4k",
                         "aio_write -q -P 6 192k 4k", "aio_read -q -P 2 8k 4k",
                         "aio_write -q -P 7 320k 4k", "aio_flush", "map") + ["t.qcow2"]),
]


@pytest.mark.parametrize("opts,setup,args", INTERLEAVED, ids=range(len(INTERLEAVED)))
def test_interleaved_requests(tmp_path, opts, setup, args):
    differential(tmp_path, image(opts, "1M", *setup), "io", args)


def test_metadata_errors_in_multi_cluster_write(tmp_path):
    """B9 (blkdebug seed 1026 of 13:58): refblock_load and l2_update errors inside
    a write of many clusters; QEMU fails with ENOSPC and leaks 126 clusters."""
    def setup(d):
        for cmd in (["img", "create", "-q", "-f", "qcow2", "-o",
                     "cluster_size=1024,refcount_bits=32", "base.qcow2", "133120"],
                    ["io", "-f", "qcow2", "-c", "write -P 0xe2 0 1536", "-c",
                     "write -P 0x65 101888 2048", "base.qcow2"],
                    ["img", "create", "-q", "-f", "qcow2", "-o",
                     "cluster_size=1024,refcount_bits=1,lazy_refcounts=on", "-b",
                     "base.qcow2", "-F", "qcow2", "t.qcow2", "133120"],
                    ["io", "-f", "qcow2", "-c", "write -P 0x3b 74k 1668", "t.qcow2"]):
            qemu_setup(cmd)(d)
    differential(tmp_path, setup, "io", ["--image-opts"] + c(
        "write -P 0xcb 0 133120", "alloc 0 1k", "read -P 0xcb 85k 1024") + [
        f"{BD},file.inject-error.0.event=refblock_load,file.inject-error.0.errno=1,"
        "file.inject-error.0.once=on,file.inject-error.1.event=l2_update,"
        "file.inject-error.1.errno=28,file.inject-error.1.once=off"])


def test_bench_requests_in_flight(tmp_path):
    """D22: qemu-img bench -w with 64 requests in flight on a 1k-cluster image:
    the second request allocates its clusters while the first one's data task
    for cluster 0 is in flight (QEMU: 2048 -> 11264, 4096 -> 7168)."""
    import re
    args = ["bench", "-c", "15", "-s", "4096", "-o", "0", "-w", "--pattern", "169", "-f",
            "qcow2", "t.qcow2"]
    outs = []
    for side, run in (("qemu", run_qemu), ("ours", run_ours)):
        d = tmp_path / side
        d.mkdir()
        image("cluster_size=1024", "8k",
              ["io", "-f", "qcow2", "-c", "write -P 0x26 1024 1024", "t.qcow2"])(d)
        out, rc = run("img", args, d)
        outs.append((re.sub(r"Run completed in \S+ seconds", "", out), rc,
                     (d / "t.qcow2").read_bytes()))
    assert outs[1] == outs[0]


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
