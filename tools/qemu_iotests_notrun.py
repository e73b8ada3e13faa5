#!/usr/bin/env python3
"""Which of QEMU 7.2's qcow2 iotests do not run (or fail) under given IMGOPTS.

Used for the closing note of the case library (issue 6): how many of QEMU's
own qcow2 tests are "not run" under ``-o extended_l2=on``, compared with ours.

Two measurements:

``--static``  scan every test in QEMU's ``tests/qemu-iotests`` (numbered and
              ``tests/*``) that supports qcow2 (``_supported_fmt`` with qcow2
              or generic; Python ``supported_fmts`` with qcow2 or empty) and
              evaluate its ``_unsupported_imgopts`` patterns the way
              common.rc does (``echo "$IMGOPTS " | grep -q PATTERN``) or its
              Python ``unsupported_imgopts`` (substring test).
``--run``     run QEMU's own ``./check -qcow2 -o IMGOPTS TEST`` for each test
              against the installed binaries, each in its own session, killed
              after ``--timeout`` seconds (a killed test did run: the not-run
              decision is taken when a test starts). Debian's
              qemu-system-x86_64 has no qtest accelerator, so ``--qemu-prog``
              may name a wrapper that turns ``-accel qtest`` into tcg.

Example::

    python3 tools/qemu_iotests_notrun.py --static -o extended_l2=on
    python3 tools/qemu_iotests_notrun.py --run -o extended_l2=on --workdir /tmp/qit
"""
from __future__ import annotations

import argparse
import glob
import os
import re
import shlex
import signal
import subprocess
import sys

SRC = "/work/qemu-src/qemu-7.2+dfsg/tests/qemu-iotests"


def qcow2_tests(src: str) -> dict[str, list[str]]:
    """name -> unsupported_imgopts patterns, for every test that supports qcow2."""
    files = [f for f in glob.glob(os.path.join(src, "[0-9][0-9][0-9]"))]
    files += [f for f in glob.glob(os.path.join(src, "tests", "*")) if not f.endswith(".out")]
    out: dict[str, list[str]] = {}
    for f in sorted(files):
        text = open(f, errors="replace").read()
        name = os.path.relpath(f, src)
        if "python" in (text.splitlines() or [""])[0]:
            m = re.search(r"supported_fmts\s*=\s*\[([^\]]*)\]", text)
            fmts = [a or b for a, b in re.findall(r"'([^']+)'|\"([^\"]+)\"", m.group(1))] if m else []
            if not ("execute_test" in text or "script_initialize" in text or "supported_fmts" in text):
                continue
            if fmts and "qcow2" not in fmts and "generic" not in fmts:
                continue
            bad: list[str] = []
            for m in re.finditer(r"unsupported_imgopts\s*=\s*\[([^\]]*)\]", text):
                bad += [a or b for a, b in re.findall(r"'([^']+)'|\"([^\"]+)\"", m.group(1))]
            out[name] = ["py:" + b for b in bad]
        else:
            m = re.search(r"^_supported_fmt\s+(.*)$", text, re.M)
            fmts = m.group(1).split() if m else []
            if "qcow2" not in fmts and "generic" not in fmts:
                continue
            bad = []
            for m in re.finditer(r"^\s*_unsupported_imgopts\s+(.*)$", text.replace("\\\n", " "), re.M):
                line = m.group(1).split("#")[0]
                try:
                    bad += shlex.split(line)
                except ValueError:
                    bad += line.split()
            out[name] = bad
    return out


def static_hits(patterns: list[str], imgopts: str) -> list[str]:
    hits = []
    for p in patterns:
        if p.startswith("py:"):
            if p[3:] in imgopts:
                hits.append(p[3:])
        elif subprocess.run(["grep", "-q", p], input=imgopts + " ", text=True).returncode == 0:
            hits.append(p)
    return hits


def run_one(workdir: str, test: str, imgopts: str, timeout: float, env: dict) -> str:
    args = ["nice", "-n", "19", "./check", "-qcow2"] + (["-o", imgopts] if imgopts else []) + [test]
    p = subprocess.Popen(args, cwd=workdir, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        text, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.communicate()
        return "ran (killed)"
    m = re.search(r"not run\s.*?\.\.\.\s+(.*)$", text, re.M)
    if m:
        return "not run: " + m.group(1).strip()
    return "pass" if "Passed all" in text else "fail"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", dest="imgopts", default="extended_l2=on")
    ap.add_argument("--src", default=SRC)
    ap.add_argument("--static", action="store_true")
    ap.add_argument("--run", action="store_true")
    ap.add_argument("--workdir", default="/tmp/qit", help="scratch build-tree layout for --run")
    ap.add_argument("--timeout", type=float, default=6.0)
    ap.add_argument("--qemu-prog", default="/usr/bin/qemu-system-x86_64")
    ap.add_argument("tests", nargs="*")
    args = ap.parse_args()
    tests = qcow2_tests(args.src)
    names = args.tests or list(tests)
    print(f"qcow2 tests in QEMU's iotests: {len(tests)}")
    if args.static or not args.run:
        hit = {t: static_hits(tests[t], args.imgopts) for t in names}
        nr = {t: h for t, h in hit.items() if h}
        print(f"not run by unsupported_imgopts under -o {args.imgopts}: {len(nr)}")
        for t, h in nr.items():
            print(f"  {t}: {' '.join(h)}")
    if args.run:
        iot = os.path.join(args.workdir, "tests", "qemu-iotests")
        os.makedirs(iot, exist_ok=True)
        link = os.path.join(iot, "check")
        if not os.path.islink(link):
            os.symlink(os.path.join(args.src, "check"), link)
        env = dict(os.environ, TEST_DIR=os.path.join(args.workdir, "scratch"),
                   QEMU_PROG=args.qemu_prog, QEMU_IMG_PROG="/usr/bin/qemu-img",
                   QEMU_IO_PROG="/usr/bin/qemu-io", QEMU_NBD_PROG="/usr/bin/qemu-nbd",
                   QSD_PROG="/usr/bin/qemu-storage-daemon")
        for t in names:
            print(t, run_one(iot, t, args.imgopts, args.timeout, env), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
