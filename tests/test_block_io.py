"""The generic request layer (emulator.block.io/open/raw) against QEMU 7.2.

The same request sequence is run by `qemu-io` on one copy of an image and
through emulator.block.io on another; the files must end up byte-identical,
reads must return the same data, and allocation / block status must match
what `qemu-io -c map` and `qemu-img map --output=json` print.
"""
from __future__ import annotations

import io as _stdio
import json
import os
import shutil
import subprocess
from contextlib import redirect_stderr

import pytest

from emulator.block import io
from emulator.block.node import BDRV_BLOCK_ALLOCATED, BDRV_BLOCK_DATA, \
    BDRV_BLOCK_OFFSET_VALID, BDRV_BLOCK_ZERO, BDRV_REQ_MAY_UNMAP, BlockError
from emulator.block.open import close_image, open_image

pytestmark = pytest.mark.skipif(shutil.which("qemu-img") is None or shutil.which("qemu-io") is None,
                                reason="qemu-img/qemu-io (QEMU 7.2) not installed")


def run(*argv: str) -> subprocess.CompletedProcess:
    return subprocess.run(list(argv), capture_output=True, text=True)


def qemu_io_cmd(op: tuple) -> str:
    kind, off, length = op[:3]
    if kind == "write":
        return f"write -P {op[3]} {off} {length}"
    if kind == "writec":
        return f"write -c -P {op[3]} {off} {length}"
    if kind == "zero":
        return f"write -z{' -u' if op[3] else ''} {off} {length}"
    if kind == "discard":
        return f"discard {off} {length}"
    raise ValueError(kind)


def apply(node, op: tuple) -> None:
    kind, off, length = op[:3]
    if kind == "write":
        io.pwrite(node, off, bytes([op[3]]) * length)
    elif kind == "writec":
        io.pwrite_compressed(node, off, bytes([op[3]]) * length)
    elif kind == "zero":
        io.pwrite_zeroes(node, off, length, BDRV_REQ_MAY_UNMAP if op[3] else 0)
    elif kind == "discard":
        io.pdiscard(node, off, length)


def run_both(tmp_path, make: list[str], ops: list[tuple], fmt: str = "qcow2") -> tuple[str, str]:
    """Create with `qemu-img create ARGS`, apply ``ops`` both ways; return both paths."""
    base = str(tmp_path / "img")
    p = run("qemu-img", "create", "-f", fmt, *make[:-1], base, make[-1])
    assert p.returncode == 0, p.stderr
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    shutil.copy(base, a)
    shutil.copy(base, b)
    argv = ["qemu-io", "-f", fmt]
    for op in ops:
        argv += ["-c", qemu_io_cmd(op)]
    p = run(*argv, a)
    assert p.returncode == 0 and "failed" not in p.stdout, p.stdout + p.stderr
    node = open_image(b, fmt, unmap=True)
    for op in ops:
        apply(node, op)
    close_image(node)
    return a, b


def same_bytes(a: str, b: str) -> None:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        da, db = fa.read(), fb.read()
    assert len(da) == len(db)
    assert da == db


def holes(path: str) -> list[tuple[int, int]]:
    """Data extents of the host file (punched holes must match too)."""
    out = []
    fd = os.open(path, os.O_RDONLY)
    try:
        end = os.fstat(fd).st_size
        pos = 0
        while pos < end:
            try:
                data = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:
                break
            hole = os.lseek(fd, data, os.SEEK_HOLE)
            out.append((data, hole))
            pos = hole
    finally:
        os.close(fd)
    return out


# ----------------------------------------------------------------- qemu-img map / qemu-io map

def map_entries(node) -> list[dict]:
    """qemu-img map --output=json, computed from io.block_status per layer."""
    def status(bs, offset, n):
        depth = 0
        while True:
            st = io.block_status(bs, offset, n)
            n = st.pnum
            if st.flags & (BDRV_BLOCK_ZERO | BDRV_BLOCK_DATA):
                break
            if bs.backing is None:
                st = st._replace(flags=0)
                break
            bs = bs.backing
            depth += 1
        e = {"start": offset, "length": n, "depth": depth,
             "present": bool(st.flags & BDRV_BLOCK_ALLOCATED),
             "zero": bool(st.flags & BDRV_BLOCK_ZERO), "data": bool(st.flags & BDRV_BLOCK_DATA)}
        if st.flags & BDRV_BLOCK_OFFSET_VALID:
            e["offset"] = st.offset
        return e

    length = io.getlength(node)
    out: list[dict] = []
    pos = 0
    while pos < length:
        e = status(node, pos, length - pos)
        prev = out[-1] if out else None
        if (prev and all(prev[k] == e[k] for k in ("zero", "data", "depth", "present"))
                and ("offset" in prev) == ("offset" in e)
                and ("offset" not in prev or prev["offset"] + prev["length"] == e["offset"])):
            prev["length"] += e["length"]
        else:
            out.append(e)
        pos += e["length"]
    return out


