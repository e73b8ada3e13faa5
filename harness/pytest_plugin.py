"""pytest plugin collecting qcowlab YAML cases (cases/*.yaml) as test items.

Only files named ``*.yaml`` directly inside a directory called ``cases`` are
collected; everything else (tests/, other YAML) is left to pytest.
"""
from __future__ import annotations

from pathlib import Path

import pytest


def _is_case_file(path: Path) -> bool:
    return path.suffix == ".yaml" and path.parent.name == "cases"


def pytest_collect_file(parent: pytest.Collector, file_path: Path):  # type: ignore[no-untyped-def]
    """Collect ``cases/*.yaml`` files; ignore every other file."""
    if not _is_case_file(file_path):
        return None
    try:
        from harness.pytest_cases import CaseFile
    except ImportError:
        return None
    return CaseFile.from_parent(parent, path=file_path)
