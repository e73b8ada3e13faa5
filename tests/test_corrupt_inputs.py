"""Corrupt qcow2 inputs: the emulator fails exactly as QEMU 7.2 does.

Each named corruption (tools/difftest/corrupt.py) is applied to an image made
by real QEMU; ``qemu-img check``, ``qemu-img info``, ``qemu-io -c 'read 0
64k'`` (and, separately, a 64k write and ``qemu-img check -r all``) then run
on a fresh copy each, on QEMU and on the emulator.  Exit
codes, output and the image file afterwards must be identical, and the
emulator must never raise (it runs in a forked child with memory/time limits;
QCOWLAB_DIFF_SUT=inproc|scripts|qemu picks another runner, qemu compares QEMU
with itself).  Every 100th seed of ``python -m tools.fuzz_corrupt --seeds
0:2000`` runs too, held to the fuzzer's hard criteria (exit code, first error
line, file afterwards, no traceback).
"""
from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from tools.difftest.corrupt import (BASES, NAMED, PROBES, WRITE_PROBES, compare_corrupt,
                                    companions, layout, make_base, random_mutation)
from tools.difftest.runners import ForkRunner, InProcessRunner, qemu_runner, scripts_runner

SCRATCH = Path(os.environ.get("DIFFTEST_DIR", "/tmp/difftest")) / f"corrupt-{os.getpid()}"
KIND = os.environ.get("QCOWLAB_DIFF_SUT", "fork")
REF = qemu_runner()
SUT = {"qemu": qemu_runner, "scripts": scripts_runner, "inproc": InProcessRunner}.get(KIND, ForkRunner)()

pytestmark = [
    pytest.mark.skipif(not REF.available(), reason="qemu-img/qemu-io (QEMU 7.2) not on PATH"),
    pytest.mark.skipif(not SUT.available(),
                       reason=f"system under test '{SUT.name}' is not available "
                              "(emulator.cli.img / emulator.cli.io missing)"),
]


#: a fast subset of ``python -m tools.fuzz_corrupt --seeds 0:2000`` (same seeds, same
#: mutations), with the seeds that found divergences (docs/divergences.md)
FUZZ_SEEDS = [*range(0, 2000, 100), 615, 890, 910, 3873, 4543]


@pytest.fixture(scope="module")
def bases() -> dict[str, tuple[bytes, dict[str, bytes]]]:
    return {name: (make_base(name, SCRATCH / "base" / name), companions(SCRATCH / "base" / name))
            for name in BASES}


def _check(name: str, bases: dict, probes: list) -> None:
    base, mutate = NAMED[name]
    data = bytearray(bases[base][0])
    mutate(data)
    hard, soft = compare_corrupt(bytes(data), REF, SUT, SCRATCH / name, probes, bases[base][1])
    assert not hard and not soft, "\n".join(hard + soft)


@pytest.mark.parametrize("name", sorted(NAMED))
def test_corrupt_input_behaves_like_qemu(name: str, bases: dict) -> None:
    _check(name, bases, PROBES)


@pytest.mark.parametrize("name", sorted(NAMED))
def test_corrupt_input_write_and_repair_like_qemu(name: str, bases: dict) -> None:
    _check(name, bases, WRITE_PROBES)


@pytest.mark.parametrize("seed", FUZZ_SEEDS)
def test_random_mutation_like_qemu(seed: int, bases: dict) -> None:
    """Exit code, first error line and the file after check/info/read/write/repair
    (the fuzzer's hard criteria) match QEMU's."""
    rng = random.Random(seed)
    base = rng.choice(sorted(bases))
    original, others = bases[base]
    data = bytearray(original)
    what = "; ".join(random_mutation(rng, data, layout(original))
                     for _ in range(rng.choice([1, 1, 2])))
    hard, _ = compare_corrupt(bytes(data), REF, SUT, SCRATCH / f"seed{seed}",
                              PROBES + WRITE_PROBES, others)
    assert not hard, f"seed {seed} [{base}] {what}\n" + "\n".join(hard)
