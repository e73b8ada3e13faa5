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
from pathlib import Path

import pytest

from tests.test_differential import REF, SUT
from tools.difftest.choices import RandomChooser
from tools.difftest.compare import differential
from tools.difftest.generate_lifecycle import lifecycle_sequence

SCRATCH = Path(os.environ.get("DIFFTEST_DIR", "/tmp/difftest"))
_lo, _hi = (int(x) for x in os.environ.get("QCOWLAB_LIFECYCLE_SEEDS", "0:100").split(":"))

pytestmark = [
    pytest.mark.skipif(not REF.available(), reason="qemu-img/qemu-io (QEMU 7.2) not on PATH"),
    pytest.mark.skipif(not SUT.available(), reason=f"system under test '{SUT.name}' missing"),
]


@pytest.mark.parametrize("seed", range(_lo, _hi))
def test_lifecycle_sequence(seed: int) -> None:
    seq = lifecycle_sequence(RandomChooser(seed), f"lifecycle seed {seed}")
    out = differential(seq, REF, SUT, SCRATCH / f"lifecycle-{os.getpid()}-{seed}")
    assert out.ok, out.report()
