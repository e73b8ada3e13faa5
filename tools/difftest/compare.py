"""Run a sequence on two runners and list every difference."""
from __future__ import annotations

import difflib
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from harness.imagediff import _masked as mask_snapshot_dates

from .filters import filter_output
from .runners import Result, Runner, qemu_runner
from .sequence import Sequence, Step


@dataclass
class Trace:
    """What one runner produced for a sequence."""

    results: list[tuple[Step, Result]] = field(default_factory=list)
    files: dict[str, bytes] = field(default_factory=dict)
    extents: dict[str, list[tuple[int, int]]] = field(default_factory=dict)


def data_extents(path: Path) -> list[tuple[int, int]]:
    """The file's data extents as SEEK_DATA/SEEK_HOLE report them."""
    extents = []
    with open(path, "rb") as f:
        fd, end, pos = f.fileno(), os.fstat(f.fileno()).st_size, 0
        while pos < end:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:
                break
            stop = os.lseek(fd, start, os.SEEK_HOLE)
            extents.append((start, stop))
            pos = stop
    return extents


def final_probes(seq: Sequence) -> list[Step]:
    """Steps run after the sequence on both sides: map and check of the top image."""
    probes = [Step("img", ("map", "--output=json", "-f", seq.top_fmt, seq.top))]
    if seq.top_fmt == "qcow2":
        probes.append(Step("img", ("check", "-f", "qcow2", seq.top)))
    return probes


def run_sequence(seq: Sequence, runner: Runner, workdir: Path) -> Trace:
    """Run every step (and the final probes) in an empty ``workdir``; keep the
    files left behind, snapshot creation times masked."""
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    trace = Trace()
    dirs = (str(workdir.resolve()),)
    for step in [*seq.steps, *final_probes(seq)]:
        r = runner.run(step.tool, list(step.argv), workdir)
        trace.results.append(
            (step, Result(r.rc, filter_output(r.out, dirs), filter_output(r.err, dirs))))
    for p in sorted(workdir.iterdir()):
        trace.files[p.name] = mask_snapshot_dates(p.read_bytes())
        trace.extents[p.name] = data_extents(p)
    return trace


def _first_diff(a: bytes, b: bytes) -> str:
    n = min(len(a), len(b))
    i = next((i for i in range(n) if a[i] != b[i]), n)
    if i == n and len(a) == len(b):
        return "identical"
    return f"first difference at byte {i:#x} (sizes {len(a):#x} vs {len(b):#x})"


def _diff_text(label: str, a: str, b: str) -> str:
    lines = difflib.unified_diff(a.splitlines(), b.splitlines(), "qemu", "ours", lineterm="", n=1)
    return f"{label}:\n" + "\n".join("    " + ln for ln in lines)


def compare_traces(a: Trace, b: Trace, check_extents: bool = True) -> list[str]:
    """Human-readable differences between reference trace ``a`` and trace ``b``."""
    diffs: list[str] = []
    for (step, ra), (_, rb) in zip(a.results, b.results):
        if ra.rc != rb.rc:
            diffs.append(f"`{step}`: exit code {ra.rc} vs {rb.rc}")
        if ra.out != rb.out:
            diffs.append(_diff_text(f"`{step}`: stdout differs", ra.out, rb.out))
        if ra.err != rb.err:
            diffs.append(_diff_text(f"`{step}`: stderr differs", ra.err, rb.err))
    if set(a.files) != set(b.files):
        diffs.append(f"files differ: {sorted(a.files)} vs {sorted(b.files)}")
    for name in sorted(set(a.files) & set(b.files)):
        if a.files[name] != b.files[name]:
            diffs.append(f"{name}: bytes differ, {_first_diff(a.files[name], b.files[name])}")
        elif check_extents and a.extents[name] != b.extents[name]:
            diffs.append(f"{name}: data extents differ: {a.extents[name]} vs {b.extents[name]}")
    return diffs


def judge_images(workdir: Path, refdir: Path) -> list[str]:
    """Real ``qemu-img check`` on every qcow2 file in ``workdir``: must be clean
    wherever the same file in ``refdir`` (written by QEMU) is clean."""
    judge = qemu_runner()
    problems = []
    for p in sorted(workdir.iterdir()):
        with open(p, "rb") as f:
            if f.read(4) != b"QFI\xfb":
                continue
        r = judge.run("img", ["check", "-f", "qcow2", p.name], workdir)
        if r.rc == 0:
            continue
        if (refdir / p.name).exists():
            if judge.run("img", ["check", "-f", "qcow2", p.name], refdir).rc != 0:
                continue
        problems.append(f"real qemu-img check {p.name}: exit {r.rc}\n{r.out}{r.err}")
    return problems


@dataclass
class Outcome:
    """Result of one differential run."""

    seq: Sequence
    diffs: list[str]
    dirs: tuple[Path, Path]

    @property
    def ok(self) -> bool:
        return not self.diffs

    def report(self) -> str:
        lines = ["SEQUENCE (run in an empty directory):", str(self.seq), "",
                 f"DIVERGENCES ({len(self.diffs)}); dirs: {self.dirs[0]} {self.dirs[1]}"]
        return "\n".join(lines + self.diffs)


def differential(seq: Sequence, ref: Runner, sut: Runner, base: Path,
                 keep: bool = False, check_extents: bool = True) -> Outcome:
    """Run ``seq`` on reference and system under test; compare; judge the SUT images."""
    da, db = base / "qemu", base / "ours"
    ta = run_sequence(seq, ref, da)
    tb = run_sequence(seq, sut, db)
    diffs = compare_traces(ta, tb, check_extents)
    diffs += judge_images(db, da)
    out = Outcome(seq, diffs, (da, db))
    if out.ok and not keep:
        shutil.rmtree(base, ignore_errors=True)
    return out
