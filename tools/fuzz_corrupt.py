"""Corrupt-input fuzzing: the emulator must fail exactly as QEMU 7.2 does.

For every named corruption (tools/difftest/corrupt.py) and every seeded random
mutation of header fields, L1/L2 entries, refcount structures, header
extensions (type and length of each) and the snapshot table (entry fields,
extra data, id/name bytes, snapshot L1 tables) of base images with and without
snapshots, a backing file or an external data file (BASES), runs ``qemu-img
check``, ``qemu-img info`` and ``qemu-io -c 'read 0 64k'`` on QEMU and on the
emulator, each on a fresh copy, and compares the
exit code, the first error line, the image file afterwards (no write where
QEMU does not write) and the absence of Python tracebacks.  Other output
differences are counted as "soft".

    python -m tools.fuzz_corrupt [--seeds 0:300] [--no-named] [--writes]
                                 [--sut fork|inproc|scripts|qemu|io-only] [-v]
"""
from __future__ import annotations

import argparse
import os
import random
import sys
from pathlib import Path

from tools.difftest.__main__ import make_sut
from tools.difftest.corrupt import (BASES, NAMED, PROBES, WRITE_PROBES, compare_corrupt,
                                    companions, layout, make_base, random_mutation, repro)
from tools.difftest.runners import qemu_runner

SCRATCH = Path(os.environ.get("DIFFTEST_DIR", "/tmp/difftest")) / f"fuzz-{os.getpid()}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.fuzz_corrupt")
    ap.add_argument("--seeds", default="0:300", help="A:B range of random-mutation seeds")
    ap.add_argument("--no-named", action="store_true", help="skip the named corruptions")
    ap.add_argument("--sut", default="fork", choices=["inproc", "fork", "scripts", "qemu", "io-only"])
    ap.add_argument("--writes", action="store_true",
                    help="also probe 'qemu-io -c \'write -P 0x77 0 64k\'' and 'qemu-img check -r all'")
    ap.add_argument("-v", "--verbose", action="store_true", help="also print soft differences")
    args = ap.parse_args(argv)
    ref, sut = qemu_runner(), make_sut(args.sut)
    bases = {name: make_base(name, SCRATCH / "base" / name) for name in BASES}
    others = {name: companions(SCRATCH / "base" / name) for name in BASES}
    cases: list[tuple[str, str, bytes]] = []
    if not args.no_named:
        for name, (base, mutate) in NAMED.items():
            data = bytearray(bases[base])
            mutate(data)
            cases.append((f"named {name}", base, bytes(data)))
    lo, hi = (int(x) for x in args.seeds.split(":"))
    for seed in range(lo, hi):
        rng = random.Random(seed)
        base = rng.choice(sorted(bases))
        data = bytearray(bases[base])
        lay = layout(bases[base])
        what = "; ".join(random_mutation(rng, data, lay) for _ in range(rng.choice([1, 1, 2])))
        cases.append((f"seed {seed} [{base}] {what}", base, bytes(data)))
    probes = PROBES + (WRITE_PROBES if args.writes else [])
    n_hard = n_soft = 0
    for label, base, data in cases:
        hard, soft = compare_corrupt(data, ref, sut, SCRATCH / "run", probes, others[base])
        n_hard += bool(hard)
        n_soft += bool(soft)
        if hard or (soft and args.verbose):
            print(f"== {label}", "-- reproduce in an empty directory:", repro(base, bases[base], data),
                  "--", *hard, *(soft if args.verbose else []), sep="\n", flush=True)
    print(f"{len(cases)} corrupt images x {len(probes)} commands: {len(cases) - n_hard} matching, "
          f"{n_hard} hard divergences, {n_soft} with other output differences")
    return 1 if n_hard else 0


if __name__ == "__main__":
    sys.exit(main())
