"""Command line: run seeded random sequences against QEMU and report divergences.

    python -m tools.difftest --seeds 0:200 [--sut inproc|scripts|qemu] [--shrink]
    python -m tools.difftest --lifecycle --seeds 0:200   (qemu-img lifecycle commands)
    python -m tools.difftest --blkdebug --seeds 0:200    (injected errors, breakpoints)
    python -m tools.difftest --options --seeds 0:200     (block-layer option forms)
    python -m tools.difftest --handmade
    python -m tools.difftest --script repro.sh   (lines: qemu-img ... / qemu-io ...)
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .choices import RandomChooser
from .compare import differential
from .generate import random_sequence
from .generate_aio import aio_sequence
from .generate_lifecycle import lifecycle_sequence
from .generate_opts import options_sequence
from .handmade import HANDMADE
from .runners import ForkRunner, InProcessRunner, SplitRunner, qemu_runner, scripts_runner
from .sequence import parse_script
from .shrink import shrink

SCRATCH = Path(os.environ.get("DIFFTEST_DIR", "/tmp/difftest"))


def make_sut(kind: str):
    """The system under test: the in-process emulator, its scripts, QEMU itself,
    or real qemu-img with the emulator's qemu-io ('io-only')."""
    if kind == "qemu":
        r = qemu_runner()
        r.name = "qemu-self"
        return r
    if kind == "fork":
        return ForkRunner()
    if kind == "io-only":
        return SplitRunner(qemu_runner(), InProcessRunner(("io",)), "qemu-img+qcowlab-io")
    return scripts_runner() if kind == "scripts" else InProcessRunner()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.difftest")
    ap.add_argument("--seeds", default="0:50", help="A:B range of seeds")
    ap.add_argument("--sut", default="fork", choices=["inproc", "fork", "scripts", "qemu", "io-only"])
    ap.add_argument("--script", type=Path, nargs="+",
                    help="run the qemu-img/qemu-io lines of these files (e.g. tools/difftest/repros/*.sh)")
    ap.add_argument("--handmade", action="store_true", help="run the hand-made sequences")
    ap.add_argument("--lifecycle", action="store_true",
                    help="random sequences of qemu-img lifecycle commands (generate_lifecycle.py)")
    ap.add_argument("--blkdebug", action="store_true",
                    help="random blkdebug sequences: injected errors, aio requests held at "
                         "breakpoints (generate_aio.py)")
    ap.add_argument("--options", action="store_true",
                    help="random sequences opening images through --image-opts, json: names, "
                         "runtime options and filter drivers (generate_opts.py)")
    ap.add_argument("--shrink", action="store_true", help="shrink each diverging sequence")
    ap.add_argument("--keep", action="store_true", help="keep scratch dirs of passing runs")
    ap.add_argument("--no-extents", action="store_true", help="ignore file sparseness")
    ap.add_argument("-q", "--quiet", action="store_true", help="only the summary")
    args = ap.parse_args(argv)
    lo, hi = (int(x) for x in args.seeds.split(":"))
    ref, sut = qemu_runner(), make_sut(args.sut)
    failed = []
    generator = lifecycle_sequence if args.lifecycle else \
        aio_sequence if args.blkdebug else options_sequence if args.options else random_sequence
    seqs = [parse_script(f.read_text(), str(f)) for f in args.script] if args.script else \
        HANDMADE if args.handmade else [
        generator(RandomChooser(seed), f"seed {seed}") for seed in range(lo, hi)]
    for seed, seq in enumerate(seqs, 0 if args.handmade or args.script else lo):
        base = SCRATCH / f"cli-{os.getpid()}-{seed}"
        out = differential(seq, ref, sut, base, args.keep, not args.no_extents)
        if out.ok:
            continue
        failed.append(seed)
        if args.shrink:
            def diverges(s):
                return not differential(s, ref, sut, SCRATCH / f"shrink-{os.getpid()}",
                                        check_extents=not args.no_extents).ok
            small = shrink(seq, diverges)
            out = differential(small, ref, sut, base, True, not args.no_extents)
        if not args.quiet:
            print(out.report(), end="\n\n", flush=True)
    n = len(seqs)
    what = "scripts #" if args.script else "hand-made #" if args.handmade else "seeds "
    print(f"{n} sequences, {n - len(failed)} identical, {len(failed)} diverging"
          + (f": {what}{failed}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
