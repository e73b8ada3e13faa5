"""Run QEMU's own qemu-iotests 271 (qcow2 extended L2) against QEMU and against qcowlab.

QEMU's ``tests/qemu-iotests/check`` runs the test from a scratch copy of the
iotests directory (symlinks, plus a private copy of ``check``), with
QEMU_IMG_PROG/QEMU_IO_PROG pointing at real QEMU or at our console scripts.
By default the test script and its reference output are cut after the
"Zero + unmap" sections (``--full`` runs all of 271).  The output is compared
section by section (``### ... ###`` headers) with QEMU's reference output.

    python tools/run_271.py [--full] [--side ours|qemu|both]
"""
from __future__ import annotations

import argparse
import difflib
import os
import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tools.bench_common import program  # noqa: E402

IOTESTS = Path(os.environ.get("QEMU_SRC", "/work/qemu-src/qemu-7.2+dfsg")) / "tests/qemu-iotests"
SCRATCH = Path(os.environ.get("DIFFTEST_DIR", "/tmp/difftest")) / f"run271-{os.getpid()}"
CUT_SCRIPT = "# Test qcow2_cluster_discard() with full and normal discards"
CUT_OUT = "### Discarding clusters with non-zero bitmaps"
FOOTER = '\n# success, all done\necho "*** done"\nrm -f $seq.full\nstatus=0\n'


def truncated_test(full: bool) -> tuple[str, str]:
    """The 271 script and reference output, cut after the Zero + unmap sections."""
    script = (IOTESTS / "271").read_text()
    out = (IOTESTS / "271.out").read_text()
    if full:
        return script, out
    script = script[:script.index(CUT_SCRIPT)].rstrip("#\n") + "\n" + FOOTER
    lines = out.splitlines()
    cut = next(i for i, ln in enumerate(lines) if ln.startswith(CUT_OUT))
    return script, "\n".join(lines[:cut - 1] + ["*** done"]) + "\n"


def wrapper(tool: str, where: Path) -> str:
    """Executable path for our tool (console script, or a generated sh wrapper)."""
    cmd = program(tool, ours=True)
    if len(cmd) == 1:
        return cmd[0]
    path = where / f"qcowlab-{tool}"
    quoted = " ".join("'" + c.replace("'", "'\\''") + "'" for c in cmd)
    path.write_text(f'#!/bin/sh\nexec {quoted} "$@"\n')
    path.chmod(0o755)
    return str(path)


def setup(d: Path, full: bool) -> None:
    """A private iotests dir: symlinks to QEMU's files, our copies of check/271/271.out."""
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    for f in IOTESTS.iterdir():
        if f.name not in ("check", "271", "271.out"):
            (d / f.name).symlink_to(f)
    shutil.copy(IOTESTS / "check", d / "check")
    script, out = truncated_test(full)
    (d / "271").write_text(script)
    (d / "271").chmod(0o755)
    (d / "271.out").write_text(out)


def sections(text: str) -> list[tuple[str, str]]:
    """(header, body) pairs split at ``### ... ###`` lines."""
    result, head, body = [], "(start)", []
    for ln in text.splitlines():
        if ln.startswith("### "):
            result.append((head, "\n".join(body)))
            head, body = ln, []
        else:
            body.append(ln)
    result.append((head, "\n".join(body)))
    return result


def run(side: str, full: bool) -> bool:
    """Run check for one side; print a per-section verdict; True when identical."""
    d = SCRATCH / side
    setup(d, full)
    ours = side == "ours"
    env = dict(os.environ, QEMU_PROG=shutil.which("qemu-system-x86_64") or "qemu-system-x86_64",
               QEMU_IMG_PROG=wrapper("img", d) if ours else shutil.which("qemu-img"),
               QEMU_IO_PROG=wrapper("io", d) if ours else shutil.which("qemu-io"),
               QEMU_NBD_PROG=shutil.which("qemu-nbd") or "qemu-nbd",
               QSD_PROG=shutil.which("qemu-storage-daemon") or "qemu-storage-daemon",
               TEST_DIR=str(d / "scratch"), SOCK_DIR=str(d / "sock"))
    p = subprocess.run([sys.executable, "./check", "-qcow2", "271"], cwd=d, env=env,
                       capture_output=True, text=True, timeout=1800)
    expected = (d / "271.out").read_text()
    bad = d / "scratch" / "271.out.bad"
    got = bad.read_text() if bad.exists() else expected
    exp_s, got_s = sections(expected), sections(got)
    same = sum(1 for a, b in zip(exp_s, got_s) if a == b)
    print(f"== {side}: check says: "
          + ("pass" if "Passed all 1 iotests" in p.stdout else "FAIL")
          + f"; sections identical: {same}/{len(exp_s)}")
    if "Passed all 1 iotests" not in p.stdout:
        print("\n".join(p.stdout.splitlines()[-15:]) + p.stderr[-2000:])
    for i, (h, body) in enumerate(exp_s):
        other = got_s[i] if i < len(got_s) else ("(missing)", "")
        if (h, body) != other:
            print(f"   different: {h}")
    if got != expected:
        diff = list(difflib.unified_diff(expected.splitlines(), got.splitlines(),
                                         "271.out", f"271 ({side})", lineterm="", n=1))
        print("\n".join(diff[:80]) + ("\n   ... (diff truncated)" if len(diff) > 80 else ""))
    return got == expected and "Passed all 1 iotests" in p.stdout


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--full", action="store_true", help="run all of 271, not only up to Zero + unmap")
    ap.add_argument("--side", default="both", choices=["ours", "qemu", "both"])
    args = ap.parse_args(argv)
    sides = ["qemu", "ours"] if args.side == "both" else [args.side]
    ok = all([run(s, args.full) for s in sides])
    shutil.rmtree(SCRATCH, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
