"""pytest collector and item for one case file (used by harness.pytest_plugin)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest

from harness.runner import CaseResult, RunConfig, run_case


class CaseFailed(Exception):
    """A case failed; carries the result for the report."""

    def __init__(self, result: CaseResult) -> None:
        super().__init__(result.description)
        self.result = result


class CaseFile(pytest.File):
    """One ``cases/NAME.yaml`` file, yielding one item."""

    def collect(self) -> Iterator[pytest.Item]:
        yield CaseItem.from_parent(self, name=self.path.stem)


class CaseItem(pytest.Item):
    """Runs one case with the run configuration taken from ``--qcowlab-*`` options."""

    def _config(self) -> RunConfig:
        opt = self.config.getoption
        config = RunConfig(imgfmt=opt("--qcowlab-imgfmt"), imgopts=opt("--qcowlab-imgopts") or "",
                           impl=opt("--qcowlab-impl"), cachemode=opt("--qcowlab-cachemode"))
        if opt("--qcowlab-golden-dir"):
            config.golden_dir = Path(opt("--qcowlab-golden-dir"))
        if opt("--qcowlab-scratch-dir"):
            config.scratch_root = Path(opt("--qcowlab-scratch-dir"))
        return config

    def runtest(self) -> None:
        result = run_case(Path(self.path), self._config())
        if result.status == "not run":
            pytest.skip(result.description)
        if result.status == "fail":
            raise CaseFailed(result)

    def repr_failure(self, excinfo: Any, style: Any = None) -> str:
        if isinstance(excinfo.value, CaseFailed):
            res = excinfo.value.result
            return "\n".join([res.description, *res.diff])
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        return Path(self.path), 0, f"case {self.name}"
