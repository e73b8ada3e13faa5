"""Run any of QEMU 7.2's qemu-iotests with qcowlab's commands (or QEMU's), section by section.

QEMU's ``tests/qemu-iotests/check`` runs from a private copy of the iotests
directory (symlinks to QEMU's files, our copy of ``check``), with
QEMU_IMG_PROG/QEMU_IO_PROG pointing at our console scripts (``--side ours``)
or at QEMU's binaries (``--side qemu``), exactly as ``./check -qcow2 TEST``
would run it (default cache mode of the test, reference output chosen by
check: e.g. 026.out, or 026.out.nocache with ``-c none``). The result is
compared with the reference output as a whole and per section; a section
starts at a line beginning with ``###``, ``===`` or ``Event:``; like check,
trailing whitespace is ignored.

    python tools/run_iotest.py 026 271 [--side ours|qemu|both] [--cache MODE]

Exit status 0 when every test passes on every side run.
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
SCRATCH = Path(os.environ.get("DIFFTEST_DIR", "/tmp/difftest")) / f"iotest-{os.getpid()}"
HEADERS = ("###", "===", "Event:")


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


def setup(d: Path) -> None:
    """A private iotests dir: symlinks to QEMU's files, a copy of check."""
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    for f in IOTESTS.iterdir():
        if f.name != "check":
            (d / f.name).symlink_to(f)
    shutil.copy(IOTESTS / "check", d / "check")


def sections(text: str) -> list[tuple[str, str]]:
    """(header, body) pairs; a header is a line starting with one of HEADERS."""
    result, head, body = [], "(start)", []
    for ln in text.splitlines():
        if ln.startswith(HEADERS):
            result.append((head, "\n".join(body)))
            head, body = ln, []
        else:
            body.append(ln)
    result.append((head, "\n".join(body)))
    return result


def reference(test: str, cache: str | None) -> Path:
    """The reference output check compares with (a cache-mode variant if there is one)."""
    if cache == "none" and (IOTESTS / f"{test}.out.nocache").exists():
        return IOTESTS / f"{test}.out.nocache"
    return IOTESTS / f"{test}.out"


def run(test: str, side: str, cache: str | None, verbose: bool) -> bool:
    """Run check for one test on one side; print the verdict and figures."""
    d = SCRATCH / f"{side}-{test}"
    setup(d)
    ours = side == "ours"
    env = dict(os.environ, QEMU_PROG=shutil.which("qemu-system-x86_64") or "qemu-system-x86_64",
               QEMU_IMG_PROG=wrapper("img", d) if ours else shutil.which("qemu-img"),
               QEMU_IO_PROG=wrapper("io", d) if ours else shutil.which("qemu-io"),
               QEMU_NBD_PROG=shutil.which("qemu-nbd") or "qemu-nbd",
               QSD_PROG=shutil.which("qemu-storage-daemon") or "qemu-storage-daemon",
               TEST_DIR=str(d / "scratch"), SOCK_DIR=str(d / "sock"))
    args = [sys.executable, "./check", "-qcow2"] + (["-c", cache] if cache else []) + [test]
    p = subprocess.run(args, cwd=d, env=env, capture_output=True, text=True, timeout=3600)
    expected = reference(test, cache).read_text()
    bad = d / "scratch" / f"{test}.out.bad"
    passed = "Passed all 1 iotests" in p.stdout
    got = bad.read_text() if bad.exists() else expected
    # check compares lines without their trailing whitespace
    expected, got = (("\n".join(ln.rstrip() for ln in t.splitlines())) for t in (expected, got))
    exp_s, got_s = sections(expected), sections(got)
    same = sum(1 for a, b in zip(exp_s, got_s) if a == b)
    print(f"== {test} ({side}): check says: {'pass' if passed else 'FAIL'}; "
          f"sections identical: {same}/{len(exp_s)}")
    if not passed and not bad.exists():
        print("\n".join(p.stdout.splitlines()[-15:]) + p.stderr[-2000:])
    for i, (h, body) in enumerate(exp_s):
        other = got_s[i] if i < len(got_s) else ("(missing)", "")
        if (h, body) != other:
            print(f"   different: {h}")
    if got != expected and verbose:
        diff = list(difflib.unified_diff(expected.splitlines(), got.splitlines(),
                                         f"{test}.out", f"{test} ({side})", lineterm="", n=1))
        print("\n".join(diff[:80]) + ("\n   ... (diff truncated)" if len(diff) > 80 else ""))
    return passed and got == expected


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("tests", nargs="+", help="test numbers, e.g. 026 271")
    ap.add_argument("--side", default="ours", choices=["ours", "qemu", "both"])
    ap.add_argument("--cache", default=None, help="check's -c (default: the test's own)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print the diff")
    args = ap.parse_args(argv)
    sides = ["qemu", "ours"] if args.side == "both" else [args.side]
    ok = all([run(t, s, args.cache, args.verbose) for t in args.tests for s in sides])
    shutil.rmtree(SCRATCH, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
