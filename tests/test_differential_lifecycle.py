"""Differential tests of the qemu-img lifecycle commands against real QEMU 7.2.

Seeded random sequences (tools/difftest/generate_lifecycle.py) mix snapshot
-c/-l/-a/-d, resize, amend, measure, convert, commit, rebase, dd, bench,
check, info and map with qemu-io writes, on images with extended L2 entries on
and off, backing chains and external data files.  Outputs (timing and snapshot
dates filtered), exit codes, every file left behind (snapshot dates masked)
and its sparseness must match, and real ``qemu-img check`` must find every
emulator-written qcow2 image clean.  Knobs (environment):

- QCOWLAB_LIFECYCLE_SEEDS=A:B  seeds (default 0:100)
- QCOWLAB_DIFF_SUT=fork|inproc|scripts|qemu  as in tests/test_differential.py

A failure prints the sequence as a shell script; ``python -m tools.difftest
--lifecycle --seeds S:S+1 --shrink`` shrinks it to a minimal reproducer.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.test_differential import REF, SUT
from tools.difftest.choices import RandomChooser
from tools.difftest.compare import data_extents, differential
from tools.difftest.generate_lifecycle import lifecycle_sequence

SCRATCH = Path(os.environ.get("DIFFTEST_DIR", "/tmp/difftest"))
_lo, _hi = (int(x) for x in os.environ.get("QCOWLAB_LIFECYCLE_SEEDS", "0:100").split(":"))

pytestmark = [
    pytest.mark.skipif(not REF.available(), reason="qemu-img/qemu-io (QEMU 7.2) not on PATH"),
    pytest.mark.skipif(not SUT.available(), reason=f"system under test '{SUT.name}' missing"),
]


#: seeds outside the default range that found divergences (docs/divergences.md): 657 and 765
#: (D31: `-t none` writes must bypass the page cache), 5080 (D32: compressed bytes across a
#: refcount block boundary)
REGRESSION_SEEDS = [657, 765, 5080]


@pytest.mark.parametrize("seed", [*range(_lo, _hi), *(s for s in REGRESSION_SEEDS
                                                       if not _lo <= s < _hi)])
def test_lifecycle_sequence(seed: int) -> None:
    seq = lifecycle_sequence(RandomChooser(seed), f"lifecycle seed {seed}")
    out = differential(seq, REF, SUT, SCRATCH / f"lifecycle-{os.getpid()}-{seed}")
    assert out.ok, out.report()


def _evict(workdir: Path) -> None:
    """Write back and drop the page cache of every file in ``workdir``."""
    for p in workdir.iterdir():
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


@pytest.mark.parametrize("cmd", [["map", "--output=json"], ["convert", "-O", "raw"]])
def test_cold_cache_reads_like_qemu(cmd: list[str]) -> None:
    """D31: ext4 reports an unwritten extent as data once pages over it are cached, so
    the host ranges read (and the kernel's readahead after them) show in `map`.  On a
    cold cache, QEMU's and the emulator's commands must leave the fallocated head of a
    COW'd 2 MiB cluster a hole (the emulator once read the whole header cluster)."""
    work = SCRATCH / f"cold-{os.getpid()}-{cmd[0]}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    REF.run("img", ["create", "-f", "qcow2", "-o", "cluster_size=2M,extended_l2=on",
                    "img.qcow2", "1M"], work)
    REF.run("io", ["-c", "write -P 0xe0 1014272 34304", "img.qcow2"], work)
    argv = [*cmd, "img.qcow2"] + (["out.raw"] if cmd[0] == "convert" else [])
    out = []
    for runner in (REF, SUT):
        _evict(work)
        r = runner.run("img", argv, work)
        (work / "out.raw").unlink(missing_ok=True)
        _evict(work)
        m = REF.run("img", ["map", "--output=json", "img.qcow2"], work)
        out.append((r.rc, r.out, r.err, m.out))
    assert out[0] == out[1]
    shutil.rmtree(work, ignore_errors=True)


def test_direct_io_reaches_the_backing_chain() -> None:
    """D31: `-t none` opens the backing files with O_DIRECT too (bdrv_backing_options
    passes cache.direct down), so reading through an overlay leaves no pages over the
    backing file's fallocated extents: SEEK_DATA still skips them afterwards."""
    work = SCRATCH / f"direct-backing-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    REF.run("img", ["create", "-f", "qcow2", "-o", "cluster_size=64k", "base.qcow2", "1M"], work)
    REF.run("io", ["-c", "write -P 1 4096 4096", "base.qcow2"], work)
    REF.run("img", ["create", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "top.qcow2"],
            work)
    out = []
    for runner in (REF, SUT):
        _evict(work)
        r = runner.run("io", ["-t", "none", "-c", "read -P 0 0 4k", "-c", "read 8k 56k",
                              "top.qcow2"], work)
        out.append((r.rc, data_extents(work / "base.qcow2")))
    assert out[0] == out[1]
    shutil.rmtree(work, ignore_errors=True)
