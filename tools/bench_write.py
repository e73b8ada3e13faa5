"""Write throughput: 64 MiB written sequentially in 64 KiB requests on an
extended-L2 qcow2 image, by ``qemu-io`` and by ``qcowlab-io``, side by side.

Both sides get the same command lines: ``qemu-img create -f qcow2 -o
extended_l2=on img 64M`` (by the same side's qemu-img), then one qemu-io
process with 1024 ``-c 'write -q -P 0x5a OFF 64k'`` commands, opened with
``-t CACHE`` (default writeback, QEMU's default: QEMU then flushes the host
file whenever an L2 update depends on a refcount update; ``-t unsafe`` drops
those flushes and compares pure compute).  The whole process time is measured
(start-up included; it is small against the write).
Prints MiB/s per side and the throughput ratio ours/QEMU (target >= 1/4).

    python tools/bench_write.py [-n 3] [--mib 64]
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tools.bench_common import SCRATCH, median, program, timed  # noqa: E402

TARGET = 0.25
REQ = 64 * 1024


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=3, help="runs per side")
    ap.add_argument("--mib", type=int, default=64, help="MiB written per run")
    ap.add_argument("--cache", default="writeback", help="qemu-io -t mode on both sides")
    args = ap.parse_args(argv)
    total = args.mib * 1024 * 1024
    cmds = [a for off in range(0, total, REQ) for a in ("-c", f"write -q -P 0x5a {off} 64k")]
    times: dict[str, list[float]] = {"qemu": [], "ours": []}
    for _ in range(args.n):
        for side in times:
            d = SCRATCH / side
            shutil.rmtree(d, ignore_errors=True)
            d.mkdir(parents=True)
            ours = side == "ours"
            subprocess.run(program("img", ours) + ["create", "-q", "-f", "qcow2", "-o",
                                                   "extended_l2=on", "img.qcow2", "64M"],
                           cwd=d, check=True)
            times[side].append(timed(program("io", ours) + ["-t", args.cache] + cmds
                                     + ["img.qcow2"], d))
    same = (SCRATCH / "qemu" / "img.qcow2").read_bytes() == (SCRATCH / "ours" / "img.qcow2").read_bytes()
    rate = {side: total / median(t) / 2**20 for side, t in times.items()}
    ratio = rate["ours"] / rate["qemu"]
    print(f"{args.mib} MiB in 64 KiB writes, extended L2, -t {args.cache}")
    print(f"qemu-io    {rate['qemu']:9.1f} MiB/s (median of {args.n})")
    print(f"qcowlab-io {rate['ours']:9.1f} MiB/s")
    print(f"images identical: {same}")
    print(f"throughput ratio ours/qemu = {ratio:.3f} (target >= {TARGET}): "
          f"{'OK' if ratio >= TARGET else 'TOO SLOW'}")
    shutil.rmtree(SCRATCH, ignore_errors=True)
    return 0 if ratio >= TARGET and same else 1


if __name__ == "__main__":
    sys.exit(main())
