"""Internal snapshots: create/apply/delete through the driver leave the same
image as `qemu-img snapshot -c/-a/-d` (dates are taken from QEMU's table)."""
from __future__ import annotations

import struct
import subprocess

import pytest

from emulator.block.node import BlockError
from emulator.block.open import close_image, open_image
from emulator.qcow2 import snapshot as snap
from tests.qcow2_support import requires_qemu, same_image
from tests.test_qcow2_io import _extents

pytestmark = requires_qemu


def _snapshot_times(path) -> list[tuple[int, int, int, int]]:
    """(date_sec, date_nsec, vm_clock_nsec, icount) of each snapshot table entry."""
    data = path.read_bytes()
    nb, off = struct.unpack_from(">IQ", data, 60)
    out = []
    for _ in range(nb):
        off = -(-off // 8) * 8
        _, _, id_size, name_size, sec, nsec, clock, _, extra = \
            struct.unpack_from(">QIHHIIQII", data, off)
        icount = struct.unpack_from(">Q", data, off + 40 + 16)[0] if extra >= 24 else 0
        out.append((sec, nsec, clock, icount))
        off += 40 + extra + id_size + name_size
    return out


def _run(tmp_path, spec, steps):
    q, e = tmp_path / "q.qcow2", tmp_path / "e.qcow2"
    for path in (q, e):
        subprocess.run(f"qemu-img create -f qcow2 {spec} {path} 4M", shell=True, check=True,
                       capture_output=True)
    for kind, arg in steps:
        if kind == "io":
            for path in (q, e):
                subprocess.run(["qemu-io", "-c", arg, str(path)], check=True,
                               capture_output=True)
            continue
        r = subprocess.run(["qemu-img", "snapshot", "-" + kind, arg, str(q)],
                           capture_output=True, text=True)
        node = open_image(str(e), "qcow2")
        try:
            if kind == "c":
                times = _snapshot_times(q)
                when = times[-1] if len(times) > len(node.snapshots) else (0, 0, 0, 0)
                snap.snapshot_create(node, arg, *when)
            elif kind == "a":
                snap.snapshot_goto(node, arg)
            else:
                snap.snapshot_delete(node, None, arg)
            assert r.returncode == 0
        except BlockError:
            assert r.returncode != 0
        finally:
            close_image(node)
    assert same_image(str(q), str(e))
    assert _extents(q) == _extents(e)


@pytest.mark.parametrize("spec,steps", [
    ("", [("io", "write -P 1 0 64k"), ("c", "s1"), ("io", "write -P 2 0 4k")]),
    ("-o extended_l2=on", [("io", "write -P 1 0 64k"), ("c", "s1"), ("io", "write -P 2 0 4k"),
                           ("c", "s2"), ("io", "write -z 0 64k")]),
    ("", [("io", "write -P 1 0 128k"), ("c", "s1"), ("io", "write -P 2 0 4k"), ("a", "s1"),
          ("io", "write -P 3 64k 4k")]),
    ("", [("io", "write -P 1 0 128k"), ("c", "s1"), ("io", "write -P 2 0 4k"), ("d", "s1"),
          ("io", "write -P 3 64k 4k")]),
    ("-o compat=0.10", [("io", "write -P 1 0 128k"), ("c", "s1"), ("c", "s2"), ("d", "s1"),
                        ("a", "s2"), ("io", "write -c -P 3 1M 64k"), ("c", "s3")]),
    ("-o refcount_bits=1", [("io", "write -P 1 0 128k"), ("c", "s1")]),
    ("-o refcount_bits=2", [("io", "write -P 1 0 128k"), ("c", "s1"), ("c", "s2"), ("c", "s3"),
                            ("io", "write -P 2 0 64k"), ("d", "s2"), ("c", "s4")]),
    ("-o extended_l2=on,refcount_bits=64", [("io", "write -P 1 0 1M"), ("c", "s1"),
                                            ("io", "write -z -u 0 512k"), ("a", "s1"),
                                            ("d", "s1"), ("d", "nothere"), ("a", "nothere")]),
    ("-o cluster_size=512", [("io", "write -P 1 0 1M"), ("c", "s1"),
                             ("io", "write -P 2 4k 1k"), ("a", "s1")]),
])
def test_snapshots_match_qemu_img(tmp_path, spec, steps):
    _run(tmp_path, spec, steps)


@pytest.mark.parametrize("spec", ["", "-o extended_l2=on", "-o compat=0.10",
                                  "-o cluster_size=512", "-o refcount_bits=1"])
def test_make_empty_after_commit_matches_qemu(tmp_path, spec):
    """Qcow2.make_empty (what qemu-img commit does to the top image afterwards)."""
    import shutil
    for d in ("q", "e"):
        (tmp_path / d).mkdir()
        subprocess.run(f"qemu-img create -f qcow2 b.qcow2 1M && "
                       f"qemu-img create -f qcow2 {spec} -b b.qcow2 -F qcow2 t.qcow2 && "
                       f"qemu-io -c 'write -P 1 0 64k' -c 'write -P 2 512k 4k' t.qcow2",
                       shell=True, check=True, capture_output=True, cwd=tmp_path / d)
    subprocess.run(["qemu-img", "commit", "t.qcow2"], check=True, capture_output=True,
                   cwd=tmp_path / "q")
    # the base as QEMU committed it; the top emptied by the emulator
    shutil.copy(tmp_path / "q" / "b.qcow2", tmp_path / "e" / "b.qcow2")
    node = open_image(str(tmp_path / "e" / "t.qcow2"), "qcow2", no_backing=True)
    node.make_empty()
    close_image(node)
    assert same_image(str(tmp_path / "q" / "t.qcow2"), str(tmp_path / "e" / "t.qcow2"))
