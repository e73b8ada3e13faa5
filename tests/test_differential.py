"""Differential tests: the emulator against real QEMU 7.2.

Every sequence runs on QEMU and on the emulator; outputs (timing filtered),
exit codes, final image bytes and sparseness, ``qemu-img map --output=json``
and ``qemu-img check`` must match, and real ``qemu-img check`` must find every
emulator-written qcow2 image clean.  Knobs (environment):

- QCOWLAB_DIFF_SEEDS=A:B  seeds of the random sequences (default 0:200)
- QCOWLAB_DIFF_SUT=fork|inproc|scripts|qemu  system under test (default fork:
  the emulator in process, each command in a forked child with memory/time
  limits; ``qemu`` compares QEMU with itself, validating filters and generator)
- QCOWLAB_DIFF_HYPOTHESIS=N  examples of the hypothesis test (default 10)
- QCOWLAB_DIFF_SHRINK=1  let hypothesis shrink a divergence (minutes: every
  shrink step runs QEMU and the emulator), off by default to bound CI time

A failure prints the seed and the whole command sequence (a shell script to
replay in an empty directory); ``python -m tools.difftest --seeds S:S+1
--shrink`` shrinks it.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from tools.difftest.choices import HypothesisChooser, RandomChooser
from tools.difftest.compare import differential
from tools.difftest.generate import random_sequence
from tools.difftest.handmade import HANDMADE
from tools.difftest.runners import ForkRunner, InProcessRunner, qemu_runner, scripts_runner
from tools.difftest.sequence import Sequence

SCRATCH = Path(os.environ.get("DIFFTEST_DIR", "/tmp/difftest"))
_lo, _hi = (int(x) for x in os.environ.get("QCOWLAB_DIFF_SEEDS", "0:200").split(":"))
SEEDS = range(_lo, _hi)
HYPOTHESIS_EXAMPLES = int(os.environ.get("QCOWLAB_DIFF_HYPOTHESIS", "10"))
HYPOTHESIS_SHRINK = os.environ.get("QCOWLAB_DIFF_SHRINK") == "1"


def _sut():
    kind = os.environ.get("QCOWLAB_DIFF_SUT", "fork")
    if kind == "qemu":
        return qemu_runner()
    if kind == "inproc":
        return InProcessRunner()
    return scripts_runner() if kind == "scripts" else ForkRunner()


REF, SUT = qemu_runner(), _sut()

pytestmark = [
    pytest.mark.skipif(not REF.available(), reason="qemu-img/qemu-io (QEMU 7.2) not on PATH"),
    pytest.mark.skipif(not SUT.available(),
                       reason=f"system under test '{SUT.name}' is not available "
                              "(emulator.cli.img / emulator.cli.io missing)"),
]


def _check(seq: Sequence, name: str) -> None:
    out = differential(seq, REF, SUT, SCRATCH / f"pytest-{os.getpid()}-{name}")
    assert out.ok, out.report()


@pytest.mark.parametrize("seed", SEEDS)
def test_random_sequence(seed: int) -> None:
    _check(random_sequence(RandomChooser(seed), f"seed {seed}"), f"seed{seed}")


@pytest.mark.parametrize("seq", HANDMADE, ids=[s.label for s in HANDMADE])
def test_handmade_sequence(seq: Sequence) -> None:
    _check(seq, "handmade")


def test_hypothesis_shrinks_divergences() -> None:
    """Hypothesis drives the same generator; with QCOWLAB_DIFF_SHRINK=1 a divergence
    shrinks to a short sequence."""
    pytest.importorskip("hypothesis")
    from hypothesis import HealthCheck, Phase, given, note, settings
    from hypothesis import strategies as st

    phases = list(Phase) if HYPOTHESIS_SHRINK else [Phase.explicit, Phase.generate]

    @settings(max_examples=HYPOTHESIS_EXAMPLES, deadline=None, derandomize=True,
              database=None, suppress_health_check=list(HealthCheck), phases=phases)
    @given(st.data())
    def run(data) -> None:
        seq = random_sequence(HypothesisChooser(data), "hypothesis")
        note(str(seq))
        _check(seq, "hypothesis")

    run()
