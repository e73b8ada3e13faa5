"""qcowlab-img against qemu-img 7.2: same output, exit status and resulting files."""
from __future__ import annotations

import shutil
import struct
from pathlib import Path

import pytest

from tests.cli_support import differential, needs_qemu, qemu_setup

pytestmark = needs_qemu

BASIC = qemu_setup(
    ["img", "create", "-q", "-f", "raw", "a.raw", "1M"],
    ["io", "-f", "raw", "-c", "write 0 4k", "a.raw"],
    ["img", "create", "-q", "-f", "qcow2", "base.qcow2", "1M"],
    ["img", "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "-o",
     "extended_l2=on", "ov.qcow2"],
    ["io", "-c", "write 0 4k", "ov.qcow2"],
    ["img", "create", "-q", "-f", "qcow2", "-o", "compat=0.10", "v2.qcow2", "1G"],
)

CREATE = [
    "-f qcow2 x.qcow2 8E", "-f qcow2 -o cluster_size=512 x.qcow2 4P", "-f qcow2 -b a.raw x.qcow2",
    "-f qcow2 -b a.raw -F raw x.qcow2", "-f qcow2 -b a.raw -F qcow2 x.qcow2",
    "-f qcow2 -u -b nonexist x.qcow2 1M", "-f qcow2 -u -b nonexist -F qcow2 x.qcow2 1M",
    "-f qcow2 -u -b nonexist -F qcow2 x.qcow2", "-f raw -b a.raw x.raw 1M",
    "-f raw -F raw x.raw 1M", "-f qcow2 -b x.qcow2 -F raw x.qcow2 1M", "-f foo x 1M",
    "-f qcow2 foo:x 1M", "-f qcow2 -o size=2M x.qcow2 1M", "-f qcow2 -o size=2M x.qcow2",
    "-f qcow2 -o ,, x.qcow2", "-f qcow2 -o cluster_size=64k,,x x.qcow2 1M",
    "-f qcow2 -o cluster_size=4k -o cluster_size=8k x.qcow2 1M",
    "-f qcow2 -o extended_l2=yes,lazy_refcounts x.qcow2 1M",
    "-f qcow2 -o refcount_bits=0x10 x.qcow2 1M", "-f qcow2 -o refcount_bits=abc x.qcow2 1M",
    "-f qcow2 -o cluster_size=abc x.qcow2 1M",
    "-f qcow2 -o cluster_size=99999999999999999999 x.qcow2 1M", "-f qcow2 x.qcow2 1M extra",
    "-f qcow2", "-q -f qcow2 x.qcow2 -1", "-f qcow2 x.qcow2 9223372036854775808",
    "-f raw -o preallocation=full x.raw 1M", "-f raw -o preallocation=foo x.raw 1M",
    "-f qcow2 -o preallocation=foo x.raw 1M", "-f qcow2 -o compat=0.10 x.raw 1M",
    "-f qcow2 -o compat=1.2 x.raw 1M", "-f qcow2 -o backing_file=a.raw,backing_fmt=raw x.raw",
    "-f qcow2 -o compression_type=zstd x.raw 1M", "-f qcow2 -o help", "-f raw -o help x",
    "-f qcow2 -o ? x 1M", "-f qcow2 -o cluster_size=1000 b.qcow2 1M", "-f qcow2 b.qcow2 1Q",
    "-f qcow2 -o foo=bar b.qcow2 1M", "-f qcow2 -b nonex -F qcow2 b.qcow2 1M",
    "-f qcow2 -o extended_l2=on,cluster_size=16k,preallocation=metadata e.qcow2 64M",
    "-f qcow2 -o extended_l2=on,cluster_size=4k e.qcow2 64M", "-f qcow2 1.5k.qcow2 1.5k",
    "-f qcow2 -o refcount_bits=1,lazy_refcounts=on,compat=0.10 x.qcow2 1G",
    "-f qcow2 x.qcow2 0x10k", "-f qcow2 x.qcow2 1.5", "-x", "-o", "-f qcow2 file:x.qcow2 1M",
    "-f raw file:x.raw 1M", "-f qcow2 -b file:a.raw -F raw x.qcow2",
    "-f qcow2 -b nope:a.raw -F raw x.qcow2", "-f file x.file 1M",
]


