"""qcow2 check against real `qemu-img check` on clean and deliberately corrupted images.

Each case builds an image with QEMU, pokes bytes to corrupt it, then runs
`qemu-img check [-r ...] --output=json` on one copy and emulator.qcow2.check
(in qemu-img check's open/check/double-check sequence) on another; the
per-cluster stderr messages, the result counters and (after repairs) the
image bytes must be identical.
"""
from __future__ import annotations

import io as _stdio
import json
import shutil
import struct
import subprocess
from contextlib import redirect_stderr
from typing import Callable, Optional

import pytest

pytestmark = pytest.mark.skipif(shutil.which("qemu-img") is None or shutil.which("qemu-io") is None,
                                reason="qemu-img/qemu-io (QEMU 7.2) not installed")

FIX = {None: 0, "leaks": 1, "all": 3}


def qemu_img(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["qemu-img", *args], capture_output=True, text=True)


def qemu_io(img: str, *cmds: str, fmt: str = "qcow2") -> None:
    argv = ["qemu-io", "-f", fmt]
    for c in cmds:
        argv += ["-c", c]
    subprocess.run(argv + [img], check=True, capture_output=True)


def make(path: str, size: str = "1M", opts: str = "", cmds: tuple = ()) -> str:
    args = ["create", "-f", "qcow2"] + (["-o", opts] if opts else []) + [path, size]
    subprocess.run(["qemu-img", *args], check=True, capture_output=True)
    if cmds:
        qemu_io(path, *cmds)
    return path


def poke(path: str, offset: int, data: bytes) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def u64(path: str, offset: int) -> int:
    with open(path, "rb") as f:
        f.seek(offset)
        return struct.unpack(">Q", f.read(8))[0]


def emulated_check(path: str, repair: Optional[str]) -> tuple[dict, str, Optional[int]]:
    """qemu-img check's sequence in process: (json-like fields, stderr, error errno)."""
    from emulator.block.node import BlockError
    from emulator.block.open import OPEN_FLAG, close_image, open_image
    from emulator.qcow2.check import check
    fix = FIX[repair]
    err = _stdio.StringIO()
    fields: dict = {}
    failure = None
    with redirect_stderr(err):
        node = open_image(path, "qcow2", read_only=not fix, options={"x-check": OPEN_FLAG})
        try:
            res = check(node, fix)
            if res.corruptions_fixed or res.leaks_fixed:
                fixed = (res.corruptions_fixed, res.leaks_fixed)
                res = check(node, 0)
                res.corruptions_fixed, res.leaks_fixed = fixed
            fields = {
                "check-errors": res.check_errors, "corruptions": res.corruptions,
                "leaks": res.leaks, "corruptions-fixed": res.corruptions_fixed,
                "leaks-fixed": res.leaks_fixed, "image-end-offset": res.image_end_offset,
                "total-clusters": res.bfi.total_clusters,
                "allocated-clusters": res.bfi.allocated_clusters,
                "fragmented-clusters": res.bfi.fragmented_clusters,
                "compressed-clusters": res.bfi.compressed_clusters,
            }
        except BlockError as e:
            failure = e.errno
        finally:
            close_image(node)
    return fields, err.getvalue(), failure


def real_check(path: str, repair: Optional[str]) -> tuple[dict, str, int]:
    args = ["check", "--output=json", "-f", "qcow2"] + (["-r", repair] if repair else []) + [path]
    p = qemu_img(*args)
    fields = {}
    if p.stdout.strip():
        data = json.loads(p.stdout)
        for key in ("check-errors", "corruptions", "leaks", "corruptions-fixed", "leaks-fixed",
                    "image-end-offset", "total-clusters", "allocated-clusters",
                    "fragmented-clusters", "compressed-clusters"):
            fields[key] = data.get(key, 0)
    return fields, p.stderr, p.returncode


def compare(tmp_path, build: Callable[[str], None], repair: Optional[str] = None) -> str:
    base = str(tmp_path / "base.qcow2")
    build(base)
    a, b = str(tmp_path / "a.qcow2"), str(tmp_path / "b.qcow2")
    shutil.copy(base, a)
    shutil.copy(base, b)
    want_fields, want_err, rc = real_check(a, repair)
    got_fields, got_err, failure = emulated_check(b, repair)
    if "qemu-img: Check failed:" in want_err:  # check returned an error code
        assert failure is not None, got_err
        want_err = want_err[:want_err.index("qemu-img: Check failed:")]
    else:
        assert failure is None
        assert got_fields == want_fields
        if "qemu-img: Check failed\n" in want_err:  # check_errors counted
            assert got_fields["check-errors"]
            want_err = want_err.replace("qemu-img: Check failed\n", "")
    assert got_err == want_err
    with open(a, "rb") as fa, open(b, "rb") as fb:
        assert fa.read() == fb.read(), "image bytes differ after check"
    return want_err


