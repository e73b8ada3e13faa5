"""Broken cases fail with one ``FILE:LINE: message`` line, never a traceback."""
from __future__ import annotations

from pathlib import Path

import pytest

from harness.backends.base import Backend, Result
from harness.case import load_case
from harness.errors import CaseError
from harness.runner import RunConfig, run_case
from harness.selection import all_cases
from harness.steps import Executor

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
    ("description: x\nobjects: [secret,id=sec0,data=pw]\nsteps:\n  - echo: x\n", 2,
     "object 'id=sec0' has no type (in a [...] list, quote each object"),
    ("description: x\nobjects: secret,id=sec0\nsteps:\n  - echo: x\n", 1,
     "'objects' must be a list"),
    ("description: x\nsteps:\n  - echo: x\n  - io: read 0 1\n    objects:\n"
     "      - {id: sec0, data: pw}\n", 6, "an object mapping needs a 'qom-type'"),
    ("description: x\nsteps:\n  - img: info\n    image_opts: x\n", 3,
     "unknown option 'image_opts' for step 'img'"),
    ("description: x\nimages:\n  - {name: test, size: 1M, image_opts: [a]}\nsteps:\n"
     "  - echo: x\n", 3, "'image_opts' must be a string, a mapping, true or false"),
    ("description: x\nfiles:\n  ../pw: x\nsteps:\n  - echo: x\n", 3, "bad file name '../pw'"),
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


class Recorder(Backend):
    """Records the argv of every call; fails the first LUKS-style create once."""

    name = "emulator"

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def unavailable(self) -> None:
        return None

    def qemu_img(self, argv: list[str]) -> Result:
        self.calls.append(["qemu-img"] + argv)
        flaky = len(self.calls) == 1
        return Result("qemu-img: Unable to get accurate CPU usage\n" if flaky else "", int(flaky))

    def qemu_io(self, argv: list[str], commands: list[str], session: bool = False) -> Result:
        self.calls.append(["qemu-io"] + argv)
        return Result("", 0)


def test_objects_and_image_opts_reach_the_commands(tmp_path: Path) -> None:
    path = write(tmp_path, """\
description: x
objects:
  - secret,id=sec0,data=pw
  - {qom-type: secret, id: sec1, file: $TEST_DIR/pw}
files: {pw: furby}
images:
  - {name: test, size: 1M, image_opts: encrypt.key-secret=sec0,
     options: 'encrypt.format=luks,encrypt.key-secret=sec0'}
steps:
  - io: read 0 1
  - io: read 0 1
    objects: ['secret,id=sec0,data=wrong']
    image_opts: ""
  - img: info $TEST_IMG
""")
    rec = Recorder()
    out = Executor(load_case(path), rec, str(tmp_path), "qcow2").run()
    d = str(tmp_path)
    objs = ["--object", "secret,id=sec0,data=pw", "--object", f"secret,id=sec1,file={d}/pw"]
    create = ["qemu-img", "create"] + objs + ["-f", "qcow2", "-o",
                                             "encrypt.format=luks,encrypt.key-secret=sec0",
                                             f"{d}/t.qcow2", "1M"]
    assert rec.calls == [
        create, create,  # run again: QEMU's PBKDF2 benchmark failed
        ["qemu-io"] + objs + ["--image-opts",
                              f"driver=qcow2,file.filename={d}/t.qcow2,encrypt.key-secret=sec0"],
        ["qemu-io", "--object", "secret,id=sec0,data=wrong", "--object",
         f"secret,id=sec1,file={d}/pw", "--image-opts", f"driver=qcow2,file.filename={d}/t.qcow2"],
        ["qemu-img", "info"] + objs + [f"{d}/t.qcow2"],
    ]
    assert (tmp_path / "pw").read_text() == "furby"
    assert "CPU usage" not in out


def test_qmp_job_that_failed_in_the_pbkdf2_benchmark_runs_again(tmp_path: Path) -> None:
    from harness.backends.qmp_machine import Exchange

    class Machine(Recorder):
        def qmp_unavailable(self, machine: str) -> None:
            return None

        def qmp(self, machine: str, command: dict) -> Exchange:
            self.calls.append([command["execute"]])
            if command["execute"] == "query-jobs":
                return Exchange({"return": [{"id": "c0", "error":
                                             "Unable to get accurate CPU usage"}]})
            if command["execute"] == "blockdev-create":
                status = "aborting" if self.calls.count(["blockdev-create"]) == 1 else "pending"
                return Exchange({"return": {}}, [{"event": "JOB_STATUS_CHANGE",
                                                  "data": {"status": status, "id": "c0"}}])
            return Exchange({"return": {}})

    path = write(tmp_path, "description: x\nsteps:\n  - qmp: {execute: blockdev-create, "
                           "arguments: {job-id: c0}}\n")
    rec = Machine()
    out = Executor(load_case(path), rec, str(tmp_path), "qcow2").run()
    assert rec.calls == [["blockdev-create"], ["query-jobs"], ["job-dismiss"],
                         ["blockdev-create"]]
    assert "aborting" not in out and '"pending"' in out