@pytest.mark.parametrize("args", CREATE)
def test_create(tmp_path, args):
    differential(tmp_path, BASIC, "img", ["create"] + args.split())


INFO = [
    "a.raw", "--output=json a.raw", "-f qcow2 a.raw", "ov.qcow2", "--output=json ov.qcow2",
    "--backing-chain ov.qcow2", "--output=json --backing-chain ov.qcow2", "-f raw ov.qcow2",
    "v2.qcow2", "--output=json v2.qcow2", "-U --image-opts driver=raw,file.filename=a.raw",
    "--image-opts a.raw", "--image-opts driver=qcow2", "--image-opts file.filename=a.raw",
    "--image-opts filename=a.raw,foo=bar", "--output=xml a.raw", "", "nonexist",
    "a.raw ov.qcow2", "--out=json a.raw", "--o=json a.raw", "--output", "-f", "file:a.raw",
    "nope:a.raw", 'json:{"driver":"qcow2","file":{"driver":"file","filename":"ov.qcow2"}}',
    'json:{"file":{"driver":"file","filename":"ov.qcow2"},"backing":null}', "json:[1]",
    "-f file a.raw", "--output=json -f file a.raw",
]


@pytest.mark.parametrize("args", INFO)
def test_info(tmp_path, args):
    differential(tmp_path, BASIC, "img", ["info"] + args.split())


def test_top_level(tmp_path):
    for args in ([], ["-V"], ["--help"], ["bogus"], ["-T", "x"], ["--trace"], ["-q"]):
        differential(tmp_path / str(len(list(tmp_path.iterdir()))), lambda d: None, "img", args)


MAP_SETUP = qemu_setup(
    ["img", "create", "-q", "-f", "raw", "a.raw", "1M"],
    ["img", "create", "-q", "-f", "qcow2", "-o", "extended_l2=on", "z.qcow2", "1M"],
    ["io", "-c", "write -P 0x11 8k 4k", "-c", "write -z 64k 64k", "-c", "write -c 128k 64k",
     "-c", "write 300k 64k", "z.qcow2"],
    ["img", "create", "-q", "-f", "qcow2", "-o", "extended_l2=on", "z2.qcow2", "1M"],
    ["io", "-c", "write -P 0x11 8k 4k", "-c", "write -z 64k 64k", "-c", "write 300k 64k",
     "-c", "discard 512k 128k", "z2.qcow2"],
    ["img", "create", "-q", "-f", "qcow2", "-b", "z2.qcow2", "-F", "qcow2", "top.qcow2", "2M"],
    ["io", "-c", "write 1M 4k", "-c", "write -z 0 4k", "top.qcow2"],
)

MAP = [
    "z.qcow2", "--output=json z.qcow2", "z2.qcow2", "--output=json z2.qcow2", "top.qcow2",
    "--output=json top.qcow2", "-s 4k -l 300k top.qcow2", "--output=json -s 4k -l 300k top.qcow2",
    "a.raw", "--output=json a.raw", "-f raw z2.qcow2", "-s foo a.raw", "nonexist",
]


@pytest.mark.parametrize("args", MAP)
def test_map(tmp_path, args):
    differential(tmp_path, MAP_SETUP, "img", ["map"] + args.split())


def _poke(path: Path, offset: int, value: int, fmt: str = ">Q") -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(struct.pack(fmt, value))