# ----------------------------------------------------------------- image builders

def clean(path: str) -> None:
    make(path, "4M", cmds=("write -P 0x11 0 64k", "write -P 0x22 1M 200k", "write -c 3M 64k"))


def clean_ext(path: str) -> None:
    make(path, "4M", "extended_l2=on", cmds=("write -P 0x11 8k 4k", "write -z 128k 64k",
                                             "write 1M 64k", "discard 1M 64k"))


def l2_offset(path: str, index: int = 0) -> int:
    l1 = u64(path, 40)
    return u64(path, l1 + 8 * index) & 0x00FFFFFFFFFFFE00


def refblock0(path: str) -> int:
    return u64(path, u64(path, 48)) & ~0x1FF


def leaked(path: str) -> None:
    make(path, cmds=("write 0 128k", "discard 0 64k"))
    poke(path, refblock0(path) + 2 * 5, b"\0\1")  # cluster 5: freed, refcount 1 again


def refcount_too_low(path: str) -> None:
    make(path, cmds=("write 0 64k", "write 64k 64k"))
    poke(path, refblock0(path) + 2 * 5, b"\0\0")  # data cluster 5 at 0x50000


def refcount_too_high(path: str) -> None:
    make(path, cmds=("write 0 64k",))
    poke(path, refblock0(path) + 2 * 5, b"\0\2")


def both_bits(path: str) -> None:
    make(path, opts="extended_l2=on", cmds=("write 0 4k",))
    poke(path, l2_offset(path) + 8, struct.pack(">Q", 0x0000000100000001))


def unaligned_data(path: str) -> None:
    make(path, cmds=("write 0 64k",))
    poke(path, l2_offset(path), struct.pack(">Q", 0x8000000000050200))


def unaligned_prealloc(path: str) -> None:
    make(path, opts="extended_l2=on,preallocation=metadata")
    poke(path, l2_offset(path) + 16, struct.pack(">Q", 0x8000000000050200))


def l2_beyond_eof(path: str) -> None:
    make(path, cmds=("write 0 64k",))
    poke(path, u64(path, 40), struct.pack(">Q", 0x8000000000800000))


def compressed_copied(path: str) -> None:
    make(path, cmds=("write -c 0 64k",))
    off = l2_offset(path)
    poke(path, off, struct.pack(">Q", u64(path, off) | (1 << 63)))


def copied_missing(path: str) -> None:
    make(path, cmds=("write 0 64k",))
    off = l2_offset(path)
    poke(path, off, struct.pack(">Q", u64(path, off) & ~(1 << 63)))


def l1_reserved(path: str) -> None:
    make(path, cmds=("write 0 64k",))
    l1 = u64(path, 40)
    poke(path, l1, struct.pack(">Q", u64(path, l1) | 0x100))


def refblock_outside(path: str) -> None:
    make(path, cmds=("write 0 64k",))
    rt = u64(path, 48)
    poke(path, rt + 8, struct.pack(">Q", 0x1000000))


def unallocated_with_alloc_bits(path: str) -> None:
    make(path, opts="extended_l2=on", cmds=("write 0 4k",))
    poke(path, l2_offset(path) + 16 + 8, struct.pack(">Q", 0x3))


def reftable_garbage(path: str) -> None:
    """Reserved bits and an unaligned refblock: fatal corruption, then ENOMEDIUM."""
    make(path, opts="extended_l2=on", cmds=("write 0 64k", "write -c 128k 64k"))
    poke(path, u64(path, 48), struct.pack(">Q", 0x0B3510B0B46EE1DA))


def refblock_at_2_63(path: str) -> None:
    """A refblock 'outside the image' that cannot be reached by resizing."""
    make(path, cmds=("write 0 64k",))
    poke(path, u64(path, 48), struct.pack(">Q", 1 << 63))


def data_file_copied_missing(path: str) -> None:
    """External data file: data clusters are not refcounted, COPIED must still be set."""
    make(path, opts=f"data_file={path}.data", cmds=("write 0 128k",))
    off = l2_offset(path)
    poke(path, off + 8, struct.pack(">Q", u64(path, off + 8) & ~(1 << 63)))


