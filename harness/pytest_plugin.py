"""pytest plugin collecting qcowlab YAML cases (cases/*.yaml) as test items.

Only ``*.yaml`` files directly inside a directory called ``cases`` are
collected; everything else (tests/, other YAML) is left to pytest.  Options
``--qcowlab-*`` choose format, image options and implementation
(``pytest -n N cases/`` runs them on pytest-xdist).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("qcowlab", "qcowlab cases (cases/*.yaml)")
    group.addoption("--qcowlab-imgfmt", default="qcow2", help="image format (qcow2, raw)")
    group.addoption("--qcowlab-imgopts", default="", help="options merged into every image")
    group.addoption("--qcowlab-impl", default="emulator", choices=["emulator", "qemu", "both"])
    group.addoption("--qcowlab-cachemode", default=None, help="cache mode passed to qemu-io")
    group.addoption("--qcowlab-golden-dir", default=None, help="golden files directory")
    group.addoption("--qcowlab-scratch-dir", default=None, help="root of the scratch directories")


def _is_case_file(path: Path) -> bool:
    return path.suffix == ".yaml" and path.parent.name == "cases"


def pytest_collect_file(parent: pytest.Collector, file_path: Path) -> Optional[Any]:
    """Collect ``cases/*.yaml`` files; ignore every other file."""
    if not _is_case_file(file_path):
        return None
    from harness.pytest_cases import CaseFile
    return CaseFile.from_parent(parent, path=file_path)