def _check_setup(d: Path) -> None:
    MAP_SETUP(d)
    qemu_setup(["img", "create", "-q", "-f", "qcow2", "leak.qcow2", "1M"],
               ["io", "-c", "write 0 128k", "leak.qcow2"],
               ["img", "create", "-q", "-f", "qcow2", "-o", "extended_l2=on", "corr.qcow2", "1M"],
               ["io", "-c", "write 0 4k", "corr.qcow2"])(d)
    _poke(d / "leak.qcow2", 0x40000 + 8, 0)                       # drop the 2nd L2 entry
    _poke(d / "corr.qcow2", 0x40000 + 8, 0x0000000100000001)      # alloc+zero bits together


CHECK = [
    "z.qcow2", "--output=json z.qcow2", "top.qcow2", "a.raw", "-f raw z2.qcow2", "leak.qcow2",
    "--output=json leak.qcow2", "-r leaks leak.qcow2", "--output=json -r leaks leak.qcow2",
    "-r all leak.qcow2", "-q leak.qcow2", "corr.qcow2", "--output=json corr.qcow2",
    "-r all corr.qcow2", "-r bad corr.qcow2", "-T foo z.qcow2", "--output=x z.qcow2", "nonexist",
]


@pytest.mark.parametrize("args", CHECK)
def test_check(tmp_path, args):
    differential(tmp_path, _check_setup, "img", ["check"] + args.split())


COMPARE_SETUP = qemu_setup(
    ["img", "create", "-q", "-f", "qcow2", "c1.qcow2", "1M"],
    ["img", "create", "-q", "-f", "qcow2", "c2.qcow2", "1M"],
    ["img", "create", "-q", "-f", "qcow2", "c3.qcow2", "2M"],
    ["io", "-c", "write -P 1 0 64k", "c1.qcow2"],
    ["io", "-c", "write -P 1 0 64k", "-c", "write -P 2 100k 1k", "c2.qcow2"],
    ["io", "-c", "write -P 1 0 64k", "-c", "write -P 0 200k 4k", "-c", "write 1536k 512",
     "c3.qcow2"],
    ["img", "create", "-q", "-f", "raw", "r1.raw", "1M"],
    ["io", "-f", "raw", "-c", "write -P 1 0 64k", "r1.raw"],
)

COMPARE = [
    "c1.qcow2 c1.qcow2", "c1.qcow2 c2.qcow2", "c2.qcow2 c1.qcow2", "c1.qcow2 c3.qcow2",
    "c3.qcow2 c1.qcow2", "-s c1.qcow2 c3.qcow2", "-q c1.qcow2 c2.qcow2", "c1.qcow2 r1.raw",
    "-s c1.qcow2 r1.raw", "-f qcow2 -F raw c1.qcow2 r1.raw", "-F qcow2 c1.qcow2 r1.raw",
    "c1.qcow2 nonexist", "c1.qcow2", "-T foo c1.qcow2 c2.qcow2", "-p c1.qcow2 c3.qcow2",
    "-p -q c1.qcow2 c3.qcow2",
]


@pytest.mark.parametrize("args", COMPARE)
def test_compare(tmp_path, args):
    differential(tmp_path, COMPARE_SETUP, "img", ["compare"] + args.split())


RESIZE = [
    "z.qcow2 2M", "z.qcow2 +1M", "z.qcow2 -512k", "z.qcow2 512k", "--shrink z.qcow2 -512k",
    "--shrink z.qcow2 -- -2M", "--preallocation=metadata z.qcow2 4M",
    "--preallocation=falloc z.qcow2 4M", "--preallocation=full z.qcow2 +3M",
    "--preallocation=full z.qcow2 1M", "--preallocation=bogus z.qcow2 4M", "-q z.qcow2 3M",
    "z.qcow2", "z.qcow2 1x", "z.qcow2 99999999999999999999", "-f raw a.raw 3M",
    "-f raw --preallocation=full a.raw 3M", "a.raw 3M", "--shrink -f raw a.raw 100k",
    "top.qcow2 +1k", "nonexist 1M", "-x z.qcow2 1M", "z.qcow2 1M extra",
]


