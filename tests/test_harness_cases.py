"""Broken cases fail with one ``FILE:LINE: message`` line, never a traceback."""
from __future__ import annotations

from pathlib import Path

import pytest

from harness.case import load_case
from harness.errors import CaseError
from harness.runner import RunConfig, run_case
from harness.selection import all_cases

REPO = Path(__file__).resolve().parent.parent

GOOD = """\
description: a case
groups: [quick]
steps:
  - echo: hello
"""


def write(tmp_path: Path, text: str, name: str = "c1") -> Path:
    cases = tmp_path / "cases"
    cases.mkdir(exist_ok=True)
    path = cases / f"{name}.yaml"
    path.write_text(text)
    return path


def error_of(path: Path) -> CaseError:
    with pytest.raises(CaseError) as info:
        load_case(path)
    return info.value


@pytest.mark.parametrize("text,line,fragment", [
    ("description: x\nsteps:\n  - echo: [1,\n", 4, "YAML error"),
    ("description: x\nsteps:\n  - echo: hi\n  - frobnicate: 1\n", 4, "unknown step 'frobnicate'"),
    ("description: x\nbogus: 1\nsteps:\n  - echo: hi\n", 1, "unknown key 'bogus'"),
    ("description: x\nsteps:\n  - echo: hi\n  - io: read 0 1\n    image: nope\n", 4, "unknown image 'nope'"),
    ("description: x\nsteps:\n  - img: info\n    filters: [nofilter]\n", 4, "unknown filter 'nofilter'"),
    ("description: x\nfilters:\n  - ['(', x]\nsteps:\n  - echo: hi\n", 3, "bad filter regex"),
    ("description: x\nsteps:\n  - inspect: {l3: 0}\n", 3, "inspect needs exactly one of"),
    ("description: x\nsteps:\n  - poke: {l2: 0}\n", 3, "poke needs one target"),
    ("steps:\n  - echo: hi\n", 1, "needs a 'description'"),
    ("- just\n- a list\n", 1, "must be a YAML mapping"),
    ("description: x\nimages:\n  - {name: t, size: 1M, backing: b}\nsteps:\n  - echo: x\n", 3,
     "backing image 'b' must be declared"),
])
def test_broken_case_names_file_and_line(tmp_path: Path, text: str, line: int, fragment: str) -> None:
    path = write(tmp_path, text)
    err = error_of(path)
    assert err.line == line
    assert fragment in err.message
    msg = str(err)
    assert msg.startswith(f"{path}:{line}: ")
    assert "\n" not in msg


def test_broken_case_fails_run_with_one_line(tmp_path: Path) -> None:
    path = write(tmp_path, "description: x\nsteps:\n  - echo: hi\n  - frobnicate: 1\n")
    config = RunConfig(golden_dir=tmp_path / "golden", scratch_root=tmp_path / "scratch")
    res = run_case(path, config)
    assert res.status == "fail"
    assert res.description.endswith("4: unknown step 'frobnicate' (kinds: echo, img, io, "
                                     "create, qmp, inspect, poke, verify)")
    assert "Traceback" not in res.description


def test_missing_golden_fails_naming_case_file(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    config = RunConfig(golden_dir=tmp_path / "golden", scratch_root=tmp_path / "scratch")
    res = run_case(path, config)
    assert res.status == "fail"
    assert res.description.startswith(f"{path}:1: no golden file (expected ")
    assert "c1.out" in res.description
    bad = tmp_path / "scratch" / "emulator-qcow2" / "c1" / "c1.out.bad"
    assert bad.read_text() == "QA output created by c1\nhello\n"


def test_unknown_variable_is_a_case_error(tmp_path: Path) -> None:
    path = write(tmp_path, "description: x\nsteps:\n  - echo: hi\n  - img: info $nothing\n")
    (tmp_path / "golden").mkdir()
    (tmp_path / "golden" / "c1.out").write_text("QA output created by c1\nhi\n")
    res = run_case(path, RunConfig(golden_dir=tmp_path / "golden",
                                   scratch_root=tmp_path / "scratch"))
    assert res.status == "fail"
    assert res.description == f"{path}:4: unknown variable $nothing"


def test_shipped_cases_load_and_have_golden_files() -> None:
    paths = all_cases(REPO / "cases")
    assert len(paths) >= 10
    for path in paths:
        case = load_case(path)
        assert case.description
        assert (REPO / "golden" / f"{case.id}.out").is_file(), case.id
