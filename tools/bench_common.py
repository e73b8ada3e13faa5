"""Helpers shared by the side-by-side benchmarks (tools/bench_*.py)."""
from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRATCH = Path(os.environ.get("DIFFTEST_DIR", "/tmp/difftest")) / f"bench-{os.getpid()}"


def program(tool: str, ours: bool) -> list[str]:
    """Command prefix for 'img' or 'io': QEMU's binary, or our installed script.

    Without an installed script (bin/qcowlab-*), falls back to the module run by
    this Python, which is what the script does.
    """
    if not ours:
        return [f"qemu-{tool}"]
    script = shutil.which(f"qcowlab-{tool}")
    if script:
        return [script]
    return [sys.executable, "-c",
            f"import sys; sys.path.insert(0, {str(ROOT)!r}); "
            f"from emulator.cli.{tool} import console_main; console_main()"]


def timed(cmd: list[str], cwd: Path) -> float:
    """Wall-clock seconds of one run; raises if it fails."""
    t0 = time.perf_counter()
    p = subprocess.run(cmd, cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True)
    dt = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"{cmd[:3]}... failed ({p.returncode}): {p.stderr.decode()[-500:]}")
    return dt


def median(xs: list[float]) -> float:
    return statistics.median(xs)
