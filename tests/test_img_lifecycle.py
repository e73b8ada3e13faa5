"""qemu-img measure/resize/convert/commit/rebase/dd compared with real QEMU 7.2.

Every case builds the same images twice with real qemu-img/qemu-io, runs the
command under QEMU in one tree and under qcowlab in the other, and requires
identical output (stdout+stderr), exit status, file bytes and (for the files
named) the same host allocation (data/hole extents).
"""
from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import List, Tuple

import pytest

from tests.cli_support import differential, needs_qemu, run_ours, run_qemu

pytestmark = needs_qemu


def shell_setup(script: str):
    def setup(d: Path) -> None:
        if script:
            subprocess.run(["bash", "-c", script], cwd=d, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return setup


def extents(path: Path) -> List[Tuple[int, int]]:
    """The file's data extents as SEEK_DATA/SEEK_HOLE report them."""
    out = []
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        off = 0
        while off < size:
            try:
                start = os.lseek(fd, off, os.SEEK_DATA)
            except OSError:
                break
            off = os.lseek(fd, start, os.SEEK_HOLE)
            out.append((start, off))
    finally:
        os.close(fd)
    return out


def check(tmp_path: Path, setup: str, args: str, alloc: Tuple[str, ...] = ()) -> None:
    differential(tmp_path, shell_setup(setup), "img", args.split())
    for name in alloc:
        q, p = tmp_path / "qemu" / name, tmp_path / "ours" / name
        if q.exists():
            assert extents(p) == extents(q), f"allocation of {name} differs"


# ------------------------------------------------------------------ images
QCOW = ("qemu-img create -f qcow2 {o} s.qcow2 4M && qemu-io -c 'write -P 1 0 100k' "
        "-c 'write -z 300k 64k' -c 'write -P 5 1M 1k' -c 'write -P 0 2M 512k' "
        "-c 'write -P 7 3M 4k' s.qcow2")
PLAIN, EXTL2 = QCOW.format(o=""), QCOW.format(o="-o extended_l2=on")
RAW = ("qemu-img create -f raw r.raw 3M && qemu-io -f raw -c 'write -P 1 0 5k' "
       "-c 'write -P 0 8k 8k' -c 'write -P 2 20k 1k' -c 'write -P 3 1M 70k' "
       "-c 'write -P 0 2M 1M' r.raw")
CHAIN = ("qemu-img create -f qcow2 {o} b.qcow2 2M && qemu-io -c 'write -P 3 0 2M' "
         "-c 'write -z 1M 64k' b.qcow2 && qemu-img create -f qcow2 {o} -b b.qcow2 -F qcow2 "
         "s.qcow2 4M && qemu-io -c 'write -P 4 64k 64k' -c 'write -z 512k 128k' "
         "-c 'write -P 6 3M 64k' s.qcow2")
CHAINS = (CHAIN.format(o=""), CHAIN.format(o="-o extended_l2=on"))
BITMAPS = ("qemu-img create -f qcow2 bm.qcow2 100M && qemu-img bitmap --add bm.qcow2 b0 && "
           "qemu-img bitmap --add -g 512 bm.qcow2 a-longer-name")


# ------------------------------------------------------------------ measure
MEASURE = [
    "measure", "measure --size 1G", "measure --size 1G -O qcow2",
    "measure --size 1G -O qcow2 --output=json",
    "measure --size 1G -O qcow2 -o extended_l2=on",
    "measure --size 1G -O qcow2 -o extended_l2=on,cluster_size=4k",
    "measure --size 1G -O qcow2 -o cluster_size=2M,extended_l2=on,refcount_bits=64",
    "measure --size 1G -O qcow2 -o cluster_size=3k",
    "measure --size 1G -O qcow2 -o compat=0.9",
    "measure --size 1G -O qcow2 -o compat=0.10,refcount_bits=8",
    "measure --size 1G -O qcow2 -o refcount_bits=3",
    "measure --size 1G -O qcow2 -o preallocation=foo",
    "measure --size 1G -O qcow2 -o preallocation=falloc --output=json",
    "measure --size 1G -O qcow2 -o foo=bar", "measure --size 1G -O qcow2 -o extended_l2=maybe",
    "measure --size 1G -O vmdk", "measure --size 1G -O foo", "measure --size 1G -O file",
    "measure --size 1G -O throttle", "measure --size 1E -O qcow2",
    "measure --size 1P -O qcow2 -o cluster_size=512", "measure --size 0 -O qcow2",
    "measure --size 513", "measure --size -1", "measure --size 1G --output=xml",
    "measure -f raw", "measure r.raw s.qcow2", "measure --size 1G r.raw", "measure nonexist",
    "measure --foo", "measure -O", "measure r.raw", "measure -O qcow2 r.raw",
    "measure -O qcow2 s.qcow2", "measure -O qcow2 -o cluster_size=512 s.qcow2 --output=json",
    "measure -O qcow2 -o compat=0.10 s.qcow2", "measure -O raw s.qcow2 --output=json",
    "measure -O qcow2 -o backing_file=x s.qcow2", "measure -l snap s.qcow2",
    "measure -l snap r.raw", "measure -l snapshot.foo=1 s.qcow2",
    "measure --image-opts driver=raw,file.filename=r.raw",
    "measure --image-opts -f raw r.raw",
]


@pytest.mark.parametrize("args", MEASURE)
def test_measure(tmp_path, args):
    check(tmp_path, f"{PLAIN} && {RAW}", args)


@pytest.mark.parametrize("args", ["measure -O qcow2 s.qcow2",
                                  "measure -O qcow2 -o cluster_size=16k s.qcow2"])
def test_measure_chain_and_extended_l2(tmp_path, args):
    check(tmp_path, CHAINS[1], args)


def test_measure_bitmaps(tmp_path):
    check(tmp_path, BITMAPS, "measure -O qcow2 -o cluster_size=512 bm.qcow2 --output=json")


# ------------------------------------------------------------------ resize
RESIZE = [
    "resize", "resize s.qcow2", "resize s.qcow2 +1M", "resize s.qcow2 1G",
    "resize s.qcow2 +1", "resize s.qcow2 1x", "resize s.qcow2 2M",
    "resize --shrink s.qcow2 2M", "resize --shrink s.qcow2 -0", "resize --shrink s.qcow2 512",
    "resize --preallocation=metadata s.qcow2 +1M", "resize --preallocation=falloc s.qcow2 +1M",
    "resize --preallocation=full s.qcow2 +100k", "resize --preallocation=full s.qcow2 2M",
    "resize --preallocation=foo s.qcow2 +1M", "resize s.qcow2 -5M", "resize s.qcow2 0",
    "resize s.qcow2 16E", "resize s.qcow2 9223372036854775807", "resize -q s.qcow2 +1M",
    "resize s.qcow2 1M 2M", "resize --foo s.qcow2 1M", "resize nonexist 1M",
    "resize --image-opts driver=qcow2,file.filename=s.qcow2 +1M",
    "resize -f raw r.raw +1M", "resize -f raw --shrink r.raw 1000",
    "resize -f raw --preallocation=full r.raw +1M",
]


@pytest.mark.parametrize("setup", [PLAIN, EXTL2], ids=["plain", "extl2"])
@pytest.mark.parametrize("args", RESIZE)
def test_resize(tmp_path, setup, args):
    check(tmp_path, f"{setup} && {RAW}", args, alloc=("r.raw",))


# ------------------------------------------------------------------ convert
CONVERT = [
    "convert s.qcow2 o.raw", "convert -O qcow2 s.qcow2 o.qcow2",
    "convert -O qcow2 -o extended_l2=on s.qcow2 o.qcow2",
    "convert -O qcow2 -o cluster_size=4k s.qcow2 o.qcow2",
    "convert -O qcow2 -o cluster_size=2M s.qcow2 o.qcow2",
    "convert -O qcow2 -S 0 s.qcow2 o.qcow2", "convert -S 0 s.qcow2 o.raw",
    "convert -O qcow2 -S 64k s.qcow2 o.qcow2", "convert -O qcow2 -S 512 s.qcow2 o.qcow2",
    "convert -O qcow2 -c s.qcow2 o.qcow2",
    "convert -O qcow2 -c -o compression_type=zstd s.qcow2 o.qcow2",
    "convert -O qcow2 -o compat=0.10 s.qcow2 o.qcow2",
    "convert -O qcow2 -o preallocation=metadata s.qcow2 o.qcow2",
    "convert -O qcow2 -o preallocation=full s.qcow2 o.qcow2",
    "convert -p -O qcow2 s.qcow2 o.qcow2", "convert -q -O qcow2 s.qcow2 r.raw o.qcow2",
    "convert -f raw r.raw o.raw", "convert -f raw -O qcow2 r.raw o.qcow2",
    "convert -f raw -O qcow2 -S 8k r.raw o.qcow2", "convert -f raw -O raw -S 1k r.raw o.raw",
    "convert -f raw -O qcow2 -c r.raw o.qcow2",
    "convert -n -O qcow2 s.qcow2 t.qcow2", "convert -n -O qcow2 -S 0 s.qcow2 t.qcow2",
    "convert -n -O qcow2 --target-is-zero s.qcow2 t.qcow2", "convert -n s.qcow2 r.raw",
    "convert -n --target-image-opts s.qcow2 driver=qcow2,file.filename=t.qcow2",
    "convert -n -O qcow2 s.qcow2 s.qcow2", "convert -O qcow2 s.qcow2 s.qcow2",
    "convert -O qcow2 s.qcow2 file:o.qcow2", "convert -n s.qcow2 file:s.qcow2",
    "convert -C -f raw r.raw o.raw", "convert -C -O qcow2 -f raw r.raw o.qcow2",
    "convert -C -O qcow2 s.qcow2 o.qcow2", "convert -C -n s.qcow2 t.qcow2",
    "convert -n -f raw r.raw r.raw", "convert -U -n -f raw r.raw r.raw",
]


# Copy offloading falls back to read/write at a compressed cluster; which later
# chunks are still offloaded depends on the number of coroutines (-m).
COMPRESSED_RUNS = " ".join(f"-c 'write -P 0 {i * 64}k 64k' -c 'write -z {(i + 1) * 64}k 64k'"
                           for i in range(2, 24, 2))


@pytest.mark.parametrize("first", ["-P 0", "-c -P 7"], ids=["data-first", "compressed-first"])
@pytest.mark.parametrize("args", ["convert -C -m 1 -O qcow2 c.qcow2 o.qcow2",
                                  "convert -C -m 3 -O qcow2 c.qcow2 o.qcow2",
                                  "convert -C c.qcow2 o.raw"])
def test_convert_copy_offloading_fallback(tmp_path, first, args):
    setup = (f"qemu-img create -f qcow2 c.qcow2 2M && qemu-io -c 'write {first} 0 64k' "
             f"-c 'write -c -P 7 64k 64k' {COMPRESSED_RUNS} c.qcow2")
    check(tmp_path, setup, args, alloc=("o.raw",))


@pytest.mark.parametrize("setup", [PLAIN, EXTL2], ids=["plain", "extl2"])
@pytest.mark.parametrize("args", CONVERT)
def test_convert(tmp_path, setup, args):
    target = ("qemu-img create -f qcow2 -o extended_l2=on t.qcow2 8M && "
              "qemu-io -c 'write -P 9 1M 2M' t.qcow2")
    check(tmp_path, f"{setup} && {RAW} && {target}", args, alloc=("o.raw", "r.raw"))


CONVERT_CHAIN = [
    "convert s.qcow2 o.raw", "convert -O qcow2 s.qcow2 o.qcow2",
    "convert -O qcow2 -B b.qcow2 -F qcow2 s.qcow2 o.qcow2",
    "convert -O qcow2 -B b.qcow2 -F qcow2 -o extended_l2=on s.qcow2 o.qcow2",
    "convert -O qcow2 -o backing_file=b.qcow2,backing_fmt=qcow2 s.qcow2 o.qcow2",
    "convert -O qcow2 -B b.qcow2 -F qcow2 -S 0 s.qcow2 o.qcow2",
    "convert -O qcow2 -B b.qcow2 -F qcow2 -c s.qcow2 o.qcow2",
    "convert -O qcow2 -B nonexist -F qcow2 s.qcow2 o.qcow2",
    "convert -O qcow2 -B b.qcow2 s.qcow2 o.qcow2",
    "convert -O qcow2 -B b.qcow2 -F qcow2 s.qcow2 s.qcow2 o.qcow2",
    "convert -n --target-is-zero -B x s.qcow2 o.qcow2",
]


@pytest.mark.parametrize("setup", CHAINS, ids=["plain", "extl2"])
@pytest.mark.parametrize("args", CONVERT_CHAIN)
def test_convert_backing_chain(tmp_path, setup, args):
    check(tmp_path, setup, args, alloc=("o.raw",))


CONVERT_ERRORS = [
    "convert -t foo s.qcow2 o.raw", "convert -T foo s.qcow2 o.raw",
    "convert -p x.qcow2 o.raw", "convert -O raw -o foo=1 s.qcow2 o.raw",
    "convert -O qcow2 -o cluster_size=1x s.qcow2 o.raw",
    "convert -O qcow2 -o cluster_size=1k,extended_l2=on s.qcow2 o.qcow2",
    "convert -c s.qcow2 o.raw", "convert -c -O qcow2 -o preallocation=full s.qcow2 o.qcow2",
    "convert -O raw -B s.qcow2 s.qcow2 o.raw", "convert -S 100 s.qcow2 o.raw",
    "convert -m 0 s.qcow2 o.raw", "convert -m 5x s.qcow2 o.raw", "convert -r -1 s.qcow2 o.raw",
    "convert s.qcow2", "convert -O foo s.qcow2 o", "convert s.qcow2 foo:o",
    "convert -O qcow2 -o help", "convert -o help", "convert -n -o size=1 s.qcow2 o",
    "convert --target-image-opts -O qcow2 s.qcow2 o", "convert -n s.qcow2 nonexist",
    "convert -n --target-is-zero s.qcow2 o", "convert --skip-broken-bitmaps s.qcow2 o",
    "convert --bitmaps s.qcow2 o", "convert -C -c s.qcow2 o", "convert -C -S 0 s.qcow2 o",
    "convert --foo s.qcow2 o",
    "convert -l snap s.qcow2 o", "convert -l snap s.qcow2 s.qcow2 o",
    "convert -l snapshot.x=1 s.qcow2 o", "convert -f raw s.qcow2 o",
    "convert --image-opts -f qcow2 s.qcow2 o",
]


@pytest.mark.parametrize("args", CONVERT_ERRORS)
def test_convert_errors(tmp_path, args):
    check(tmp_path, "qemu-img create -f qcow2 s.qcow2 1M && qemu-io -c 'write 0 64k' s.qcow2",
          args)


# ------------------------------------------------------------------ rebase
REBASE_CHAIN = (
    "qemu-img create -f qcow2 {o} b0.qcow2 4M && qemu-io -c 'write -P 1 0 4M' b0.qcow2 && "
    "qemu-img create -f qcow2 {o} -b b0.qcow2 -F qcow2 b1.qcow2 && "
    "qemu-io -c 'write -P 2 1M 1M' -c 'write -z 3M 64k' b1.qcow2 && "
    "qemu-img create -f qcow2 {o} -b b1.qcow2 -F qcow2 s.qcow2 && "
    "qemu-io -c 'write -P 3 64k 64k' s.qcow2 && qemu-img create -f qcow2 {o} n.qcow2 6M && "
    "qemu-io -c 'write -P 1 0 1M' -c 'write -P 9 2M 512' n.qcow2 && "
    "qemu-img create -f raw n.raw 2M && qemu-io -f raw -c 'write -P 1 0 1M' n.raw")
REBASE = [
    "rebase -b n.qcow2 -F qcow2 s.qcow2", "rebase -b n.qcow2 s.qcow2",
    "rebase -b n.raw -F raw s.qcow2", "rebase -b b0.qcow2 -F qcow2 s.qcow2",
    "rebase -b b1.qcow2 -F qcow2 s.qcow2", "rebase -b n.qcow2 -F qcow2 -p s.qcow2",
    "rebase -b n.qcow2 -F qcow2 -q s.qcow2", "rebase -u -b n.qcow2 -F qcow2 s.qcow2",
    "rebase -u -b n.qcow2 s.qcow2", "rebase -u s.qcow2",
    "rebase -u -b nonexist -F qcow2 s.qcow2", "rebase -b nonexist -F qcow2 s.qcow2",
    "rebase -b n.qcow2 -F foo s.qcow2", "rebase s.qcow2", "rebase -b x",
    "rebase -t foo -b n.qcow2 s.qcow2", "rebase -T foo -b n.qcow2 s.qcow2",
    "rebase -b n.qcow2 -F qcow2 nonexist", "rebase --foo s.qcow2",
    "rebase -f raw -b n.qcow2 -F qcow2 n.raw", "rebase -u -b n.qcow2 -F qcow2 n.raw",
    "rebase -b s.qcow2 -F qcow2 s.qcow2",
]


@pytest.mark.parametrize("opts", ["", "-o extended_l2=on"], ids=["plain", "extl2"])
@pytest.mark.parametrize("args", REBASE)
def test_rebase(tmp_path, opts, args):
    check(tmp_path, REBASE_CHAIN.format(o=opts), args)


@pytest.mark.parametrize("args", [["rebase", "-b", "", "s.qcow2"],
                                  ["rebase", "-u", "-b", "", "s.qcow2"]])
def test_rebase_remove_backing(tmp_path, args):
    differential(tmp_path, shell_setup(REBASE_CHAIN.format(o="")), "img", args)


# ------------------------------------------------------------------ dd
DD = [
    "dd if=s.qcow2 of=o.raw", "dd if=s.qcow2 of=o.raw bs=64k",
    "dd if=s.qcow2 of=o.raw bs=4k count=10 skip=3", "dd if=s.qcow2 of=o.raw bs=3000 skip=7",
    "dd if=s.qcow2 of=o.raw skip=100000", "dd if=s.qcow2 of=o.raw count=0",
    "dd -O qcow2 if=s.qcow2 of=o.qcow2 bs=64k",
    "dd -O qcow2 if=s.qcow2 of=o.qcow2 bs=16k count=20 skip=1",
    "dd -O qcow2 if=s.qcow2 of=o.qcow2 bs=1000", "dd -f raw -O qcow2 if=r.raw of=o.qcow2 bs=1M",
    "dd -O foo if=s.qcow2 of=o", "dd if=s.qcow2", "dd if=s.qcow2 of=o bs=0",
    "dd if=s.qcow2 of=o bs=3G", "dd if=s.qcow2 of=o count=-1", "dd if=s.qcow2 of=o foo=1",
    "dd if=s.qcow2 of=o foo", "dd if=nonexist of=o", "dd if=s.qcow2 of=foo:o", "dd --foo",
]


@pytest.mark.parametrize("args", DD)
def test_dd(tmp_path, args):
    check(tmp_path, f"{PLAIN} && {RAW}", args, alloc=("o.raw",))


# ------------------------------------------------------------------ commit
# Only commits whose block job needs a single allocating write (or a raw base):
# QEMU runs the job's operations concurrently, so with several allocating
# writes the base's cluster order differs between QEMU runs.
COMMIT_SETUPS = [
    "qemu-img create -f qcow2 {o} b.qcow2 4M && qemu-io -c 'write -P 1 0 1M' b.qcow2 && "
    "qemu-img create -f qcow2 {o} -b b.qcow2 -F qcow2 t.qcow2 && "
    "qemu-io -c 'write -P 2 512k 256k' t.qcow2",
    "qemu-img create -f qcow2 {o} b.qcow2 4M && qemu-io -c 'write -P 1 0 1M' b.qcow2 && "
    "qemu-img create -f qcow2 {o} -b b.qcow2 -F qcow2 t.qcow2 6M && "
    "qemu-io -c 'write -P 2 64k 4k' -c 'write -z 2M 128k' -c 'write -P 3 5M 8k' t.qcow2",
    "qemu-img create -f raw b.raw 4M && qemu-io -f raw -c 'write -P 1 0 1M' b.raw && "
    "qemu-img create -f qcow2 {o} -b b.raw -F raw t.qcow2 && "
    "qemu-io -c 'write -P 2 512k 3M' -c 'write -z 3900k 64k' t.qcow2",
    "qemu-img create -f qcow2 {o} b0.qcow2 2M && qemu-io -c 'write -P 1 0 2M' b0.qcow2 && "
    "qemu-img create -f qcow2 {o} -b b0.qcow2 -F qcow2 b.qcow2 && "
    "qemu-io -c 'write -P 5 1M 64k' b.qcow2 && "
    "qemu-img create -f qcow2 {o} -b b.qcow2 -F qcow2 t.qcow2 && "
    "qemu-io -c 'write -P 2 64k 64k' t.qcow2",
]
COMMIT = ["commit t.qcow2", "commit -d t.qcow2", "commit -b b.qcow2 t.qcow2",
          "commit -q t.qcow2", "commit b.qcow2", "commit -b x t.qcow2", "commit",
          "commit -t foo t.qcow2", "commit -r -1 t.qcow2", "commit nonexist"]


@pytest.mark.parametrize("opts", ["", "-o extended_l2=on"], ids=["plain", "extl2"])
@pytest.mark.parametrize("setup", range(len(COMMIT_SETUPS)))
@pytest.mark.parametrize("args", COMMIT)
def test_commit(tmp_path, opts, setup, args):
    check(tmp_path, COMMIT_SETUPS[setup].format(o=opts), args, alloc=("b.raw",))


# ------------------------------------------------------------------ bench
BENCH_SETUP = ("qemu-img create -f qcow2 bq.qcow2 1M && "
               "qemu-img create -f qcow2 -o extended_l2=on bx.qcow2 1M && "
               "qemu-img create -f raw r.raw 1M")
BENCH = [
    "bench -c 10 bq.qcow2", "bench -c 10 -w bq.qcow2", "bench -c 10 -w bx.qcow2",
    "bench -c 300 -w -s 1000 bx.qcow2", "bench -c 300 -w -S 3000 --pattern 7 bq.qcow2",
    "bench -c 10 -s 1M -o 512k bq.qcow2", "bench -c 10 -n bq.qcow2", "bench -c 10 -i foo bq.qcow2",
    "bench -c 10 -t none bq.qcow2", "bench -c 10 -t foo bq.qcow2", "bench -c -1 bq.qcow2",
    "bench -c 0 bq.qcow2", "bench -c 10 --flush-interval 4 bq.qcow2",
    "bench -c 10 -w --flush-interval 4 bq.qcow2", "bench -c 10 -w -d 2 --flush-interval 4 bq.qcow2",
    "bench -c 10 --pattern 256 bq.qcow2", "bench -c 10 -s 0 bq.qcow2", "bench bq.qcow2 x",
    "bench -c 10 -w -U bq.qcow2", "bench -c 5 -s 4k -o 1M bq.qcow2",
    "bench -c 50 -w -s 3000 -f raw r.raw", "bench --foo bq.qcow2",
]


_RUN_TIME = re.compile(r"Run completed in \d+\.\d\d\d seconds")


@pytest.mark.parametrize("args", BENCH)
def test_bench(tmp_path, args):
    q, p = tmp_path / "qemu", tmp_path / "ours"
    for d in (q, p):
        d.mkdir()
        shell_setup(BENCH_SETUP)(d)
    q_out, q_rc = run_qemu("img", args.split(), q)
    p_out, p_rc = run_ours("img", args.split(), p)
    assert _RUN_TIME.sub("T", p_out) == _RUN_TIME.sub("T", q_out)
    assert p_rc == q_rc
    for name in ("bq.qcow2", "bx.qcow2", "r.raw"):
        assert (p / name).read_bytes() == (q / name).read_bytes(), name
    assert extents(p / "r.raw") == extents(q / "r.raw")
