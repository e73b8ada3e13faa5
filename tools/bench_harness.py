"""Benchmark the harness: emulator vs QEMU command-line backend, -j 2 vs -j 1.

Runs ``./check`` on the case library (QMP cases excluded from the backend
comparison, since the emulator does not run them) in subprocesses (each configuration
``--repeat`` times, best wall-clock time kept) and prints the timings side by
side with their ratios and the targets of issue 3 (emulator >= 3x faster
than QEMU; -j 2 >= 1.6x faster than -j 1).

    python -m tools.bench_harness [--repeat N] [--copies K] [--jobs-impl qemu|emulator]
                                  [-- CHECK ARGS]
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TARGET_BACKEND = 3.0
TARGET_JOBS = 1.6


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_check(args: list[str], repeat: int) -> tuple[float, str]:
    """Best wall time of ``./check ARGS`` and its summary line (with the CPU time used)."""
    best = float("inf")
    summary = ""
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), _children_cpu()
        proc = subprocess.run([sys.executable, str(REPO / "check"), "--color", "off", *args],
                              cwd=REPO, capture_output=True, text=True)
        wall, cpu = time.perf_counter() - t0, _children_cpu() - c0
        if wall < best:
            best = wall
            lines = [line for line in proc.stdout.splitlines()
                     if line.startswith(("Passed all", "Failed "))]
            summary = (lines[-1] if lines else f"exit {proc.returncode}") + f", cpu {cpu:.2f}s"
    return best, summary


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
    p.add_argument("--repeat", type=int, default=3, help="runs per configuration (best kept)")
    p.add_argument("--jobs-impl", default="qemu", choices=["qemu", "emulator"],
                   help="backend used for the -j comparison")
    p.add_argument("--copies", type=int, default=1,
                   help="run a library made of this many copies of every case")
    p.add_argument("check_args", nargs="*", help="extra ./check arguments (cases, -o ...)")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="qcowlab-bench-") as tmp:
        lib = make_library(Path(tmp), args.copies) if args.copies > 1 else []
        return bench(args, lib + args.check_args)


def bench(args: argparse.Namespace, extra: list[str]) -> int:
    """Run the four configurations and print the comparison table."""
    load = os.getloadavg()
    rows = []
    # QMP cases run only on QEMU: leave them out so both sides run the same cases
    t_emu, s_emu = run_check(["--impl", "emulator", "-x", "qmp", *extra], args.repeat)
    t_qemu, s_qemu = run_check(["--impl", "qemu", "-x", "qmp", *extra], args.repeat)
    rows.append(("backend", "emulator -j 1", t_emu, s_emu, "qemu -j 1", t_qemu, s_qemu,
                 t_qemu / t_emu, TARGET_BACKEND))
    t_j1, s_j1 = run_check(["--impl", args.jobs_impl, "-j", "1", *extra], args.repeat)
    t_j2, s_j2 = run_check(["--impl", args.jobs_impl, "-j", "2", *extra], args.repeat)
    rows.append(("jobs", f"{args.jobs_impl} -j 2", t_j2, s_j2, f"{args.jobs_impl} -j 1", t_j1,
                 s_j1, t_j1 / t_j2, TARGET_JOBS))
    print(f"load average before: {' '.join(f'{x:.2f}' for x in load)}, "
          f"after: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)")
    print(f"{'comparison':10} {'fast side':16} {'time':>7}  {'slow side':16} {'time':>7}  "
          f"{'ratio':>6}  {'target':>6}  verdict")
    ok = True
    for name, fa, ta, sa, sl, tb, sb, ratio, target in rows:
        verdict = "met" if ratio >= target else "NOT met"
        ok &= ratio >= target
        print(f"{name:10} {fa:16} {ta:6.2f}s  {sl:16} {tb:6.2f}s  {ratio:5.2f}x  {target:5.1f}x  {verdict}")
        print(f"{'':10} ({sa}; {sb})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