def qemu_map(path: str, fmt: str) -> list[dict]:
    p = run("qemu-img", "map", "--output=json", "-f", fmt, path)
    assert p.returncode == 0, p.stderr
    return [{k: v for k, v in e.items() if k != "compressed"} for e in json.loads(p.stdout)]


def qemu_io_map(node) -> list[tuple[int, int, bool]]:
    """qemu-io's map command: runs of is_allocated(node) (the top layer only)."""
    out = []
    offset, remaining = 0, io.getlength(node)
    while remaining:
        first, num = io.is_allocated(node, offset, remaining)
        total = num
        o, r = offset + num, remaining - num
        while r > 0:
            ret, n = io.is_allocated(node, o, r)
            if bool(ret) == bool(first) and n:
                total += n
                o, r = o + n, r - n
            else:
                break
        out.append((offset, total, bool(first)))
        offset += total
        remaining -= total
    return out


def parse_qemu_io_map(text: str) -> list[tuple[int, int, bool]]:
    out = []
    for line in text.splitlines():
        # "4 KiB (0x1000) bytes     allocated at offset 8 KiB (0x2000)"
        parts = line.split("(0x")
        num = int(parts[1].split(")")[0], 16)
        off = int(parts[2].split(")")[0], 16)
        out.append((off, num, "not allocated" not in line))
    return out


# ----------------------------------------------------------------- tests

QCOW2_OPS = [
    ("write", 0, 4096, 0x11),
    ("write", 70000, 100000, 0x22),          # unaligned, crosses clusters
    ("zero", 200000, 150000, False),          # unaligned zero write: head/tail explicit
    ("zero", 393216, 131072, True),           # aligned, may unmap
    ("discard", 100000, 200000),              # partial clusters at both ends
    ("write", 1000000, 3, 0x33),
    ("discard", 983040, 65536),
    ("zero", (1 << 20) + 1024, 512, False),   # into the compressed cluster written first
]


@pytest.mark.parametrize("opts,cluster", [("cluster_size=65536", 65536), ("extended_l2=on", 65536),
                                          ("cluster_size=4096", 4096),
                                          ("extended_l2=on,cluster_size=16384", 16384)])
def test_qcow2_requests_match(tmp_path, opts: str, cluster: int) -> None:
    ops = QCOW2_OPS[:-1] + [("writec", 1 << 20, cluster, 0x44)] + QCOW2_OPS[-1:]
    a, b = run_both(tmp_path, ["-o", opts, "4M"], ops)
    same_bytes(a, b)
    assert holes(a) == holes(b)
    node = open_image(b, "qcow2", read_only=True)
    try:
        assert map_entries(node) == qemu_map(a, "qcow2")
        p = run("qemu-io", "-r", "-f", "qcow2", "-c", "map", a)
        assert qemu_io_map(node) == parse_qemu_io_map(p.stdout)
    finally:
        close_image(node)


def test_backing_chain_reads_and_status(tmp_path) -> None:
    """Top larger than its backing file: reads past the backing end are zeroes."""
    base = str(tmp_path / "base.qcow2")
    top = str(tmp_path / "top.qcow2")
    assert run("qemu-img", "create", "-f", "qcow2", base, "1M").returncode == 0
    assert run("qemu-io", "-c", "write -P 0x5a 0 1M", base).returncode == 0
    assert run("qemu-img", "create", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2",
               top, "3M").returncode == 0
    shutil.copy(top, str(tmp_path / "top0.qcow2"))
    ops = [("write", 1000000, 100000, 0x66), ("zero", 2 << 20, 4096, False)]
    argv = ["qemu-io", "-f", "qcow2"]
    for op in ops:
        argv += ["-c", qemu_io_cmd(op)]
    assert run(*argv, top).returncode == 0
    mine = str(tmp_path / "mine.qcow2")
    shutil.copy(str(tmp_path / "top0.qcow2"), mine)
    node = open_image(mine, "qcow2", unmap=True)
    for op in ops:
        apply(node, op)
    assert io.pread(node, 990000, 120000) == b"\x5a" * 10000 + b"\x66" * 100000 + bytes(10000)
    assert io.pread(node, 2 << 20, 65536) == bytes(65536)
    close_image(node)
    # the backing file name is relative: give both images the same name
    os.replace(mine, str(tmp_path / "mine_done"))
    same_bytes(top, str(tmp_path / "mine_done"))
    node = open_image(top, "qcow2", read_only=True)
    try:
        assert map_entries(node) == qemu_map(top, "qcow2")
        p = run("qemu-io", "-r", "-f", "qcow2", "-c", "map", top)
        assert qemu_io_map(node) == parse_qemu_io_map(p.stdout)
        # the whole chain (depths as qemu-img map reports them above, plus one)
        assert io.is_allocated_above(node, None, False, 0, 3 << 20) == (2, 983040)
        assert io.is_allocated_above(node, None, False, 983040, 3 << 20) == (1, 131072)
        assert io.is_allocated_above(node, node.backing, False, 0, 3 << 20) == (0, 983040)
    finally:
        close_image(node)


