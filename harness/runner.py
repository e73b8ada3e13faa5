"""Running one case: requirements, scratch directory, golden comparison,
cross-implementation comparison, ``.out.bad`` files."""
from __future__ import annotations

import os
import re
import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from harness import golden, imagediff, trash
from harness.backends.base import Backend
from harness.case import Case, load_case
from harness.errors import CaseError
from harness.steps import Executor, StepFailed

REPO = Path(__file__).resolve().parent.parent


@dataclass
class RunConfig:
    """Everything that shapes a run of the case library."""

    imgfmt: str = "qcow2"
    imgopts: str = ""
    cachemode: Optional[str] = None
    impl: str = "emulator"          # emulator | qemu | both
    debug: bool = False
    golden_dir: Path = REPO / "golden"
    scratch_root: Path = REPO / "scratch"
    update_golden: bool = False


@dataclass
class CaseResult:
    """Outcome of one case (status: pass | fail | not run)."""

    name: str
    status: str
    description: str = ""
    elapsed: Optional[float] = None
    diff: list[str] = field(default_factory=list)
    output: str = ""
    start: str = ""


def make_backend(impl: str, sock_dir: str) -> Backend:
    if impl == "emulator":
        from harness.backends.emulator import EmulatorBackend
        return EmulatorBackend()
    from harness.backends.qemu import QemuBackend
    return QemuBackend(sock_dir)


def preload(impl: str) -> None:
    """Import the command lines that ``impl`` runs in process (before workers fork)."""
    if impl in ("emulator", "both"):
        import importlib

        try:
            from emulator.cli import img
            for module in ("emulator.cli.io", *img.COMMANDS.values()):
                importlib.import_module(module)
        except ImportError:  # only a head start: the cases show what is broken
            pass


def scratch_dir(config: RunConfig, impl: str, case_id: str) -> Path:
    """A directory private to this case, implementation, format and option set."""
    key = f"{impl}-{config.imgfmt}"
    if config.imgopts:
        key += "-" + re.sub(r"[^A-Za-z0-9=_.]+", "_", config.imgopts)
    return config.scratch_root / key / case_id


def not_run_reason(case: Case, config: RunConfig, backend: Backend) -> Optional[str]:
    """Why the case does not apply to this run, or None."""
    if config.imgfmt not in case.formats:
        return f"not suitable for this image format: {config.imgfmt}"
    for pattern in case.unsupported_imgopts:
        if re.search(pattern, config.imgopts):
            return f"not suitable for this option: {pattern}"
    if backend.name not in case.impls:
        return f"not suitable for the {backend.name} implementation"
    reason = backend.unavailable()
    if reason:
        return reason
    for machine in case.qmp_machines:
        reason = backend.qmp_unavailable(machine)
        if reason:
            return reason
    return None


@dataclass
class _Run:
    output: str
    test_dir: Path
    files: list[str]
    #: why a step could not be carried out (the harness's fault, not the implementation's)
    step_error: str = ""


def execute(case: Case, config: RunConfig, impl: str,
            test_dir: Optional[Path] = None) -> "_Run | str":
    """Run the case on one implementation; a string is a not-run reason."""
    test_dir = test_dir or scratch_dir(config, impl, case.id)
    shutil.rmtree(test_dir, ignore_errors=True)
    test_dir.mkdir(parents=True)
    backend = make_backend(impl, str(test_dir))
    reason = not_run_reason(case, config, backend)
    if reason:
        shutil.rmtree(test_dir, ignore_errors=True)
        return reason
    ex = Executor(case, backend, str(test_dir), config.imgfmt, config.imgopts,
                  config.cachemode, config.debug)
    step_error = ""
    try:
        output = ex.run()
    except StepFailed as exc:
        step_error = str(exc)
        output = "".join(ex.out) + f"qcowlab harness: step failed: {exc}\n"
    finally:
        backend.close()
    files = sorted(f for f in os.listdir(test_dir) if not f.endswith(".out.bad"))
    return _Run(output, test_dir, files, step_error)


def _first_difference(a: str, b: str) -> tuple[int, str, str]:
    la, lb = a.splitlines(), b.splitlines()
    for i in range(max(len(la), len(lb))):
        x = la[i] if i < len(la) else "<end of output>"
        y = lb[i] if i < len(lb) else "<end of output>"
        if x.rstrip() != y.rstrip():
            return i + 1, x, y
    return 0, "", ""


def _write_bad(run: _Run, case: Case, output: str) -> Path:
    bad = run.test_dir / f"{case.id}.out.bad"
    bad.write_text(output, encoding="utf-8")
    return bad


