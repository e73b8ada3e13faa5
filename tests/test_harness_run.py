"""End-to-end behaviour of ./check: result lines, summary, exit status,
.out.bad on a changed golden byte, --update-golden, pytest collection."""
from __future__ import annotations

import io
import shutil
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from harness import cli
from harness.backends.qemu import find_program

REPO = Path(__file__).resolve().parent.parent
HAVE_QEMU = bool(find_program("qemu-img") and find_program("qemu-io"))
needs_qemu = pytest.mark.skipif(not HAVE_QEMU, reason="QEMU 7.2 (qemu-img, qemu-io) not installed")

ECHO_CASE = "description: only echo steps\ngroups: [quick]\nsteps:\n  - echo: hello\n  - echo: world\n"
ECHO_OUT = "QA output created by c1\nhello\nworld\n"


def check(tmp_path: Path, *args: str) -> tuple[int, str]:
    out = io.StringIO()
    with redirect_stdout(out):
        status = cli.main(["--cases-dir", str(tmp_path / "cases"),
                           "--golden-dir", str(tmp_path / "golden"),
                           "--scratch-dir", str(tmp_path / "scratch"), "--color", "off", *args])
    return status, out.getvalue()


@pytest.fixture
def lib(tmp_path: Path) -> Path:
    (tmp_path / "cases").mkdir()
    (tmp_path / "golden").mkdir()
    (tmp_path / "cases" / "c1.yaml").write_text(ECHO_CASE)
    (tmp_path / "golden" / "c1.out").write_text(ECHO_OUT)
    return tmp_path


def test_pass_line_and_summary(lib: Path) -> None:
    status, out = check(lib, "c1")
    assert status == 0
    lines = out.splitlines()
    assert any(line.startswith("c1   pass       [") for line in lines)
    assert lines[-1] == "Passed all 1 iotests"
    assert not (lib / "scratch" / "emulator-qcow2" / "c1").exists()


def test_changed_golden_byte_fails_with_diff_and_out_bad(lib: Path) -> None:
    (lib / "golden" / "c1.out").write_text(ECHO_OUT.replace("world", "worle"))
    status, out = check(lib, "c1")
    assert status != 0
    assert "c1   fail" in out
    assert "-worle" in out and "+world" in out
    assert out.splitlines()[-2:] == ["Failures: c1", "Failed 1 of 1 iotests"]
    bad = lib / "scratch" / "emulator-qcow2" / "c1" / "c1.out.bad"
    assert bad.read_text() == ECHO_OUT


def test_not_run_reason(lib: Path) -> None:
    (lib / "cases" / "c2.yaml").write_text(ECHO_CASE + "requires:\n  formats: [raw]\n")
    status, out = check(lib)
    assert status == 0
    assert "not suitable for this image format: qcow2" in out
    assert out.splitlines()[-2:] == ["Not run: c2", "Passed all 1 iotests"]


def test_tap_and_junit(lib: Path) -> None:
    status, out = check(lib, "-tap", "--junit", str(lib / "j.xml"), "c1")
    assert status == 0
    assert "1..1" in out and "ok qcow2 c1" in out
    assert 'name="c1"' in (lib / "j.xml").read_text()


def test_unknown_case_name(lib: Path) -> None:
    status, _ = check(lib, "nonexistent")
    assert status == 1


def test_broken_case_reported_not_raised(lib: Path) -> None:
    (lib / "cases" / "c3.yaml").write_text("description: x\nsteps:\n  - zap: 1\n")
    status, out = check(lib, "c3")
    assert status == 1
    line = next(line for line in out.splitlines() if line.startswith("c3 "))
    assert "c3.yaml:3: unknown step 'zap'" in line
    assert "Traceback" not in out


def test_pytest_collects_only_case_files() -> None:
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                           "-p", "no:cacheprovider", "cases/"],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    ids = [line for line in proc.stdout.splitlines() if "::" in line]
    assert len(ids) == len(list((REPO / "cases").glob("*.yaml")))
    assert all(i.startswith("cases/") and i.endswith(i.split("::")[0][6:-5]) for i in ids)


@needs_qemu
def test_qemu_changed_golden_byte_then_update_restores(tmp_path: Path) -> None:
    (tmp_path / "cases").mkdir()
    shutil.copy(REPO / "cases" / "write-read.yaml", tmp_path / "cases")
    shutil.copytree(REPO / "golden", tmp_path / "golden",
                    ignore=lambda d, names: [n for n in names if not n.startswith("write-read")])
    golden = tmp_path / "golden" / "write-read.out"
    original = golden.read_bytes()
    changed = bytearray(original)
    pos = original.index(b"offset 65536")
    changed[pos + 7] = ord("7")
    golden.write_bytes(bytes(changed))
    status, out = check(tmp_path, "--impl", "qemu", "write-read")
    assert status == 1
    assert "output mismatch" in out and "-wrote 131072/131072 bytes at offset 75536" in out
    assert (tmp_path / "scratch" / "qemu-qcow2" / "write-read" / "write-read.out.bad").exists()
    status, out = check(tmp_path, "--update-golden", "write-read")
    assert status == 0
    assert "write-read.out: updated" in out
    assert golden.read_bytes() == original
    status, _ = check(tmp_path, "--impl", "qemu", "write-read")
    assert status == 0


@needs_qemu
def test_qemu_parallel_run(tmp_path: Path) -> None:
    (tmp_path / "cases").mkdir()
    for name in ("write-read", "check-leak", "ext-zero"):
        shutil.copy(REPO / "cases" / f"{name}.yaml", tmp_path / "cases")
    shutil.copytree(REPO / "golden", tmp_path / "golden")
    status, out = check(tmp_path, "--impl", "qemu", "-j", "2")
    assert status == 0, out
    assert out.splitlines()[-1] == "Passed all 3 iotests"


def test_parallel_run(lib: Path) -> None:
    (lib / "cases" / "c2.yaml").write_text(ECHO_CASE)
    (lib / "golden" / "c2.out").write_text(ECHO_OUT.replace("c1", "c2").replace("world", "x"))
    status, out = check(lib, "-j", "2")
    assert status == 1
    lines = out.splitlines()
    assert any(line.startswith("c1   pass ") for line in lines)
    assert any(line.startswith("c2   fail ") for line in lines)
    assert "-x" in lines and "+world" in lines
    assert lines[-2:] == ["Failures: c2", "Failed 1 of 2 iotests"]


def test_update_golden_never_stores_a_harness_failure(lib: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A QMP machine that cannot start fails the update and leaves golden/ untouched."""
    (lib / "cases" / "q1.yaml").write_text(
        "description: one QMP command\nsteps:\n  - qmp: {execute: query-version}\n")
    monkeypatch.setenv("QSD_PROG", "/bin/false")
    status, out = check(lib, "--update-golden", "q1")
    assert status != 0
    assert "golden file not updated: step failed" in out
    assert not (lib / "golden" / "q1.out").exists()


def test_parallel_hands_out_unknown_then_longest_cases_first(lib: Path) -> None:
    from harness import parallel
    from harness.runner import RunConfig
    for name in ("c2", "c3"):
        (lib / "cases" / f"{name}.yaml").write_text(ECHO_CASE)
    last = {"c1": 0.0, "c3": 5.0}.get  # c2 never ran
    config = RunConfig(golden_dir=lib / "golden", scratch_root=lib / "scratch")
    paths = sorted((lib / "cases").glob("*.yaml"))
    # one worker: results come in the order the cases were handed out
    assert [r.name for r in parallel.run_cases(paths, config, 1, last)] == ["c2", "c3", "c1"]
