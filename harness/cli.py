"""``./check``: qemu-iotests' command line over qcowlab's YAML cases."""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path
from typing import Optional

from harness import parallel, report, selection
from harness.backends.qemu import find_program
from harness.runner import REPO, CaseResult, RunConfig, regenerate, run_case
from harness.timings import Timings

CASES_DIR = REPO / "cases"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="check", description="Run qcowlab cases (qemu-iotests style).")
    p.add_argument("-n", "--dry-run", action="store_true", help="show the cases, do not run them")
    p.add_argument("-j", dest="jobs", type=int, default=1, help="parallel jobs (worker processes)")
    p.add_argument("-d", dest="debug", action="store_true", help="print every command run")
    p.add_argument("--color", choices=["on", "off", "auto"], default="auto")
    p.add_argument("-tap", action="store_true", help="produce TAP output")
    cache = p.add_mutually_exclusive_group()
    cache.add_argument("-nocache", dest="cachemode", action="store_const", const="none",
                       help="cache mode none (passed to qemu-io as -t none)")
    cache.add_argument("-c", dest="cachemode", help="cache mode passed to qemu-io (-t MODE)")
    fmt = p.add_mutually_exclusive_group()
    p.set_defaults(imgfmt="qcow2")
    for name in ("qcow2", "raw"):
        fmt.add_argument("-" + name, dest="imgfmt", action="store_const", const=name,
                         help=f"test {name}")
    p.add_argument("-o", dest="imgopts", default="", help="options merged into every image created")
    p.add_argument("-g", "--groups", metavar="group1,...", help="include cases from these groups")
    p.add_argument("-x", "--exclude-groups", metavar="group1,...", help="exclude these groups")
    p.add_argument("--start-from", metavar="CASE", help="skip the cases sorted before CASE")
    p.add_argument("--impl", choices=["emulator", "qemu", "both"], default="emulator",
                   help="implementation to test; both = cross-implementation diff")
    p.add_argument("--update-golden", action="store_true",
                   help="regenerate golden files (from QEMU unless --from emulator)")
    p.add_argument("--from", dest="golden_from", choices=["qemu", "emulator"], default="qemu",
                   help="source of --update-golden output")
    p.add_argument("--junit", metavar="FILE", help="write a JUnit XML report")
    p.add_argument("--cases-dir", type=Path, default=CASES_DIR, help=argparse.SUPPRESS)
    p.add_argument("--golden-dir", type=Path, default=REPO / "golden",
                   help="golden files directory (default: golden/)")
    p.add_argument("--scratch-dir", type=Path, default=REPO / "scratch",
                   help="root of the per-case scratch directories (default: scratch/)")
    p.add_argument("cases", metavar="CASE", nargs="*", help="case ids, paths or globs")
    return p


def print_env(config: RunConfig, prefix: str = "") -> None:
    imgopts = f" ({config.imgopts})" if config.imgopts else ""
    u = os.uname()
    progs = {t: find_program(t) or "(not found)" for t in
             ("qemu-system", "qemu-img", "qemu-io", "qemu-storage-daemon")}
    print(f"{prefix}IMPL          -- {config.impl}\n"
          f"{prefix}QEMU          -- \"{progs['qemu-system']}\"\n"
          f"{prefix}QEMU_IMG      -- \"{progs['qemu-img']}\"\n"
          f"{prefix}QEMU_IO       -- \"{progs['qemu-io']}\"\n"
          f"{prefix}QSD           -- \"{progs['qemu-storage-daemon']}\"\n"
          f"{prefix}IMGFMT        -- {config.imgfmt}{imgopts}\n"
          f"{prefix}IMGPROTO      -- file\n"
          f"{prefix}PLATFORM      -- {u.sysname}/{u.machine} {u.nodename} {u.release}\n"
          f"{prefix}TEST_DIR      -- {config.scratch_root}\n"
          f"{prefix}CACHEMODE     -- {config.cachemode or 'writeback'}\n{prefix}")
    sys.stdout.flush()


