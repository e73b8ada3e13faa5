"""Golden file lookup (most specific variant wins) and update."""
from __future__ import annotations

from pathlib import Path

from harness import golden


def touch(d: Path, name: str, text: str = "x\n") -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_text(text)
    return d / name


def test_lookup_picks_most_specific(tmp_path: Path) -> None:
    base = touch(tmp_path, "c.out")
    ext = touch(tmp_path, "c@extended_l2=on.out")
    both = touch(tmp_path, "c@cluster_size=4096,extended_l2=on.out")
    raw = touch(tmp_path, "c.raw.out")
    touch(tmp_path, "cx.out")
    assert golden.lookup(tmp_path, "c", "qcow2", "") == base
    assert golden.lookup(tmp_path, "c", "qcow2", "extended_l2=on") == ext
    assert golden.lookup(tmp_path, "c", "qcow2", "refcount_bits=8,extended_l2=on") == ext
    assert golden.lookup(tmp_path, "c", "qcow2", "extended_l2=on,cluster_size=4096") == both
    assert golden.lookup(tmp_path, "c", "qcow2", "cluster_size=4096") == base
    assert golden.lookup(tmp_path, "c", "raw", "") == raw
    assert golden.lookup(tmp_path, "c", "qcow2", "extended_l2=off") == base


def test_lookup_none_without_files(tmp_path: Path) -> None:
    assert golden.lookup(tmp_path, "c", "qcow2", "") is None


def test_format_variant_beats_base_but_not_option_variant(tmp_path: Path) -> None:
    touch(tmp_path, "c.out")
    q = touch(tmp_path, "c.qcow2.out")
    e = touch(tmp_path, "c@extended_l2=on.out")
    assert golden.lookup(tmp_path, "c", "qcow2", "") == q
    assert golden.lookup(tmp_path, "c", "qcow2", "extended_l2=on") == e


def test_update_writes_variant_only_when_output_differs(tmp_path: Path) -> None:
    what, changes = golden.update(tmp_path, "c", "qcow2", "qcow2", "", "a\n")
    assert what.endswith("c.out: created")
    what, changes = golden.update(tmp_path, "c", "qcow2", "qcow2", "extended_l2=on", "a\n")
    assert what.endswith("c.out: unchanged") and not changes
    assert not (tmp_path / "c@extended_l2=on.out").exists()
    what, changes = golden.update(tmp_path, "c", "qcow2", "qcow2", "extended_l2=on", "b\n")
    assert what.endswith("c@extended_l2=on.out: created")
    assert "-a" in changes and "+b" in changes
    assert (tmp_path / "c.out").read_text() == "a\n"
    what, _ = golden.update(tmp_path, "c", "qcow2", "qcow2", "extended_l2=on", "c\n")
    assert what.endswith("c@extended_l2=on.out: updated")


def test_diff_ignores_trailing_spaces() -> None:
    assert golden.diff("a \nb\n", "a\nb  \n", "x", "y") == []
    assert golden.diff("a\n", "b\n", "x", "y")[:2] == ["--- x", "+++ y"]
