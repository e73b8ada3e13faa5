"""tools/inspect.py on images written by QEMU 7.2 (values measured on QEMU,
see /work/shared/qcow2-facts.md); skipped without QEMU."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from harness.backends.qemu import find_program
from tools import inspect as insp

QEMU_IMG = find_program("qemu-img")
QEMU_IO = find_program("qemu-io")
pytestmark = pytest.mark.skipif(not (QEMU_IMG and QEMU_IO),
                                reason="QEMU 7.2 (qemu-img, qemu-io) not installed")


def make(tmp_path: Path, opts: str, *cmds: str, size: str = "64M") -> str:
    img = str(tmp_path / "t.qcow2")
    subprocess.run([QEMU_IMG, "create", "-f", "qcow2", "-o", opts, img, size], check=True,
                   capture_output=True)
    for cmd in cmds:
        subprocess.run([QEMU_IO, "-f", "qcow2", "-c", cmd, img], check=True, capture_output=True)
    return img


def test_extended_l2_entry_after_4k_write(tmp_path: Path) -> None:
    img = make(tmp_path, "extended_l2=on", "write -P 0x11 0 4k")
    with insp.Image(img) as image:
        info = image.l2(0)
        assert info.l1.l2_offset == 0x40000
        assert (info.entry, info.bitmap) == (0x8000000000050000, 0x3)
        assert info.subcluster_map() == "DD" + "a" * 30
        assert image.refcount(info.host_offset) == 1
        assert image.header.incompatible_features == 0x10
    assert insp.describe_l2(insp.Image(img), 0)[0] == \
        "L2 entry #0 (guest offset 0): 0x8000000000050000 0000000000000003"


def test_zero_unmapped_cluster(tmp_path: Path) -> None:
    img = make(tmp_path, "extended_l2=on", "write -P 1 0 64k", "write -z -u 0 64k")
    with insp.Image(img) as image:
        info = image.l2(0)
        assert (info.entry, info.bitmap) == (0, 0xFFFFFFFF00000000)
        assert info.subcluster_map() == "z" * 32
        assert image.refcount(0x50000) == 0


def test_standard_entry_and_missing_l2(tmp_path: Path) -> None:
    img = make(tmp_path, "extended_l2=off", "write -P 1 64k 4k", size="1G")
    with insp.Image(img) as image:
        info = image.l2(64 * 1024)
        assert info.entry == 0x8000000000050000 and not info.extended
        assert image.l2(512 * 1024 * 1024).file_offset is None  # second L1 entry, no table
        with pytest.raises(insp.InspectError):
            image.l2(1024 * 1024 * 1024)


def test_refcount_poke_round_trip_1_bit(tmp_path: Path) -> None:
    img = make(tmp_path, "refcount_bits=1", "write 0 4k")
    with insp.Image(img, writable=True) as image:
        host = image.l2(0).host_offset
        assert image.refcount(host) == 1
        image.set_refcount(host, 0)
        assert image.refcount(host) == 0
        assert image.refcount(0) == 1


def test_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    img = make(tmp_path, "extended_l2=on")
    assert insp.main([img, "header", "incompatible_features", "l1_size"]) == 0
    assert capsys.readouterr().out == "incompatible_features: 0x10\nl1_size: 1\n"
    assert insp.main([img, "l2", "nonsense"]) == 1
    assert insp.main([str(tmp_path / "missing"), "header"]) == 1
