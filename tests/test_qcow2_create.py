"""qcow2 image creation compared byte for byte with qemu-img create."""
from __future__ import annotations

import subprocess

import pytest

from emulator.block.node import BlockError
from emulator.qcow2.create import create
from tests.qcow2_support import create_opts, requires_qemu, same_image, size

pytestmark = requires_qemu

IMAGES = [
    ("", "1M"), ("", "0"), ("", "1000"), ("", "100T"),
    ("extended_l2=on", "64M"), ("compat=0.10", "1M"),
    ("cluster_size=512", "1M"), ("cluster_size=2M", "10M"), ("cluster_size=4k", "1G"),
    ("refcount_bits=1", "1M"), ("refcount_bits=8", "1M"), ("refcount_bits=64", "1M"),
    ("lazy_refcounts=on", "1M"), ("compression_type=zstd", "1M"),
    ("preallocation=metadata", "10M"), ("preallocation=falloc", "10M"),
    ("preallocation=full", "3M"), ("preallocation=metadata,extended_l2=on", "100M"),
    ("cluster_size=512,preallocation=metadata", "64M"),
    ("refcount_bits=1,cluster_size=512,preallocation=metadata", "20M"),
    ("backing_file=base.img,backing_fmt=raw", "1M"),
    ("backing_file=base.img,backing_fmt=raw,cluster_size=512", "1M"),
    ("preallocation=falloc,extended_l2=on,backing_file=base.img,backing_fmt=raw", "1M"),
]


@pytest.mark.parametrize("spec,image_size", IMAGES)
def test_create_matches_qemu(tmp_path, spec, image_size):
    subprocess.run(["qemu-img", "create", "-f", "raw", str(tmp_path / "base.img"), "1M"],
                   check=True, capture_output=True)
    qemu, emu = str(tmp_path / "q.qcow2"), str(tmp_path / "e.qcow2")
    subprocess.run(["qemu-img", "create", "-f", "qcow2", "-u", "-o", spec or "compat=1.1",
                    qemu, image_size], check=True, capture_output=True, cwd=tmp_path)
    opts = create_opts(spec)
    opts["size"] = size(image_size)
    create(emu, opts)
    assert same_image(qemu, emu)


ERRORS = [
    ("compat=0.42", "Parameter 'version' does not accept value '0.42'"),
    ("cluster_size=3000", "Cluster size must be a power of two between 512 and 2048k"),
    ("refcount_bits=3", "Refcount width must be a power of two and may not exceed 64 bits"),
    ("compat=0.10,refcount_bits=8", "Different refcount widths than 16 bits require "
     "compatibility level 1.1 or above (use version=v3 or greater)"),
    ("compat=0.10,lazy_refcounts=on", "Lazy refcounts only supported with compatibility "
     "level 1.1 and above (use version=v3 or greater)"),
    ("compression_type=lz4", "Parameter 'compression-type' does not accept value 'lz4'"),
    ("compat=0.10,compression_type=zstd", "Non-zlib compression type is only supported with "
     "compatibility level 1.1 and above (use version=v3 or greater)"),
    ("preallocation=bogus", "Parameter 'preallocation' does not accept value 'bogus'"),
    ("extended_l2=on,cluster_size=8k", "Extended L2 entries are only supported with cluster "
     "sizes of at least 16384 bytes"),
    ("compat=0.10,extended_l2=on", "Extended L2 entries are only supported with "
     "compatibility level 1.1 and above (use version=v3 or greater)"),
    ("backing_fmt=qcow2", "Backing format cannot be used without backing file"),
    ("backing_file=base.img,backing_fmt=raw,preallocation=metadata",
     "Backing file and preallocation can only be used at the same time if extended_l2 is on"),
    ("data_file_raw=on", "data-file-raw requires data-file"),
]


@pytest.mark.parametrize("spec,message", ERRORS)
def test_create_errors_match_qemu(tmp_path, spec, message):
    subprocess.run(["qemu-img", "create", "-f", "raw", str(tmp_path / "base.img"), "1M"],
                   check=True, capture_output=True)
    qemu, emu = tmp_path / "q.qcow2", tmp_path / "e.qcow2"
    r = subprocess.run(["qemu-img", "create", "-f", "qcow2", "-u", "-o", spec, str(qemu), "1M"],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.strip().endswith(f"{qemu}: {message}")
    assert not qemu.exists()
    opts = create_opts(spec)
    opts["size"] = size("1M")
    with pytest.raises(BlockError) as err:
        create(str(emu), opts)
    assert err.value.message == message
    assert not emu.exists()