def run_parallel(paths: list[Path], config: RunConfig, jobs: int, rep: report.Reporter,
                 timings: Timings) -> list[CaseResult]:
    """Run in ``jobs`` worker processes, printing each result as it arrives."""
    sys.stdout.flush()  # nothing buffered may be inherited by the workers
    sys.stderr.flush()
    by_name = {}
    for res in parallel.run_cases(paths, config, jobs, timings.get):
        by_name[res.name] = res
        rep.line(res.name, res.start or report.now(), res.status, report.now(), res.elapsed,
                 timings.get(res.name), res.description)
    results = [by_name[path.stem] for path in paths]
    for res in results:
        rep.diff(res)
    return results


def run_sequential(paths: list[Path], config: RunConfig, rep: report.Reporter,
                   timings: Timings, progress: bool) -> list[CaseResult]:
    results = []
    for path in paths:
        start = report.now()
        last = timings.get(path.stem)
        if progress:
            rep.line(path.stem, start, "...", last=last, term="\r")
        res = run_case(path, config)
        rep.line(res.name, start, res.status, report.now(), res.elapsed, last, res.description)
        rep.diff(res)
        results.append(res)
    return results


def update_golden(paths: list[Path], config: RunConfig, source: str) -> int:
    status = 0
    for path in paths:
        res = regenerate(path, config, source)
        print(f"{res.name}: {res.description}" if res.status != "not run"
              else f"{res.name}: not run: {res.description}")
        if res.diff:
            print("\n".join(res.diff))
        if res.status == "fail":
            status = 1
    return status


def main(argv: Optional[list[str]] = None) -> int:
    """Run ./check; returns the exit status."""
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("\ncheck: interrupted", file=sys.stderr)
        return 130


def _main(argv: Optional[list[str]]) -> int:
    args = build_parser().parse_args(argv)
    config = RunConfig(imgfmt=args.imgfmt, imgopts=args.imgopts or "",
                       cachemode=args.cachemode, impl=args.impl, debug=args.debug,
                       golden_dir=args.golden_dir.resolve(),
                       scratch_root=args.scratch_dir.resolve())
    paths, missing = selection.resolve(args.cases, args.cases_dir)
    for name in missing:
        print(f"check: no case matches '{name}'", file=sys.stderr)
    if missing:
        return 1
    paths = selection.start_from(selection.by_groups(paths, args.groups, args.exclude_groups),
                                 args.start_from)
    if args.dry_run:
        print("\n".join(p.stem for p in paths))
        return 0
    if not paths:
        print("check: no cases selected", file=sys.stderr)
        return 1
    if args.update_golden:
        return update_golden(paths, dataclasses.replace(config, impl=args.golden_from),
                             args.golden_from)
    color = args.color == "on" or (args.color == "auto" and sys.stdout.isatty())
    rep = report.Reporter(sys.stdout, config.imgfmt, max(len(p.stem) for p in paths) + 2,
                          color, args.tap)
    if args.tap:
        print_env(config, "# ")
        print(f"1..{len(paths)}")
    else:
        print_env(config)
    key = f"{config.impl}:{config.imgfmt}:{config.imgopts}"
    timings = Timings(config.scratch_root.parent / ".timings.json", key)
    if args.jobs > 1:
        results = run_parallel(paths, config, args.jobs, rep, timings)
    else:
        results = run_sequential(paths, config, rep, timings,
                                 progress=sys.stdout.isatty() and not args.tap)
    for res in results:
        if res.status == "pass" and res.elapsed is not None:
            timings.update(res.name, res.elapsed)
    timings.save()
    rep.summary(results)
    if args.junit:
        report.write_junit(args.junit, results, f"qcowlab.{config.impl}.{config.imgfmt}")
    return 1 if any(r.status == "fail" for r in results) else 0
