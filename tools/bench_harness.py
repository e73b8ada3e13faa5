"""Benchmark the harness: emulator vs QEMU command-line backend, -j 2 vs -j 1.

Runs ``./check`` on the case library in subprocesses and prints the wall-clock
times side by side with their ratios and the targets of issue 3 (emulator >= 3x
faster than QEMU; ``-j 2`` >= 1.6x faster than ``-j 1``). QMP cases are left out
of the backend comparison, which is about the command-line backends: on the
emulator they time the start-up of qcowlab-qsd, a Python process of their own.
Next to the -j ratio it prints the machine's parallel headroom (two CPU-bound
processes together vs one after the other): on a machine others keep busy,
that is the bound of any -j speed-up.

The configurations of a comparison run alternately, ``--repeat`` rounds, so
that a change in the machine's load hits both sides alike; the ratio reported
is the median of the per-round ratios (each round's two runs are adjacent in
time), next to the median times.

    python -m tools.bench_harness [--repeat N] [--copies K] [--jobs-impl emulator|qemu]
                                  [-- CHECK ARGS]
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET_BACKEND = 3.0
TARGET_JOBS = 1.6


def run_check(args: list[str]) -> tuple[float, str]:
    """Wall time of one ``./check ARGS`` and its summary line."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, str(REPO / "check"), "--color", "off", *args],
                          cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    lines = [line for line in proc.stdout.splitlines()
             if line.startswith(("Passed all", "Failed "))]
    return wall, lines[-1] if lines else f"exit {proc.returncode}"


def compare(fast: list[str], slow: list[str], repeat: int) -> tuple[float, float, float, str]:
    """(median fast time, median slow time, median per-round slow/fast ratio, summaries)."""
    t_fast, t_slow, ratios, summaries = [], [], [], set()
    for k in range(repeat):
        # alternate which side goes first: neither always runs on a warmer cache
        order = [(fast, t_fast), (slow, t_slow)][::1 if k % 2 == 0 else -1]
        for args, times in order:
            wall, summary = run_check(args)
            print(f"round {k + 1}: ./check {' '.join(args)}: {wall:.2f}s ({summary})",
                  file=sys.stderr, flush=True)
            times.append(wall)
            summaries.add(summary)
        ratios.append(t_slow[-1] / t_fast[-1])
    return (statistics.median(t_fast), statistics.median(t_slow), statistics.median(ratios),
            "; ".join(sorted(summaries)))


def parallel_headroom() -> float:
    """How much faster two CPU-bound processes finish together than one after the
    other on this machine right now (about 2 on an idle 2-core machine): the
    bound of any -j 2 speed-up while others load the machine."""
    loop = [sys.executable, "-c", "sum(range(2 * 10 ** 7))"]
    t0 = time.perf_counter()
    subprocess.run(loop, check=True)
    one = time.perf_counter() - t0
    t0 = time.perf_counter()
    procs = [subprocess.Popen(loop) for _ in range(2)]
    for proc in procs:
        proc.wait()
    return 2 * one / (time.perf_counter() - t0)


def make_library(dest: Path, copies: int) -> list[str]:
    """A case library with ``copies`` renamed copies of every case and golden file;
    returns the ./check arguments pointing at it."""
    (dest / "cases").mkdir(parents=True)
    (dest / "golden").mkdir()
    for case in sorted((REPO / "cases").glob("*.yaml")):
        for k in range(copies):
            new_id = f"{case.stem}-{k}"
            shutil.copy(case, dest / "cases" / f"{new_id}.yaml")
            for ref in (REPO / "golden").glob(f"{case.stem}[.@]*out"):
                text = ref.read_text().replace(f"created by {case.stem}\n", f"created by {new_id}\n", 1)
                (dest / "golden" / ref.name.replace(case.stem, new_id, 1)).write_text(text)
    return ["--cases-dir", str(dest / "cases"), "--golden-dir", str(dest / "golden"),
            "--scratch-dir", str(dest / "scratch")]


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="bench_harness", description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=3, help="rounds per comparison")
    p.add_argument("--jobs-impl", default="emulator", choices=["emulator", "qemu"],
                   help="backend of the -j comparison (default: ./check's own default)")
    p.add_argument("--copies", type=int, default=1,
                   help="run a library made of this many copies of every case")
    p.add_argument("check_args", nargs="*", help="extra ./check arguments (cases, -o ...)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="qcowlab-bench-") as tmp:
        # its own scratch directory: no concurrent ./check run shares its case
        # directories, and its timing history (long cases first with -j) is its own
        lib = make_library(Path(tmp), args.copies) if args.copies > 1 else \
            ["--scratch-dir", str(REPO / "scratch" / "bench" / "scratch")]
        return bench(args, lib + args.check_args)


def bench(args: argparse.Namespace, extra: list[str]) -> int:
    """Run both comparisons and print the table."""
    load = os.getloadavg()
    rows = []
    emu, qemu = ["--impl", "emulator", "-x", "qmp", *extra], ["--impl", "qemu", "-x", "qmp", *extra]
    rows.append(("backend", "emulator -j 1", "qemu -j 1", *compare(emu, qemu, args.repeat),
                 TARGET_BACKEND))
    headroom = parallel_headroom()
    j1, j2 = (["--impl", args.jobs_impl, "-j", n, *extra] for n in ("1", "2"))
    rows.append(("jobs", f"{args.jobs_impl} -j 2", f"{args.jobs_impl} -j 1",
                 *compare(j2, j1, args.repeat), TARGET_JOBS))
    print(f"load average before: {' '.join(f'{x:.2f}' for x in load)}, "
          f"after: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs); "
          f"parallel headroom before the -j runs: {headroom:.2f}x")
    print(f"{'comparison':10} {'fast side':16} {'median':>7}  {'slow side':16} {'median':>7}  "
          f"{'ratio':>6}  {'target':>6}  verdict")
    ok = True
    for name, fast, slow, t_fast, t_slow, ratio, summaries, target in rows:
        verdict = "met" if ratio >= target else "NOT met"
        ok &= ratio >= target
        print(f"{name:10} {fast:16} {t_fast:6.2f}s  {slow:16} {t_slow:6.2f}s  {ratio:5.2f}x  "
              f"{target:5.1f}x  {verdict}")
        print(f"{'':10} ({summaries})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
