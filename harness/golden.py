"""Golden (reference) output files: naming, lookup and update.

``golden/ID.out`` is a case's base file.  Variants add the image format
and/or image options the output depends on::

    golden/ID.raw.out                     format raw
    golden/ID@extended_l2=on.out          -o extended_l2=on (any format)
    golden/ID.qcow2@cluster_size=4096,extended_l2=off.out

A variant applies when its format (if any) is the run's format and its
options are a subset of the run's ``-o`` options; the most specific one
(most options, then a format) wins, else the base file.
"""
from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

_NAME = re.compile(r"^(?P<id>[^.@]+)(?:\.(?P<fmt>[a-z0-9]+))?(?:@(?P<opts>[^/]+))?\.out$")


def parse_imgopts(imgopts: str) -> frozenset[tuple[str, str]]:
    """``a=1,b=2`` -> {(a, 1), (b, 2)}; a bare ``flag`` means ``flag=on``."""
    pairs = set()
    for part in filter(None, (p.strip() for p in imgopts.split(","))):
        key, _, value = part.partition("=")
        pairs.add((key, value if _ else "on"))
    return frozenset(pairs)


def opts_text(opts: frozenset[tuple[str, str]]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(opts))


@dataclass(frozen=True)
class Variant:
    """One golden file and the run conditions it stands for."""

    path: Path
    fmt: Optional[str]
    opts: frozenset[tuple[str, str]]

    def applies(self, fmt: str, opts: frozenset[tuple[str, str]]) -> bool:
        return (self.fmt is None or self.fmt == fmt) and self.opts <= opts

    @property
    def specificity(self) -> tuple[int, int]:
        return (len(self.opts), 1 if self.fmt else 0)


def variant_name(case_id: str, fmt: Optional[str], opts: frozenset[tuple[str, str]]) -> str:
    name = case_id + (f".{fmt}" if fmt else "")
    if opts:
        name += "@" + opts_text(opts)
    return name + ".out"


#: golden directory -> (its mtime, its sorted file names): one listing per run, not per case
_listings: dict[Path, tuple[int, list[str]]] = {}


def _names(golden_dir: Path) -> list[str]:
    try:
        mtime = os.stat(golden_dir).st_mtime_ns
    except OSError:  # no golden directory yet
        return []
    listing = _listings.get(golden_dir)
    if listing is None or listing[0] != mtime:
        listing = _listings[golden_dir] = (mtime, sorted(os.listdir(golden_dir)))
    return listing[1]


def variants(golden_dir: Path, case_id: str) -> list[Variant]:
    """All golden files of one case."""
    found = []
    for name in _names(golden_dir):
        if not name.startswith(case_id):
            continue
        m = _NAME.match(name)
        if m and m.group("id") == case_id:
            found.append(Variant(golden_dir / name, m.group("fmt"),
                                 parse_imgopts(m.group("opts") or "")))
    return found


def lookup(golden_dir: Path, case_id: str, fmt: str, imgopts: str) -> Optional[Path]:
    """The most specific golden file for this run, or None."""
    opts = parse_imgopts(imgopts)
    usable = [v for v in variants(golden_dir, case_id) if v.applies(fmt, opts)]
    if not usable:
        return None
    return max(usable, key=lambda v: v.specificity).path


def diff(expected: str, actual: str, expected_name: str, actual_name: str) -> list[str]:
    """Unified diff ignoring trailing spaces, as qemu-iotests' file_diff."""
    a = [line.rstrip() for line in expected.splitlines()]
    b = [line.rstrip() for line in actual.splitlines()]
    return [line.rstrip() for line in
            difflib.unified_diff(a, b, expected_name, actual_name, lineterm="")]


def update(golden_dir: Path, case_id: str, fmt: str, default_fmt: str, imgopts: str,
           actual: str) -> tuple[str, list[str]]:
    """Store ``actual`` as the golden output for this run.

    Returns (what happened, diff lines).  A run with no options and the case's
    default format writes the base file; otherwise a variant for exactly this
    format/options is written, but only if the output differs from the file
    the lookup already finds (so variants exist only where outputs differ).
    """
    opts = parse_imgopts(imgopts)
    own_fmt = None if fmt == default_fmt else fmt
    target = golden_dir / variant_name(case_id, own_fmt, opts)
    current = lookup(golden_dir, case_id, fmt, imgopts)
    old = current.read_text(encoding="utf-8") if current else None
    if old == actual:
        return f"{current}: unchanged", []
    changes = diff(old or "", actual, str(current or target), str(target))
    existed = target.exists()
    golden_dir.mkdir(parents=True, exist_ok=True)
    target.write_text(actual, encoding="utf-8")
    _listings.pop(golden_dir, None)
    return f"{target}: {'updated' if existed else 'created'}", changes