def _compare_golden(case: Case, config: RunConfig, run: _Run) -> CaseResult:
    ref = golden.lookup(config.golden_dir, case.id, config.imgfmt, config.imgopts)
    if ref is None:
        expected = config.golden_dir / f"{case.id}.out"
        bad = _write_bad(run, case, run.output)
        return CaseResult(case.id, "fail",
                          f"{case.path}:1: no golden file (expected {relative(expected)}; "
                          f"output kept in {relative(bad)})", output=run.output)
    expected_text = ref.read_text(encoding="utf-8")
    changes = golden.diff(expected_text, run.output, relative(ref), relative(run.test_dir / f"{case.id}.out.bad"))
    if changes:
        bad = _write_bad(run, case, run.output)
        return CaseResult(case.id, "fail", f"output mismatch (see {relative(bad)})",
                          diff=changes, output=run.output)
    return CaseResult(case.id, "pass", output=run.output)


def relative(path: Path) -> str:
    """``path`` relative to the working directory where it lies below it (for messages)."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _compare_impls(case: Case, qemu: _Run, emu: _Run) -> CaseResult:
    line, a, b = _first_difference(qemu.output, emu.output)
    if line:
        bad = _write_bad(emu, case, emu.output)
        (qemu.test_dir / f"{case.id}.out.bad").write_text(qemu.output, encoding="utf-8")
        return CaseResult(case.id, "fail", f"emulator and qemu differ at line {line}",
                          diff=[f"--- qemu: {a}", f"+++ emulator: {b}",
                                f"(outputs kept in {relative(qemu.test_dir)} and {relative(bad.parent)})"],
                          output=emu.output)
    for name in sorted(set(qemu.files) | set(emu.files)):
        if name not in qemu.files or name not in emu.files:
            where = "qemu" if name in qemu.files else "emulator"
            return CaseResult(case.id, "fail", f"{name} exists only on {where}")
        msg = imagediff.file_difference(qemu.test_dir / name, emu.test_dir / name)
        if msg:
            return CaseResult(case.id, "fail", f"images differ: {msg}", output=emu.output)
    return CaseResult(case.id, "pass", output=emu.output)


def run_case(path: Path, config: RunConfig) -> CaseResult:
    """Load and run one case file; never raises for a broken case."""
    name = path.stem
    t0 = time.monotonic()
    try:
        case = load_case(Path(relative(path)))
        impls = ["qemu", "emulator"] if config.impl == "both" else [config.impl]
        runs: list[_Run] = []
        for impl in impls:
            # with "both", each implementation runs in the same directory in turn (image
            # files hold absolute backing file names); the QEMU run is then moved aside
            shared = scratch_dir(config, "both", case.id) if config.impl == "both" else None
            run = execute(case, config, impl, shared)
            if isinstance(run, str):
                for r in runs:
                    shutil.rmtree(r.test_dir, ignore_errors=True)
                return CaseResult(name, "not run", run)
            if shared is not None and impl == "qemu":
                aside = shared.with_name(f"{case.id}.qemu")
                shutil.rmtree(aside, ignore_errors=True)
                shared.rename(aside)
                run.test_dir = aside
            runs.append(run)
        if config.impl == "both":
            result = _compare_impls(case, runs[0], runs[1])
        else:
            result = _compare_golden(case, config, runs[0])
    except CaseError as exc:
        return CaseResult(name, "fail", str(exc), elapsed=round(time.monotonic() - t0, 1))
    except Exception as exc:  # a harness bug must not hide the other cases' results
        if config.debug:
            traceback.print_exc()
        return CaseResult(name, "fail", f"harness error: {type(exc).__name__}: {exc}",
                          elapsed=round(time.monotonic() - t0, 1))
    result.elapsed = round(time.monotonic() - t0, 1)
    if result.status == "pass":
        for r in runs:
            trash.discard(r.test_dir)
    return result


def regenerate(path: Path, config: RunConfig, source: str) -> CaseResult:
    """--update-golden: run on ``source`` and store its output as the reference."""
    t0 = time.monotonic()
    try:
        case = load_case(Path(relative(path)))
        run = execute(case, config, source)
        if isinstance(run, str):
            return CaseResult(case.id, "not run", run)
        if run.step_error:  # never store a harness failure as reference output
            return CaseResult(case.id, "fail", f"golden file not updated: step failed: "
                              f"{run.step_error} (scratch kept in {relative(run.test_dir)})")
        shutil.rmtree(run.test_dir, ignore_errors=True)
        what, changes = golden.update(Path(relative(config.golden_dir)), case.id, config.imgfmt,
                                      case.formats[0], config.imgopts, run.output)
    except CaseError as exc:
        return CaseResult(path.stem, "fail", str(exc))
    return CaseResult(case.id, "pass", what, elapsed=round(time.monotonic() - t0, 1),
                      diff=changes)