def test_raw_requests_match(tmp_path) -> None:
    ops = [("write", 100, 1000, 0x11), ("zero", 5000, 70000, False),
           ("zero", 1 << 18, 1 << 17, True), ("discard", 1 << 19, 1 << 16),
           ("write", (1 << 20) - 10, 10, 0x22)]
    a, b = run_both(tmp_path, ["1M"], ops, fmt="raw")
    same_bytes(a, b)
    assert holes(a) == holes(b)
    node = open_image(b, "raw", read_only=True)
    try:
        assert map_entries(node) == qemu_map(a, "raw")
    finally:
        close_image(node)


def test_probed_raw_warns_and_protects_block0(tmp_path) -> None:
    img = str(tmp_path / "r.img")
    with open(img, "wb") as f:
        f.write(b"\xcd" * 1000)
    p = run("qemu-io", "-c", "write -P 0x61 0 30", img)
    err = _stdio.StringIO()
    mine = str(tmp_path / "m.img")
    with open(mine, "wb") as f:
        f.write(b"\xcd" * 1000)
    with redirect_stderr(err):
        node = open_image(mine, unmap=True)
    assert err.getvalue() == p.stderr.replace("'" + img + "'", "'" + mine + "'")
    assert node.format_name == "raw" and io.getlength(node) == 1024
    io.pwrite(node, 0, b"\x61" * 30)
    # a first sector that would probe as qcow2 is refused (qemu-io: Operation not permitted)
    header = bytes.fromhex("514649fb00000003") + bytes(504)
    with pytest.raises(BlockError) as e:
        io.pwrite(node, 0, header)
    assert e.value.errno == 1
    close_image(node)
    same_bytes(img, mine)
    q = run("qemu-io", "-c", "write -P 0x61 0 30", "-c", "read -P 0x61 0 30", img)
    assert "read 30/30" in q.stdout


def test_request_past_end_is_eio(tmp_path) -> None:
    img = str(tmp_path / "x.qcow2")
    assert run("qemu-img", "create", "-f", "qcow2", img, "1M").returncode == 0
    p = run("qemu-io", "-c", "write 1048000 1024", "-c", "read 1048576 1", img)
    assert p.stdout.splitlines() == ["write failed: Input/output error",
                                     "read failed: Input/output error"]
    node = open_image(img, "qcow2")
    for call in (lambda: io.pwrite(node, 1048000, bytes(1024)),
                 lambda: io.pread(node, 1 << 20, 1),
                 lambda: io.pwrite_zeroes(node, 1 << 20, 512),
                 lambda: io.pdiscard(node, 0, 2 << 20)):
        with pytest.raises(BlockError) as e:
            call()
        assert e.value.message == "Input/output error"
    close_image(node)


def test_open_errors_match_qemu(tmp_path) -> None:
    missing = str(tmp_path / "nofile")
    p = run("qemu-io", "-c", "read 0 1", missing)
    with pytest.raises(BlockError) as e:
        open_image(missing)
    assert p.stderr == f"qemu-io: can't open device {missing}: {e.value.message}\n"
    top = str(tmp_path / "top.qcow2")
    assert run("qemu-img", "create", "-f", "qcow2", "-u", "-b", "gone.qcow2", "-F", "qcow2",
               top, "1M").returncode == 0
    p = run("qemu-io", "-c", "read 0 1", top)
    with pytest.raises(BlockError) as e:
        open_image(top)
    assert p.stderr == f"qemu-io: can't open device {top}: {e.value.message}\n"
    with pytest.raises(BlockError) as e:
        open_image(top, "vmdkx")
    p = run("qemu-io", "-f", "vmdkx", "-c", "read 0 1", top)
    assert p.stderr == f"qemu-io: can't open device {top}: {e.value.message}\n"


