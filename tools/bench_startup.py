"""Start-up cost: ``qcowlab-io -c 'read 0 4k' IMG`` against ``qemu-io``, side by side.

Runs both alternately (same image, same command line), prints the medians and
the ratio ours/QEMU (target: at most 8).

    python tools/bench_startup.py [-n 30]
"""
from __future__ import annotations

import argparse
import compileall
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tools.bench_common import ROOT, SCRATCH, median, program, timed  # noqa: E402

TARGET = 8.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=30, help="runs per side")
    ap.add_argument("--breakdown", action="store_true",
                    help="also time the bare interpreter and the interpreter with site")
    args = ap.parse_args(argv)
    SCRATCH.mkdir(parents=True, exist_ok=True)
    # as after pip install: bytecode compiled (with PYTHONDONTWRITEBYTECODE set, a
    # source checkout would otherwise recompile every changed module at each start)
    compileall.compile_dir(str(ROOT / "emulator"), quiet=1)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-o", "extended_l2=on",
                    "img.qcow2", "64M"], cwd=SCRATCH, check=True)
    subprocess.run(["qemu-io", "-c", "write -P 0x5a 0 64k", "img.qcow2"], cwd=SCRATCH,
                   check=True, capture_output=True)
    argv_io = ["-c", "read 0 4k", "img.qcow2"]
    cmds = {side: program("io", side == "ours") + argv_io for side in ("qemu", "ours")}
    times: dict[str, list[float]] = {"qemu": [], "ours": []}
    for side in times:
        timed(cmds[side], SCRATCH)  # warm the page cache
    for _ in range(args.n):
        for side in times:
            times[side].append(timed(cmds[side], SCRATCH))
    q, o = median(times["qemu"]), median(times["ours"])
    ratio = o / q
    print(f"qemu-io   start-up median {q * 1000:8.2f} ms  ({args.n} runs)")
    print(f"qcowlab-io start-up median {o * 1000:8.2f} ms  ({' '.join(cmds['ours'][:1])})")
    if args.breakdown:
        for label, cmd in (("python3 -S -c pass (bare interpreter)", [sys.executable, "-S", "-c", "pass"]),
                           ("python3 -c pass (interpreter + site/.pth)", [sys.executable, "-c", "pass"])):
            t = median([timed(cmd, SCRATCH) for _ in range(args.n)])
            print(f"{label:42s} {t * 1000:8.2f} ms")
    print(f"ratio ours/qemu = {ratio:.2f}x (target <= {TARGET:g}x): "
          f"{'OK' if ratio <= TARGET else 'TOO SLOW'}")
    shutil.rmtree(SCRATCH, ignore_errors=True)
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
