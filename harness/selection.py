"""Finding and selecting cases: by id, path or glob, by group, --start-from."""
from __future__ import annotations

import fnmatch
from pathlib import Path
from typing import Optional

from harness.case import load_case
from harness.errors import CaseError
from harness.runner import relative


def all_cases(cases_dir: Path) -> list[Path]:
    return sorted(cases_dir.glob("*.yaml"))


def resolve(names: list[str], cases_dir: Path) -> tuple[list[Path], list[str]]:
    """Case files named by id, path or glob; also returns names matching nothing."""
    available = all_cases(cases_dir)
    if not names:
        return available, []
    chosen: list[Path] = []
    missing = []
    for name in names:
        as_path = Path(name)
        if as_path.suffix == ".yaml" and as_path.exists():
            hits = [as_path.resolve()]
        else:
            stem = as_path.name[:-5] if as_path.name.endswith(".yaml") else as_path.name
            hits = [p for p in available if fnmatch.fnmatchcase(p.stem, stem)]
        if not hits:
            missing.append(name)
        for hit in hits:
            if hit not in chosen:
                chosen.append(hit)
    return chosen, missing


def _groups(path: Path) -> Optional[set[str]]:
    try:  # by the path the run loads it by: loaded once
        return set(load_case(Path(relative(path))).groups)
    except CaseError:
        return None


def by_groups(paths: list[Path], include: Optional[str], exclude: Optional[str]) -> list[Path]:
    """Keep cases in any ``include`` group and in no ``exclude`` group (broken cases stay)."""
    inc = set(filter(None, (include or "").split(",")))
    exc = set(filter(None, (exclude or "").split(",")))
    if not inc and not exc:
        return paths
    out = []
    for path in paths:
        groups = _groups(path)
        if groups is None:
            out.append(path)
            continue
        if inc and not groups & inc:
            continue
        if groups & exc:
            continue
        out.append(path)
    return out


def start_from(paths: list[Path], name: Optional[str]) -> list[Path]:
    """Drop the cases before ``name`` (qemu-iotests' --start-from)."""
    if not name:
        return paths
    stem = Path(name).stem if name.endswith(".yaml") else Path(name).name
    for i, path in enumerate(paths):
        if path.stem == stem:
            return paths[i:]
    return []