def test_backing_loop_hits_image_lock(tmp_path) -> None:
    """A read-write image that is its own backing file fails on QEMU's image lock."""
    img = str(tmp_path / "s.qcow2")
    assert run("qemu-img", "create", "-f", "qcow2", img, "1M").returncode == 0
    assert run("qemu-img", "rebase", "-u", "-b", img, "-F", "qcow2", img).returncode == 0
    p = run("qemu-io", "-c", "read 0 1", img)
    with pytest.raises(BlockError) as e:
        open_image(img)
    assert p.stderr == f"qemu-io: can't open device {img}: {e.value.message}\n{e.value.hint}"


def test_image_in_use_by_qemu(tmp_path) -> None:
    """An image held read-write by a running qemu-io cannot be opened without force-share."""
    img = str(tmp_path / "busy.qcow2")
    assert run("qemu-img", "create", "-f", "qcow2", img, "1M").returncode == 0
    holder = subprocess.Popen(["qemu-io", img], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        holder.stdin.write("read 0 1\n")
        holder.stdin.flush()
        holder.stdout.readline()  # the image is open (and locked) once it answers
        want = run("qemu-img", "info", img).stderr
        with pytest.raises(BlockError) as e:
            open_image(img, "qcow2", read_only=True)
        assert want == f"qemu-img: Could not open '{img}': {e.value.message}\n{e.value.hint}"
        node = open_image(img, "qcow2", read_only=True, force_share=True)
        close_image(node)
    finally:
        holder.communicate("quit\n", timeout=30)


def test_copy_on_read_matches_qemu_io_C(tmp_path) -> None:
    """Reads through a copy-on-read node copy whole clusters up, as `qemu-io -C` does."""
    reads = [(0, 65536), (61440, 102400), (2 << 20, 131072), (3143680, 204800), (5000, 1)]
    images = {}
    for side in ("qemu", "ours"):
        d = tmp_path / side
        d.mkdir()
        base, top = str(d / "base.qcow2"), str(d / "top.qcow2")
        assert run("qemu-img", "create", "-f", "qcow2", base, "4M").returncode == 0
        assert run("qemu-io", "-c", "write -P 1 0 1M", "-c", "write -z 2M 64k",
                   "-c", "write -P 3 3M 100k", base).returncode == 0
        assert run("qemu-img", "create", "-f", "qcow2", "-o", "extended_l2=on", "-b",
                   "base.qcow2", "-F", "qcow2", top).returncode == 0
        assert run("qemu-io", "-c", "write -P 2 100k 10k", top).returncode == 0
        images[side] = top
    argv = ["qemu-io", "-C"]
    for off, length in reads:
        argv += ["-c", f"read {off} {length}"]
    assert run(*argv, images["qemu"]).returncode == 0
    node = open_image(images["ours"], unmap=True, copy_on_read=True)
    assert io.pread(node, 0, 65536) == b"\x01" * 65536
    for off, length in reads[1:]:
        io.pread(node, off, length)
    close_image(node)
    same_bytes(images["qemu"], images["ours"])
    with pytest.raises(BlockError) as e:
        open_image(images["ours"], read_only=True, copy_on_read=True)
    p = run("qemu-io", "-C", "-r", "-c", "read 0 1", images["qemu"])
    assert p.stderr == f"qemu-io: can't open device {images['qemu']}: {e.value.message}\n"


def test_cache_direct_aligns_file_requests(tmp_path) -> None:
    """cache.direct=on (qemu-io -t none): file requests padded to the O_DIRECT alignment."""
    images = {}
    for side in ("qemu", "ours"):
        (tmp_path / side).mkdir()
        images[side] = str(tmp_path / side / "img.qcow2")
        assert run("qemu-img", "create", "-f", "qcow2", "-o", "cluster_size=4096",
                   images[side], "4M").returncode == 0
    p = run("qemu-io", "-t", "none", "-c", "write -c -P 0x4d 897024 4096",
            "-c", "write -P 1 1000 3000", "-c", "write -z 10000 5000", images["qemu"])
    assert p.returncode == 0
    node = open_image(images["ours"], options={"cache.direct": "on"}, unmap=True)
    io.pwrite_compressed(node, 897024, b"\x4d" * 4096)
    io.pwrite(node, 1000, b"\x01" * 3000)
    io.pwrite_zeroes(node, 10000, 5000)
    close_image(node)
    same_bytes(images["qemu"], images["ours"])
