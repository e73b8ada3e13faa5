"""Filters give what qemu-iotests' common.filter gives.

Inputs are lines printed by QEMU 7.2; expected outputs are the filtered
lines as they appear in QEMU's own tests/qemu-iotests/271.out (or follow
from the sed expressions of common.filter).
"""
from __future__ import annotations

from harness import filters as flt

CTX = flt.FilterContext(test_dir="/tmp/harness/x", imgfmt="qcow2")


def test_qemu_io_timing() -> None:
    raw = ("wrote 4096/4096 bytes at offset 0\n"
           "4 KiB, 1 ops; 00.00 sec (2.386 MiB/sec and 610.7258 ops/sec)\n")
    assert flt.filter_qemu_io(raw, CTX) == (
        "wrote 4096/4096 bytes at offset 0\n"
        "4 KiB, X ops; XX:XX:XX.X (XXX YYY/sec and XXX ops/sec)\n")


def test_qemu_io_prompt_and_cr() -> None:
    assert flt.filter_qemu_io("qemu-io> read 0 1\r\n", CTX) == "read 0 1\n"


def test_img_create_like_271() -> None:
    raw = ("Formatting '/tmp/harness/x/t.qcow2', fmt=qcow2 cluster_size=65536 "
           "extended_l2=on compression_type=zlib size=1048576 backing_file=/tmp/harness/x/t.qcow2.base "
           "backing_fmt=raw lazy_refcounts=off refcount_bits=16\n"
           "Formatting '/tmp/harness/x/t.qcow2.raw', fmt=raw size=1048576\n")
    assert flt.filter_img_create(raw, CTX) == (
        "Formatting 'TEST_DIR/t.IMGFMT', fmt=IMGFMT size=1048576 "
        "backing_file=TEST_DIR/t.IMGFMT.base backing_fmt=raw\n"
        "Formatting 'TEST_DIR/t.IMGFMT.raw', fmt=raw size=1048576\n")


def test_qemu_img_check() -> None:
    raw = ("No errors were found on the image.\n"
           "2/16 = 12.50% allocated, 50.00% fragmented, 0.00% compressed clusters\n"
           "Image end offset: 524288\n")
    assert flt.filter_qemu_img_check(raw, CTX) == "No errors were found on the image.\n"


def test_img_info_drops_format_specific() -> None:
    raw = ("image: /tmp/harness/x/t.qcow2\nfile format: qcow2\n"
           "virtual size: 1 MiB (1048576 bytes)\ncluster_size: 65536\n"
           "Format specific information:\n    compat: 1.1\n    compression type: zlib\n"
           "    lazy refcounts: false\n    refcount bits: 16\n    corrupt: false\n"
           "    extended l2: false\n")
    assert flt.filter_img_info(raw, CTX) == (
        "image: TEST_DIR/t.IMGFMT\nfile format: IMGFMT\nvirtual size: 1 MiB (1048576 bytes)\n")


def test_qmp_timestamps() -> None:
    raw = '{"timestamp": {"seconds": 1700000000, "microseconds": 123456}, "event": "X"}\n'
    assert flt.filter_qmp(raw, CTX) == (
        '{"timestamp": {"seconds":  TIMESTAMP, "microseconds":  TIMESTAMP}, "event": "X"}\n')


def test_testdir_and_per_case_regex() -> None:
    text = "qemu-io: can't open device /tmp/harness/x/t.qcow2: boom\n"
    out = flt.apply(text, [], CTX, [flt.regex_filter(r"boom$", "BANG")])
    assert out == "qemu-io: can't open device TEST_DIR/t.qcow2: BANG\n"


def test_qemu_img_map() -> None:
    raw = ("Offset          Length          Mapped to       File\n"
           "0               0x2000          0x50000         /tmp/harness/x/t.qcow2\n"
           '[{ "start": 0, "length": 8192, "depth": 0, "present": true, "zero": false, '
           '"data": true, "offset": 327680}]\n')
    assert flt.apply(raw, ["qemu_img_map"], CTX) == (
        "Offset          Length          Mapped to       File\n"
        "0               0x2000          TEST_DIR/t.qcow2\n"
        '[{ "start": 0, "length": 8192, "depth": 0, "present": true, "zero": false, '
        '"data": true, "offset": OFFSET}]\n')


def test_img_info_format_specific_keeps_luks_details_with_fixed_random_parts() -> None:
    raw = ("image: /tmp/harness/x/t.qcow2\nfile format: qcow2\nencrypted: yes\n"
           "cluster_size: 65536\nFormat specific information:\n"
           "    compression type: zlib\n    encrypt:\n"
           "        uuid: aad59810-ecb4-44f6-b39d-4ee24ea376c8\n        format: luks\n"
           "        slots:\n            [0]:\n                active: true\n"
           "                iters: 41321\n        master key iters: 10170\n")
    # as in qemu-iotests 198.out (_filter_img_info --format-specific)
    assert flt.filter_img_info_format_specific(raw, CTX) == (
        "image: TEST_DIR/t.IMGFMT\nfile format: IMGFMT\nFormat specific information:\n"
        "    compression type: COMPRESSION_TYPE\n    encrypt:\n"
        "        uuid: 00000000-0000-0000-0000-000000000000\n        format: luks\n"
        "        slots:\n            [0]:\n                active: true\n"
        "                iters: 1024\n        master key iters: 1024\n")
    assert "encrypt" not in flt.filter_img_info(raw, CTX)


def test_json_filename_nested_and_plain() -> None:
    raw = ('image: json:{"driver": "qcow2", "backing": {"x": "json:{\\"a\\": {}}"}}\n'
           "backing file: json:{\"driver\": \"raw\"} (actual path: x)\n")
    assert flt.filter_json_filename(raw, CTX) == (
        "image: json:{ /* filtered */ }\n"
        "backing file: json:{ /* filtered */ } (actual path: x)\n")
