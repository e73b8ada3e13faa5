"""qcow2 reads/writes/zero writes/discards/compression/resize: after the same
operations through qemu-io and through the emulator, the images are identical."""
from __future__ import annotations

import subprocess

import pytest

from emulator.block import io
from emulator.block.open import close_image, open_image
from tests.qcow2_support import create_opts, requires_qemu, run_both, same_image, size

pytestmark = requires_qemu

FORMATS = ["extended_l2=on", "", "cluster_size=512", "compat=0.10", "refcount_bits=1",
           "refcount_bits=64,extended_l2=on,cluster_size=16k"]

SEQUENCES = [
    ["w 0x11 0 4k"],
    ["w 0x11 8k 4k"],
    ["w 0x11 8704 1k"],
    ["w 0x11 60k 8k"],
    ["w 0x11 0 4k", "w 0x22 2k 4k", "w 0x33 100k 3k"],
    ["w 0x11 0 128k", "z 0 64k"],
    ["w 0x11 0 128k", "zu 0 64k"],
    ["w 0x11 0 128k", "z 4k 8k"],
    ["w 0x11 0 128k", "z 1k 2k"],
    ["z 3k 1k"],
    ["w 0x11 0 128k", "d 0 64k", "w 0x22 0 4k"],
    ["w 0x11 0 128k", "d 0 32k"],
    ["c 0x11 0 64k", "w 0x22 4k 4k"],
    ["c 0x11 64k 64k", "c 0x22 192k 64k", "z 196k 4k"],
    ["w 0x11 0 4k", "t 1G", "w 0x22 900M 1M"],
]


@pytest.mark.parametrize("spec", FORMATS)
@pytest.mark.parametrize("commands", SEQUENCES, ids=lambda c: "; ".join(c))
def test_operations_match_qemu(tmp_path, spec, commands):
    cluster = create_opts(spec).get("cluster_size", 65536)
    if any(c.startswith("c ") and size(c.split()[3]) > cluster for c in commands):
        pytest.skip("several compressed clusters in one request: QEMU's allocation order "
                    "is not deterministic")
    assert same_image(*run_both(tmp_path, spec, "64M", commands))


BACKED = [
    "extended_l2=on,backing_file=base.raw,backing_fmt=raw",
    "backing_file=base.raw,backing_fmt=raw",
    "extended_l2=on,backing_file=base.q2,backing_fmt=qcow2",
    "compat=0.10,backing_file=base.q2,backing_fmt=qcow2",
]


@pytest.mark.parametrize("spec", BACKED)
@pytest.mark.parametrize("commands", [
    ["w 0x11 8704 1k"], ["w 0x11 60k 8k"], ["w 0x11 1020k 8k"], ["w 0x11 2040k 16k"],
    ["z 3k 1k"], ["z 1020k 8k"], ["d 0 64k"], ["w 0x11 0 4k", "zu 64k 64k"],
], ids=lambda c: "; ".join(c))
def test_backed_operations_match_qemu(tmp_path, spec, commands):
    subprocess.run("qemu-img create -f raw base.raw 1M && "
                   "qemu-io -f raw -c 'write -P 0xaa 0 1M' base.raw && "
                   "qemu-img create -f qcow2 base.q2 2M && "
                   "qemu-io -f qcow2 -c 'write -P 0xbb 64k 512k' base.q2",
                   shell=True, check=True, capture_output=True, cwd=tmp_path)
    assert same_image(*run_both(tmp_path, spec, "4M", commands))


@pytest.mark.parametrize("spec,image_size,commands", [
    ("cluster_size=512,refcount_bits=64", "8M", ["w 0x11 0 4M"]),
    ("cluster_size=512,refcount_bits=64", "8M", ["w 0x11 0 4M", "t 1536", "t 8M",
                                                 "w 0x1 1M 1M"]),
    ("cluster_size=1k", "64M", ["w 0x11 0 3M", "zu 0 2M", "w 0x22 5M 1M"]),
    ("cluster_size=16k,extended_l2=on,refcount_bits=1", "1G", ["w 0x11 0 20M",
                                                                "w 0x11 300M 4M"]),
    ("cluster_size=512", "1M", ["w 0x55 0 1M", "t 100M", "w 0x11 99M 1M"]),
    ("", "100M", ["w 0x11 0 100M", "t 1M"]),
    ("lazy_refcounts=on", "100M", ["w 0x11 0 3M", "d 1M 1M", "w 0x22 1M 64k"]),
    ("cluster_size=2M,extended_l2=on", "100M", ["w 0x11 0 3M", "w 0x22 5M 1k",
                                                "c 0x33 20M 2M", "z 21M 64k"]),
    ("compression_type=zstd", "4M", ["c 0x11 0 64k", "c 0x11 128k 64k", "w 0x22 130k 1"]),
    # a stale compressed-byte offset makes QEMU write onto a new L2 table: refused,
    # image marked corrupt, cached metadata never written
    ("cluster_size=512,refcount_bits=2", "10M", ["c 0xd5 9510912 512", "zu 9392128 147456",
                                                 "c 0xff 2379776 512", "w 0x26 6950912 77824"]),
    # one write over compressed/allocated/unallocated clusters: later chunks are
    # allocated before earlier chunks free their compressed clusters
    ("compat=1.1", "1M", ["w 0x1 64k 64k", "c 0x2 0 64k", "w 0x3 0 192k"]),
    ("compat=1.1", "4M", [f"w 0x1 {i * 64}k 64k" if i % 3 == 0 else f"c 0x2 {i * 64}k 64k"
                          for i in range(24) if i % 3 != 2] + ["w 0x3 0 1536k"]),
    # D16: an L2 table allocated while chunks are in flight lets the earlier
    # chunks link (and free their compressed cluster) before the next chunk
    ("cluster_size=2048", "528384", ["c 0x25 280576 2048", "w 0x9f 518144 1",
                                     "w 0x22 147697 380687", "w 0xdc 84k 512"]),
], ids=lambda v: v if isinstance(v, str) else "; ".join(v))
def test_metadata_growth_matches_qemu(tmp_path, spec, image_size, commands):
    assert same_image(*run_both(tmp_path, spec, image_size, commands))


