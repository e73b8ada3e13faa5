"""qemu-img amend's driver side: compat upgrade/downgrade (zero clusters
expanded), lazy refcounts, resize and the refusals, against qemu-img amend."""
from __future__ import annotations

import subprocess

import pytest

from emulator.block.node import BlockError
from emulator.block.open import close_image, open_image
from emulator.qcow2.amend import amend
from tests.qcow2_support import requires_qemu, same_image, size
from tests.test_qcow2_io import _extents

pytestmark = requires_qemu


@pytest.mark.parametrize("spec,setup,options", [
    ("-o compat=0.10", ["write -P 1 0 64k"], "compat=1.1"),
    ("", ["write -P 1 0 64k", "write -z 64k 64k", "write -z 1M 128k"], "compat=0.10"),
    ("-b base.raw -F raw", ["write -P 1 0 64k", "write -z 64k 64k", "write -z 1M 128k"],
     "compat=0.10"),
    ("-o extended_l2=on", ["write -P 1 0 64k"], "compat=0.10"),
    ("-o refcount_bits=8", ["write -P 1 0 64k"], "compat=0.10"),
    ("", ["write -P 1 0 64k"], "lazy_refcounts=on"),
    ("-o lazy_refcounts=on", ["write -P 1 0 64k"], "lazy_refcounts=off"),
    ("", ["write -P 1 0 64k"], "size=8M"),
    ("", ["write -P 1 0 64k"], "compat=0.10,lazy_refcounts=on"),
    ("-o compression_type=zstd", ["write -c -P 1 0 64k"], "compat=0.10"),
    ("-o compression_type=zstd", ["write -P 1 0 64k"], "compat=0.10"),
    ("", [], "compat=2.0"),
    ("", [], "refcount_bits=3"),
    ("-b base.raw -F raw", [], "backing_file=other.raw"),
    ("-b base.raw -F raw", [], "backing_file=base.raw,backing_fmt=raw"),
    ("", ["write -P 1 0 1M"], "refcount_bits=1"),
    ("", ["write -P 1 0 1M"], "refcount_bits=64"),
    ("-o refcount_bits=1,cluster_size=512", ["write -P 1 0 1M"], "refcount_bits=64"),
    ("-o cluster_size=512", ["write -P 1 0 3M"], "refcount_bits=1"),
    ("-o cluster_size=512,refcount_bits=64", ["write -P 1 0 3M"], "refcount_bits=2"),
    ("", ["write -P 1 0 1M"], "compat=0.10,refcount_bits=8"),
    ("-o refcount_bits=8", ["write -P 1 0 1M"], "compat=0.10,refcount_bits=16"),
])
def test_amend_matches_qemu_img(tmp_path, spec, setup, options):
    subprocess.run(["qemu-img", "create", "-f", "raw", "base.raw", "4M"], check=True,
                   capture_output=True, cwd=tmp_path)
    for name in ("q.qcow2", "e.qcow2"):
        subprocess.run(f"qemu-img create -f qcow2 {spec} {name} 4M", shell=True, check=True,
                       capture_output=True, cwd=tmp_path)
        for cmd in setup:
            subprocess.run(["qemu-io", "-c", cmd, name], check=True, capture_output=True,
                           cwd=tmp_path)
    r = subprocess.run(["qemu-img", "amend", "-o", options, "q.qcow2"], capture_output=True,
                       text=True, cwd=tmp_path)
    opts = dict(item.split("=", 1) for item in options.split(","))
    if "size" in opts:
        opts["size"] = size(opts["size"])
    node = open_image(str(tmp_path / "e.qcow2"), "qcow2")
    try:
        amend(node, opts)
        printed = ""
    except BlockError as e:
        printed = f"qemu-img: {e.message}\n{e.hint}"
    finally:
        close_image(node)
    assert printed.strip() == r.stderr.strip()
    assert same_image(str(tmp_path / "q.qcow2"), str(tmp_path / "e.qcow2"))
    assert _extents(tmp_path / "q.qcow2") == _extents(tmp_path / "e.qcow2")
