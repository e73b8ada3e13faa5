"""Parsers and formatters of the command lines, checked against QEMU 7.2's behaviour.

Size strings are judged through qemu-io itself (differentially); the
getopt/QemuOpts expectations below were observed with qemu-io/qemu-img 7.2.
"""
from __future__ import annotations

import errno

import pytest

from emulator.cli.getopt import Getopt, LongOpt
from emulator.cli.qemuopts import OptsError, QemuOpts, split_params
from emulator.cli.qobject import qdict_items
from emulator.units import cvtstr, size_to_str, strtosz
from tests.cli_support import differential, needs_qemu, qemu_setup

SIZES = ["4k", "1.5M", "0x1000", "0x10k", "1.k", "1.5", "1.0", " 5", "+5", "1e3", "1.5e3", "k",
         "16E", "15E", "15.9999E", "0x", "1b", "1B", "1kB", "99999999999999999999",
         "99999999999999999999k", "8E", "0.5k", "0.0001k", "1.23456789M", "1.2.3", "7.9999E",
         "0x7fffffffffffffff", "0xffffffffffffffff", "9223372036854775807"]


@needs_qemu
def test_sizes_like_qemu_io(tmp_path):
    """Each size as a read length (big image) and as an alloc count: same text as QEMU."""
    cmds = []
    for s in SIZES:
        cmds += ["-c", f"read -q 0 {s}", "-c", f"alloc 0 {s}"]
    setup = qemu_setup(["img", "create", "-q", "-f", "qcow2", "big.qcow2", "64G"])
    differential(tmp_path, setup, "io", cmds + ["big.qcow2"])


def test_strtosz_values():
    assert strtosz("1.5M") == (0, 1572864)
    assert strtosz("0.0001k") == (0, 0)
    assert strtosz("0.5k") == (0, 512)
    assert strtosz("1.5") == (-errno.EINVAL, 0)
    assert strtosz("16E") == (-errno.ERANGE, 0)
    assert strtosz("99999999999999999999k") == (-errno.EINVAL, 0)


def test_human_sizes():
    assert size_to_str(270336) == "264 KiB"
    assert size_to_str(1048576) == "1 MiB"
    assert size_to_str(0) == "0 B"
    assert cvtstr(4096) == "4 KiB"
    assert cvtstr(512) == "512 bytes"
    assert cvtstr(268435456) == "256 MiB"


def test_getopt_permutes_and_reports(capsys):
    g = Getopt(["read", "0", "-P", "1", "4k", "-Z"], "bCl:pP:qs:v")
    assert list(g) == ["P", "?"]
    assert g.argv[g.optind:] == ["0", "4k"]
    assert capsys.readouterr().err == "read: invalid option -- 'Z'\n"


def test_getopt_long_ambiguous(capsys):
    longs = [LongOpt("cmd", 1, "c"), LongOpt("copy-on-read", 0, "C"), LongOpt("cache", 1, "t")]
    g = Getopt(["qemu-io", "--c", "x"], "c:Ct:", longs)
    assert g.next() == "?"
    assert capsys.readouterr().err == ("qemu-io: option '--c' is ambiguous; possibilities: "
                                       "'--cmd' '--copy-on-read' '--cache'\n")


def test_getopt_colon_mode_missing_argument():
    g = Getopt(["create", "-f"], ":F:b:f:ho:qu")
    assert g.next() == ":"
    assert g.argv[g.optind - 1] == "-f"


def test_qemuopts_escaping_and_flags():
    assert split_params("driver=raw,,x,nodriver,size=1") == [
        ("driver", "raw,x", False, False), ("driver", "off", False, True),
        ("size", "1", False, False)]
    opts = QemuOpts()
    opts.parse("cluster_size=4k,cluster_size=8k")
    assert opts.get("cluster_size") == "8k"


def test_qemuopts_invalid_parameter():
    from emulator.cli.create_opts import RAW
    with pytest.raises(OptsError, match="Invalid parameter 'foo'"):
        QemuOpts(RAW).parse("foo=bar")


def test_qdict_order_of_image_info():
    keys = ["filename", "format", "dirty-flag", "actual-size", "virtual-size", "cluster-size",
            "backing-filename", "full-backing-filename", "backing-filename-format",
            "format-specific"]
    order = [k for k, _ in qdict_items(dict.fromkeys(keys))]
    assert order == ["backing-filename-format", "virtual-size", "filename", "cluster-size",
                     "format", "actual-size", "format-specific", "full-backing-filename",
                     "backing-filename", "dirty-flag"]