@pytest.mark.parametrize("args", RESIZE)
def test_resize(tmp_path, args):
    differential(tmp_path, MAP_SETUP, "img", ["resize"] + args.split())


def _trace_setup(d: Path) -> None:
    BASIC(d)
    (d / "ev.txt").write_text("foo\ndma_blk_io\n# comment\n\n-bar\nqcow2*\n")


TRACE = ["help", "?", "x", "dma_blk_io", "-dma_blk_io", "enable=x", "events=ev.txt",
         "events=nonexist", "foo=bar", "x,file=trace.log", "ab?"]


@pytest.mark.parametrize("arg", TRACE)
def test_trace_option(tmp_path, arg):
    differential(tmp_path, _trace_setup, "img", ["-T", arg, "info", "a.raw"])


def _special_setup(d: Path) -> None:
    """A directory, and an image whose header says AES encryption (crypt_method 1)."""
    MAP_SETUP(d)
    (d / "dir").mkdir()
    with open(d / "z2.qcow2", "r+b") as f:
        f.seek(32)
        f.write(struct.pack(">I", 1))


SPECIAL = [
    "info dir", "info -f raw dir", "check dir", "convert -O raw dir x.raw", "measure -O qcow2 dir",
    "dd if=dir of=x.raw", "bench -c 1 dir", "rebase -b dir -F raw top.qcow2", "info z2.qcow2",
    "info --output=json z2.qcow2", "check z2.qcow2", "convert -O raw z2.qcow2 x.raw",
    "convert -t none -c -O qcow2 -o cluster_size=4k z.qcow2 x.qcow2",
    "commit -t none top.qcow2", "amend -t directsync -o compat=0.10 z2.qcow2",
]


@pytest.mark.parametrize("args", SPECIAL)
def test_directory_encrypted_and_nocache(tmp_path, args):
    differential(tmp_path, _special_setup, "img", args.split())


_SNAP_IMAGES = qemu_setup(
    ["img", "create", "-q", "-f", "qcow2", "t.qcow2", "1M"],
    ["io", "-c", "write -P 1 0 64k", "t.qcow2"],
    ["img", "snapshot", "-c", "s", "t.qcow2"],
    ["io", "-c", "write -P 2 0 64k", "t.qcow2"],
    ["img", "snapshot", "-c", "1", "t.qcow2"],
    ["img", "create", "-q", "-f", "raw", "r.raw", "1M"],
)


def _snap_setup(d: Path) -> None:
    """The snapshot images, made once per test and copied (snapshot dates must match)."""
    proto = d.parent / "proto"
    if not proto.exists():
        proto.mkdir()
        _SNAP_IMAGES(proto)
    for f in proto.iterdir():
        shutil.copyfile(f, d / f.name)


SNAPSHOT_LOAD = [
    "convert -l s -O raw t.qcow2 out.raw", "convert -l 1 -O raw t.qcow2 out.raw",
    "convert -l 2 -O qcow2 t.qcow2 out.qcow2", "convert -l nope -O raw t.qcow2 out.raw",
    "convert -l snapshot.id=1,snapshot.name=s -O raw t.qcow2 out.raw",
    "convert -l snapshot.id=2,snapshot.name=s -O raw t.qcow2 out.raw",
    "convert -l s -O raw r.raw out.raw", "convert -l snapshot.id=1 -O raw t.qcow2 r.raw out.raw",
    "measure -l s -O qcow2 t.qcow2", "measure -l snapshot.name=1 -O qcow2 t.qcow2",
    "measure -l x -O qcow2 t.qcow2", "measure -l s -O qcow2 r.raw",
]


@pytest.mark.parametrize("args", SNAPSHOT_LOAD)
def test_snapshot_load(tmp_path, args):
    differential(tmp_path, _snap_setup, "img", args.split())