def with_snapshots(path: str) -> None:
    make(path, cmds=("write -P 1 0 128k",))
    subprocess.run(["qemu-img", "snapshot", "-c", "snap1", path], check=True)
    qemu_io(path, "write -P 2 64k 64k", "write 512k 64k")
    subprocess.run(["qemu-img", "snapshot", "-c", "second", path], check=True)


def snapshot_shared_refcount_low(path: str) -> None:
    with_snapshots(path)
    poke(path, refblock0(path) + 2 * 5, b"\0\1")  # shared by the snapshots: really 3


def snapshot_l1_unaligned(path: str) -> None:
    with_snapshots(path)
    table = u64(path, 64)
    poke(path, table, struct.pack(">Q", u64(path, table) + 0x200))


def snapshot_incomplete(path: str) -> None:
    """First entry rewritten without its extra data (as a pre-v3 writer would)."""
    with_snapshots(path)
    table = u64(path, 64)
    with open(path, "r+b") as f:
        f.seek(table)
        head = f.read(40)
        l1_off, l1_size, id_len, name_len, ds, dn, clock, vm, extra = \
            struct.unpack(">QIHHIIQII", head)
        f.seek(table + 40 + extra)
        names = f.read(id_len + name_len)
        rest_start = table + 40 + extra + id_len + name_len
        rest_start = -(-rest_start // 8) * 8
        f.seek(rest_start)
        rest = f.read(40 + 24 + 64)
        entry = struct.pack(">QIHHIIQII", l1_off, l1_size, id_len, name_len, ds, dn, clock,
                            vm, 0) + names
        entry += bytes(-len(entry) % 8)
        f.seek(table)
        f.write(entry + rest)


def with_bitmaps(path: str) -> None:
    make(path, "64M", cmds=("write 0 1M",))
    subprocess.run(["qemu-img", "bitmap", "--add", path, "b0"], check=True)
    subprocess.run(["qemu-img", "bitmap", "--add", "-g", "4k", path, "b1"], check=True)
    qemu_io(path, "write 4M 64k")


def bitmap_table_refcount_high(path: str) -> None:
    """A bitmap table's cluster gets refcount 2: a leak only bitmap accounting explains."""
    with_bitmaps(path)
    with open(path, "rb") as f:
        data = f.read(65536)
    pos = int.from_bytes(data[100:104], "big")
    while True:  # walk the header extensions to the bitmaps one
        magic, length = struct.unpack_from(">II", data, pos)
        if magic == 0x23852875:
            directory = struct.unpack_from(">Q", data, pos + 8 + 16)[0]
            break
        pos += 8 + -(-length // 8) * 8
    table = u64(path, directory)
    poke(path, refblock0(path) + 2 * (table >> 16), b"\0\2")


CASES = {
    "clean": clean, "clean_ext": clean_ext, "leaked": leaked,
    "refcount_too_low": refcount_too_low, "refcount_too_high": refcount_too_high,
    "both_bits": both_bits, "unaligned_data": unaligned_data,
    "unaligned_prealloc": unaligned_prealloc, "l2_beyond_eof": l2_beyond_eof,
    "compressed_copied": compressed_copied, "copied_missing": copied_missing,
    "l1_reserved": l1_reserved, "refblock_outside": refblock_outside,
    "unallocated_with_alloc_bits": unallocated_with_alloc_bits,
    "reftable_garbage": reftable_garbage, "refblock_at_2_63": refblock_at_2_63,
    "data_file_copied_missing": data_file_copied_missing,
    "with_snapshots": with_snapshots,
    "snapshot_shared_refcount_low": snapshot_shared_refcount_low,
    "snapshot_l1_unaligned": snapshot_l1_unaligned,
    "snapshot_incomplete": snapshot_incomplete,
}

#: checked read-only only: a read-write open makes QEMU rewrite the bitmap
#: directory (bitmaps marked in use), which is the driver's business, not check's
READ_ONLY_CASES = {
    "with_bitmaps": with_bitmaps,
    "bitmap_table_refcount_high": bitmap_table_refcount_high,
}


@pytest.mark.parametrize("repair", [None, "leaks", "all"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_check_matches_qemu(tmp_path, case: str, repair: Optional[str]) -> None:
    compare(tmp_path, CASES[case], repair)


@pytest.mark.parametrize("case", sorted(READ_ONLY_CASES))
def test_check_read_only_matches_qemu(tmp_path, case: str) -> None:
    compare(tmp_path, READ_ONLY_CASES[case], None)


def test_leak_message(tmp_path) -> None:
    """The per-cluster message wording itself (as QEMU prints it)."""
    assert compare(tmp_path, leaked) == "Leaked cluster 5 refcount=1 reference=0\n"