def test_reads_through_backing_chain(tmp_path):
    subprocess.run("qemu-img create -f raw base.raw 100k && "
                   "qemu-io -f raw -c 'write -P 0xaa 0 100k' base.raw && "
                   "qemu-img create -f qcow2 -o extended_l2=on -b base.raw -F raw mid.q2 1M && "
                   "qemu-io -c 'write -P 0xbb 96k 8k' mid.q2 && "
                   "qemu-img create -f qcow2 -b mid.q2 -F qcow2 top.q2 1M && "
                   "qemu-io -c 'write -P 0xcc 0 2k' top.q2",
                   shell=True, check=True, capture_output=True, cwd=tmp_path)
    expect = subprocess.run(["qemu-io", "-r", "-c", "read -v 0 128k", str(tmp_path / "top.q2")],
                            capture_output=True, check=True).stdout
    node = open_image(str(tmp_path / "top.q2"), "qcow2", read_only=True)
    data = io.pread(node, 0, 128 * 1024)
    close_image(node)
    assert data == b"\xcc" * 2048 + b"\xaa" * (96 * 1024 - 2048) + b"\xbb" * 8192 + \
        b"\0" * (24 * 1024)
    assert b"cc cc cc cc" in expect and b"bb bb bb bb" in expect


@pytest.mark.parametrize("spec,old,new,prealloc", [
    ("compat=1.1", "1M", "10M", "metadata"), ("compat=1.1", "1M", "10M", "falloc"),
    ("compat=1.1", "1M", "5M", "full"), ("extended_l2=on", "1000k", "10M", "falloc"),
    ("cluster_size=512,refcount_bits=64", "100k", "10M", "full"),
    ("compat=1.1", "1M", "100M", "off"),
    ("extended_l2=on,backing_file=base.raw,backing_fmt=raw", "1000k", "10M", "falloc"),
    ("backing_file=base.raw,backing_fmt=raw", "200k", "10M", "off"),
    ("extended_l2=on,backing_file=base.raw,backing_fmt=raw", "200k", "10M", "metadata"),
])
def test_resize_matches_qemu_img(tmp_path, spec, old, new, prealloc):
    """qemu-img resize --preallocation=MODE; both images are built by QEMU the same way
    (a copy would not keep the file's holes)."""
    subprocess.run("qemu-img create -f raw base.raw 300k && "
                   "qemu-io -f raw -c 'write -P 0xaa 0 300k' base.raw",
                   shell=True, check=True, capture_output=True, cwd=tmp_path)
    for name in ("q.qcow2", "e.qcow2"):
        subprocess.run(f"qemu-img create -f qcow2 -o {spec} {name} {old} && "
                       f"qemu-io -c 'write -P 1 0 64k' {name}",
                       shell=True, check=True, capture_output=True, cwd=tmp_path)
    subprocess.run(["qemu-img", "resize", f"--preallocation={prealloc}", "q.qcow2", new],
                   check=True, capture_output=True, cwd=tmp_path)
    node = open_image(str(tmp_path / "e.qcow2"), "qcow2")
    io.truncate(node, size(new), exact=False, prealloc=prealloc)
    close_image(node)
    assert same_image(str(tmp_path / "q.qcow2"), str(tmp_path / "e.qcow2"))
    assert _extents(tmp_path / "q.qcow2") == _extents(tmp_path / "e.qcow2")


def _extents(path) -> list[tuple[int, int]]:
    """Data extents of a file (SEEK_DATA / SEEK_HOLE)."""
    import os
    fd = os.open(path, os.O_RDONLY)
    out, off, end = [], 0, os.fstat(fd).st_size
    try:
        while off < end:
            try:
                data = os.lseek(fd, off, os.SEEK_DATA)
            except OSError:
                break
            off = os.lseek(fd, data, os.SEEK_HOLE)
            out.append((data, off))
    finally:
        os.close(fd)
    return out
