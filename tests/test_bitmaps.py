"""Persistent dirty bitmaps compared with real QEMU 7.2, step by step.

Each test runs a sequence of qemu-img/qemu-io command lines twice, under
QEMU in one directory and under qcowlab in another; after every step the
output (stdout+stderr), the exit status and the bytes of every file must be
the same.  Masked: timings, QEMU's automatic node names (#blockNNN, which
vary from run to run) and the host's "disk size" (ext4 delayed allocation
makes QEMU's own figure vary), and the image bytes while an internal
snapshot (which records its date) exists.
"""
from __future__ import annotations

import random
import re
import shlex
import subprocess
from pathlib import Path

import pytest

from tests.cli_support import mask_timing, needs_qemu, run_ours, run_qemu, tree_files

pytestmark = needs_qemu

_NODE = re.compile(r"#block\d+")
_DISK = re.compile(r"(disk size: |\"actual-size\": )\d+[^\n,]*")


def _mask(text: str) -> str:
    return _DISK.sub(r"\1N", _NODE.sub("#blockN", mask_timing(text)))


def run_sequence(tmp_path: Path, steps: list[str]) -> list[tuple[str, str, int]]:
    """Run ``steps`` ("img ARGS", "io ARGS" or "sh SCRIPT") on both sides;
    returns QEMU's (step, output, status) for further checks."""
    q, p = tmp_path / "qemu", tmp_path / "ours"
    q.mkdir()
    p.mkdir()
    log = []
    for step in steps:
        if step.startswith("sh "):
            for d in (q, p):
                subprocess.run(["bash", "-c", step[3:]], cwd=d, check=True)
            continue
        tool, *args = shlex.split(step)
        q_out, q_rc = run_qemu(tool, args, q)
        p_out, p_rc = run_ours(tool, args, p)
        assert _mask(p_out) == _mask(q_out), f"output of {step!r} differs"
        assert p_rc == q_rc, f"exit status of {step!r}: {p_rc}, QEMU {q_rc}"
        if "snapshot -c" not in step and "snapshot -a" not in step:
            ours, theirs = tree_files(p), tree_files(q)
            for name in theirs:
                assert ours.get(name) == theirs[name], f"{name} differs after {step!r}"
            assert ours.keys() == theirs.keys()
        log.append((step, q_out, q_rc))
    return log


# ------------------------------------------------------------------ sequences
IMAGE_OPTS = [
    "cluster_size=512", "cluster_size=4096", "cluster_size=65536",
    "cluster_size=2097152", "extended_l2=on", "cluster_size=16384,extended_l2=on",
    "cluster_size=2097152,extended_l2=on", "refcount_bits=1", "refcount_bits=64",
    "lazy_refcounts=on",
]


@pytest.mark.parametrize("opts", IMAGE_OPTS)
def test_lifecycle(tmp_path: Path, opts: str) -> None:
    """add with granularities, writes/zeroes/discards, disable/enable, clear,
    merge (same image and -b), remove, info, check, convert --bitmaps."""
    log = run_sequence(tmp_path, [
        f"img create -f qcow2 -o {opts} t.qcow2 3M",
        "img bitmap --add t.qcow2 a",
        "img bitmap --add -g 512 t.qcow2 b",
        "img bitmap --add -g 1M t.qcow2 c --disable",
        "img bitmap --add --granularity 128k t.qcow2 a-much-longer-bitmap-name",
        "io -c 'write -P 1 0 64k' -c 'write -z 300k 4k' -c 'discard 1M 1M' "
        "-c 'write -P 2 2M 1k' t.qcow2",
        "img info t.qcow2",
        "img info --output=json t.qcow2",
        "img check t.qcow2",
        "img bitmap --disable t.qcow2 a",
        "io -c 'write -P 3 2100k 7k' t.qcow2",
        "img bitmap --enable t.qcow2 c",
        "io -c 'write -z 512 512' t.qcow2",
        "img bitmap --merge c t.qcow2 b",
        "img bitmap --clear t.qcow2 a",
        "img create -f qcow2 -o " + opts + " o.qcow2 3M",
        "img bitmap --add o.qcow2 m",
        "img bitmap --merge b -b t.qcow2 o.qcow2 m",
        "img bitmap --merge a -b t.qcow2 -F qcow2 o.qcow2 m",
        "img info o.qcow2",
        "img convert --bitmaps -O qcow2 t.qcow2 conv.qcow2",
        "img info --output=json conv.qcow2",
        "img check conv.qcow2",
        "img compare t.qcow2 conv.qcow2",
        "img measure -O qcow2 t.qcow2",
        "img convert -O qcow2 t.qcow2 plain.qcow2",
        "img info plain.qcow2",
        "img bitmap --remove t.qcow2 b",
        "img bitmap --remove t.qcow2 a --remove",
        "img check t.qcow2",
        "img bitmap --remove t.qcow2 c",
        "img bitmap --remove t.qcow2 a-much-longer-bitmap-name",
        "img check t.qcow2",
        "img info t.qcow2",
    ])
    assert "bitmaps:" in log[6][1]


def test_several_operations_in_one_command(tmp_path: Path) -> None:
    run_sequence(tmp_path, [
        "img create -f qcow2 t.qcow2 1M",
        "img bitmap --add --disable --clear --enable t.qcow2 x",
        "io -c 'write 64k 64k' t.qcow2",
        "img bitmap --add -g 4k --merge x --disable t.qcow2 y",
        "img info t.qcow2",
        "img bitmap --clear --remove --add t.qcow2 x",
        "img bitmap --add --remove t.qcow2 x",
        "img info --output=json t.qcow2",
        "img check t.qcow2",
    ])


def test_errors(tmp_path: Path) -> None:
    log = run_sequence(tmp_path, [
        "img create -f qcow2 t.qcow2 1M",
        "img create -f qcow2 -o compat=0.10 v2.qcow2 1M",
        "img create -f raw r.raw 1M",
        "img bitmap --add t.qcow2 b0",
        "img bitmap --add t.qcow2 b0",
        "img bitmap --remove t.qcow2 nothere",
        "img bitmap --clear t.qcow2 nothere",
        "img bitmap --enable t.qcow2 nothere",
        "img bitmap --disable t.qcow2 nothere",
        "img bitmap --merge nothere t.qcow2 b0",
        "img bitmap --merge b0 t.qcow2 nothere",
        "img bitmap --add -g 100 t.qcow2 b1",
        "img bitmap --add -g 768 t.qcow2 b1",
        "img bitmap --add -g 4G t.qcow2 b1",
        "img bitmap --add -g 4T t.qcow2 b1",
        "img bitmap --add -g 0 t.qcow2 b0",
        "img bitmap --add -g -1 t.qcow2 b1",
        "img bitmap --add -g abc t.qcow2 b1",
        "img bitmap --add -g 2G t.qcow2 b2",
        "img bitmap --add t.qcow2 ''",
        "img bitmap --add t.qcow2 " + "n" * 1024,
        "img bitmap --add t.qcow2 " + "n" * 1023,
        "img bitmap --add v2.qcow2 b0",
        "img bitmap --remove v2.qcow2 b0",
        "img bitmap --add -f raw r.raw b0",
        "img bitmap --add r.raw b0",
        "img bitmap -f qcow2 --add r.raw b0",
        "img bitmap --add missing.qcow2 b0",
        "img bitmap t.qcow2 b0",
        "img bitmap --add t.qcow2",
        "img bitmap --add t.qcow2 a b",
        "img bitmap --clear -g 1k t.qcow2 b0",
        "img bitmap --clear -F raw t.qcow2 b0",
        "img bitmap --clear -b r.raw t.qcow2 b0",
        "img bitmap --merge b0 -b missing.qcow2 t.qcow2 b0",
        "img bitmap --merge b0 -b t.qcow2 t.qcow2 b0",
        "img bitmap --merge b0 -b r.raw -F raw t.qcow2 b0",
        "img bitmap --merge",
        "img bitmap -g",
        "img bitmap --bogus t.qcow2 b0",
        "img bitmap --image-opts -f qcow2 t.qcow2 b0 --add",
        "img bitmap --help",
        "img create -f qcow2 big.qcow2 2M",
        "img bitmap --add big.qcow2 b0",
        "img bitmap --merge b0 -b t.qcow2 big.qcow2 b0",
        "img create -f qcow2 h.qcow2 4T",
        "img bitmap --add -g 512 h.qcow2 x",
        "img bitmap --add -g 1k h.qcow2 x",
        "img info t.qcow2",
        "img check t.qcow2",
    ])
    assert any("Bitmap already exists: b0" in out for _, out, _ in log)


def test_convert_bitmaps(tmp_path: Path) -> None:
    """convert --bitmaps: its refusals (raw target or source, several sources,
    v2 images), targets with other cluster sizes, an existing target (-n)."""
    run_sequence(tmp_path, [
        "img create -f qcow2 t.qcow2 1M",
        "img create -f raw r.raw 1M",
        "img create -f qcow2 -o compat=0.10 v2.qcow2 1M",
        "img bitmap --add t.qcow2 a",
        "img bitmap --add -g 512 --disable t.qcow2 b",
        "io -c 'write -P 1 0 100k' t.qcow2",
        "img convert --bitmaps -O raw t.qcow2 o.raw",
        "img convert --bitmaps -O qcow2 r.raw o.qcow2",
        "img convert --bitmaps -O qcow2 t.qcow2 t.qcow2 o2.qcow2",
        "img convert --bitmaps -O qcow2 -o compat=0.10 t.qcow2 o3.qcow2",
        "img convert --bitmaps -O qcow2 v2.qcow2 o4.qcow2",
        "img convert --bitmaps -O qcow2 -o cluster_size=512 t.qcow2 o5.qcow2",
        "img info o5.qcow2",
        "img check o5.qcow2",
        "img convert --skip-broken-bitmaps -O qcow2 t.qcow2 o6.qcow2",
        "img create -f qcow2 o7.qcow2 1M",
        "img bitmap --add o7.qcow2 a",
        "img convert -n --bitmaps -O qcow2 t.qcow2 o7.qcow2",
        "img convert --bitmaps -O qcow2 -o extended_l2=on,cluster_size=2M t.qcow2 o8.qcow2",
        "img check o8.qcow2",
        "img info --output=json o8.qcow2",
    ])


def test_locked_image(tmp_path: Path) -> None:
    """A second writer is refused while qemu-io holds the image (interactive session)."""
    setup = ["img create -f qcow2 t.qcow2 1M", "img bitmap --add t.qcow2 b0"]
    run_sequence(tmp_path, setup)
    q = tmp_path / "qemu"
    p = tmp_path / "ours"
    holders = [subprocess.Popen(cmd, cwd=d, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
               for cmd, d in ((["qemu-io", "t.qcow2"], q), (["qcowlab-io", "t.qcow2"], p))]
    try:
        for h in holders:  # wait until the image is open (the prompt is printed)
            h.stdin.write(b"help\n")
            h.stdin.flush()
            h.stdout.readline()
        outs = []
        for tool_run, d in ((run_qemu, q), (run_ours, p)):
            outs.append(tool_run("img", ["bitmap", "--clear", "t.qcow2", "b0"], d))
        assert _mask(outs[0][0]) == _mask(outs[1][0]) and outs[0][1] == outs[1][1]
        assert "lock" in outs[0][0]
    finally:
        for h in holders:
            h.communicate(b"quit\n", timeout=30)
    assert tree_files(p) == tree_files(q)


def test_in_use_bitmaps(tmp_path: Path) -> None:
    """A qemu-io that aborts leaves its bitmaps marked in use: they are
    inconsistent afterwards (info, clear, merge, convert, resize, remove)."""
    run_sequence(tmp_path, [
        "img create -f qcow2 t.qcow2 1M",
        "img bitmap --add t.qcow2 a",
        "img bitmap --add -g 512 t.qcow2 b",
        "io -c 'write -P 1 0 64k' -c abort t.qcow2",
        "img info t.qcow2",
        "img info --output=json t.qcow2",
        "img check t.qcow2",
        "img bitmap --clear t.qcow2 a",
        "img bitmap --enable t.qcow2 a",
        "img bitmap --disable t.qcow2 a",
        "img bitmap --merge a t.qcow2 b",
        "img bitmap --merge b t.qcow2 a",
        "img convert --bitmaps -O qcow2 t.qcow2 o.qcow2",
        "img convert --bitmaps --skip-broken-bitmaps -O qcow2 t.qcow2 o2.qcow2",
        "img info o2.qcow2",
        "img measure -O qcow2 t.qcow2",
        "io -c 'write -P 1 0 64k' t.qcow2",
        "img resize t.qcow2 2M",
        "img bitmap --remove t.qcow2 a",
        "img check -r all t.qcow2",
        "img bitmap --remove t.qcow2 b",
        "img resize t.qcow2 2M",
        "img check t.qcow2",
    ])


def test_read_only_and_autoclear(tmp_path: Path) -> None:
    """qemu-io -r leaves the bitmaps alone; a cleared autoclear bit drops them."""
    run_sequence(tmp_path, [
        "img create -f qcow2 t.qcow2 1M",
        "img bitmap --add t.qcow2 a",
        "io -r -c 'read 0 4k' t.qcow2",
        "io -r -c 'write 0 4k' t.qcow2",
        "img check t.qcow2",
        "sh python3 -c \"import struct; f=open('t.qcow2','r+b'); f.seek(88); "
        "f.write(struct.pack('>Q', 0))\"",
        "img info t.qcow2",
        "io -r -c 'read 0 4k' t.qcow2",
        "img check t.qcow2",
        "io -c 'write 0 4k' t.qcow2",
        "img info t.qcow2",
        "img check t.qcow2",
        "img check -r leaks t.qcow2",
        "img bitmap --add t.qcow2 a",
        "img check t.qcow2",
    ])


def test_resize_snapshot_amend(tmp_path: Path) -> None:
    run_sequence(tmp_path, [
        "img create -f qcow2 t.qcow2 1M",
        "img bitmap --add -g 1k t.qcow2 a",
        "io -c 'write -P 1 1000k 24k' t.qcow2",
        "img resize t.qcow2 1500k",
        "io -c 'write -P 1 1400k 100k' t.qcow2",
        "img resize --shrink t.qcow2 999k",
        "img info t.qcow2",
        "img check t.qcow2",
        "img snapshot -c s1 t.qcow2",
        "img snapshot -a s1 t.qcow2",
        "img snapshot -d s1 t.qcow2",
        "img amend -o lazy_refcounts=on t.qcow2",
        "io -c 'write -P 2 0 64k' t.qcow2",
        "img amend -o refcount_bits=64 t.qcow2",
        "img amend -o size=2M t.qcow2",
        "img check t.qcow2",
        "img amend -o compat=0.10 t.qcow2",
        "img info t.qcow2",
        "img amend -o compat=1.1 t.qcow2",
        "img info t.qcow2",
        "img check t.qcow2",
    ])


def test_other_writers(tmp_path: Path) -> None:
    """Bitmaps of images written by commit, rebase, convert -n, dd and bench
    record those writes; an external data file changes nothing."""
    run_sequence(tmp_path, [
        "img create -f qcow2 b.qcow2 1M",
        "img bitmap --add b.qcow2 bb",
        "img create -f qcow2 -b b.qcow2 -F qcow2 t.qcow2",
        "img bitmap --add -g 4k t.qcow2 tt",
        "io -c 'write -P 1 0 64k' t.qcow2",
        "img commit t.qcow2",
        "img info b.qcow2",
        "io -c 'write -P 2 128k 64k' t.qcow2",
        "img commit -d t.qcow2",
        "img info --output=json b.qcow2",
        "img rebase -u -b '' t.qcow2",
        "img rebase -b b.qcow2 -F qcow2 t.qcow2",
        "img create -f qcow2 o.qcow2 1M",
        "img bitmap --add -g 4k o.qcow2 oo",
        "img convert -n -O qcow2 t.qcow2 o.qcow2",
        "img dd -O qcow2 if=t.qcow2 of=o.qcow2 bs=64k count=2",
        "img bench -w -c 4 -s 4k -o 256k o.qcow2",
        "img check o.qcow2",
        "img create -f qcow2 -o data_file=d.raw dd.qcow2 1M",
        "img bitmap --add dd.qcow2 x",
        "io -c 'write -P 3 4k 4k' dd.qcow2",
        "img info dd.qcow2",
        "img check dd.qcow2",
        "img convert --bitmaps -O qcow2 o.qcow2 c.qcow2",
        "img compare o.qcow2 c.qcow2",
    ])


def test_reopen(tmp_path: Path) -> None:
    """qemu-io reopen -r stores the bitmaps and makes them read-only; reopen -w
    marks them in use again; -s (temporary overlay) leaves them alone."""
    run_sequence(tmp_path, [
        "img create -f qcow2 t.qcow2 1M",
        "img bitmap --add t.qcow2 a",
        "img bitmap --add -g 512 t.qcow2 b",
        "io -c 'write -P 1 0 4k' -c 'reopen -r' -c 'read 0 4k' -c 'write 0 4k' "
        "-c 'reopen -w' -c 'write 64k 4k' -c 'reopen -r' -c 'reopen -w' t.qcow2",
        "img info t.qcow2",
        "io -s -c 'write -P 1 128k 4k' t.qcow2",
        "io -r -c 'reopen -w' -c 'write 192k 4k' t.qcow2",
        "img info t.qcow2",
        "img check t.qcow2",
    ])


def test_large_image(tmp_path: Path) -> None:
    """A 1 TiB image: 512-byte granularity needs a 256 MiB bitmap, several
    bitmap table clusters; merge across granularities, resize."""
    run_sequence(tmp_path, [
        "img create -f qcow2 huge.qcow2 1T",
        "img bitmap --add huge.qcow2 h",
        "img bitmap --add -g 512 huge.qcow2 h2",
        "img bitmap --add -g 4k huge.qcow2 h3",
        "io -c 'write 900G 1M' -c 'write 3k 1' -c 'write -z 1023G 1G' huge.qcow2",
        "img info huge.qcow2",
        "img check huge.qcow2",
        "img measure -O qcow2 huge.qcow2",
        "img bitmap --merge h3 huge.qcow2 h2",
        "img bitmap --merge h2 huge.qcow2 h",
        "img bitmap --merge h huge.qcow2 h3",
        "img resize huge.qcow2 1100G",
        "img resize --shrink huge.qcow2 1000G",
        "img check huge.qcow2",
        "img create -f qcow2 -o cluster_size=512 small.qcow2 1G",
        "img bitmap --add -g 512 small.qcow2 s",
        "img bitmap --add -g 512 small.qcow2 t --add",
    ])


@pytest.mark.parametrize("poke", ["dir-gbits:0 40", "dir-flags:0 4", "tbl:0:0 0x1ff",
                                  "tbl:0:0 0x10001", "dir-type:0 2", "dir-extra:0 8",
                                  "dir-tsize:0 5", "dir-toff:0 0x1000", "in-use tbl:0:0 0x1ff",
                                  "in-use tbl:0:0 0", "in-use tbl:1:0 0x50000"])
def test_corrupt_structures(tmp_path: Path, poke: str) -> None:
    """Broken bitmap directory entries and tables: QEMU's open errors, check results."""
    script = tmp_path / "poke.py"
    script.write_text(POKE_SCRIPT)
    steps = ["img create -f qcow2 t.qcow2 1M", "img bitmap --add t.qcow2 a",
             "img bitmap --add -g 512 t.qcow2 b", "io -c 'write -P 1 0 64k' t.qcow2"]
    if poke.startswith("in-use "):
        poke = poke[7:]
        steps.append(f"sh python3 {script} t.qcow2 dir-flags:0 3")
    steps += [f"sh python3 {script} t.qcow2 {poke}", "img check t.qcow2", "img info t.qcow2",
              "io -r -c 'read 0 4k' t.qcow2", "io -c 'write 0 4k' t.qcow2",
              "img check t.qcow2", "img bitmap --remove t.qcow2 a", "img check -r all t.qcow2",
              "img check t.qcow2", "img convert --bitmaps -O qcow2 t.qcow2 o.qcow2",
              "img measure -O qcow2 t.qcow2"]
    run_sequence(tmp_path, steps)


POKE_SCRIPT = '''
import struct, sys
img, what, val = sys.argv[1], sys.argv[2], int(sys.argv[3], 0)
f = open(img, "r+b")
d = f.read()
pos = struct.unpack_from(">I", d, 100)[0]
while True:
    magic, ln = struct.unpack_from(">II", d, pos)
    if magic == 0x23852875:
        dirofs = struct.unpack_from(">Q", d, pos + 24)[0]
        break
    pos += 8 + ((ln + 7) & ~7)
kind, *idx = what.split(":")
e = dirofs
for _ in range(int(idx[0])):
    ns, ex = struct.unpack_from(">HI", d, e + 18)
    e += (24 + ns + ex + 7) & ~7
if kind == "tbl":
    f.seek(struct.unpack_from(">Q", d, e)[0] + 8 * int(idx[1]))
    f.write(struct.pack(">Q", val))
else:
    off, fmt = {"toff": (0, ">Q"), "tsize": (8, ">I"), "flags": (12, ">I"),
                "type": (16, ">B"), "gbits": (17, ">B"), "extra": (20, ">I")}[kind[4:]]
    f.seek(e + off)
    f.write(struct.pack(fmt, val))
'''


# ------------------------------------------------------------------ random
NAMES = ["a", "b", "bitmap-with-a-longer-name"]
GRANULARITIES = ["", "-g 512 ", "-g 4k ", "-g 64k ", "-g 1M ", "-g 2M "]


def _random_io(rng: random.Random, size: int, cs: int) -> str:
    cmds = []
    for _ in range(rng.randint(1, 3)):
        kind = rng.choice(["write", "write", "zero", "discard", "compressed"])
        off = rng.randrange(0, size // 512) * 512
        length = min(rng.choice([512, 4096, 65536, 3 * 65536 + 512]), size - off)
        if kind == "write":
            cmds.append(f"write -P {rng.randint(1, 255)} {off} {length}")
        elif kind == "zero":
            cmds.append(f"write -z {off} {length}")
        elif kind == "discard":
            off = off // cs * cs
            cmds.append(f"discard {off} {min(cs * rng.randint(1, 3), size - off)}")
        else:  # one cluster: several would be compressed in parallel, in random order
            off = rng.randrange(0, -(-size // cs)) * cs
            cmds.append(f"write -c -P {rng.randint(1, 255)} {off} {min(cs, size - off)}")
    return "io " + " ".join(f"-c '{c}'" for c in cmds) + " t.qcow2"


def _random_bitmap(rng: random.Random) -> str:
    ops = []
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        op = rng.choice(["add", "add", "add", "remove", "clear", "enable", "disable",
                         "merge", "merge-b"])
        if op == "add":
            ops.append("--add " + ("--disable " if rng.random() < 0.2 else ""))
        elif op == "merge":
            ops.append(f"--merge {rng.choice(NAMES)} ")
        elif op == "merge-b":
            return f"img bitmap --merge {rng.choice(NAMES)} -b o.qcow2 t.qcow2 " \
                   f"{rng.choice(NAMES)}"
        else:
            ops.append(f"--{op} ")
    gran = rng.choice(GRANULARITIES) if any(o.startswith("--add") for o in ops) else ""
    return f"img bitmap {''.join(ops)}{gran}t.qcow2 {rng.choice(NAMES)}"


def random_steps(seed: int) -> list[str]:
    rng = random.Random(seed)
    cs = rng.choice([512, 4096, 16384, 65536, 2097152])
    ext = "on" if cs >= 16384 and rng.random() < 0.5 else "off"
    size = rng.choice([1, 2, 5]) * 1024 * 1024 + rng.choice([0, 0, 512, 65536])
    opts = f"cluster_size={cs},extended_l2={ext}"
    opts += rng.choice(["", "", ",lazy_refcounts=on", ",refcount_bits=1", ",refcount_bits=64"])
    steps = [f"img create -f qcow2 -o {opts} t.qcow2 {size}",
             f"img create -f qcow2 o.qcow2 {size}",
             "img bitmap --add o.qcow2 a", "io -c 'write 0 128k' o.qcow2"]
    for _ in range(rng.randint(6, 12)):
        r = rng.random()
        if r < 0.45:
            steps.append(_random_bitmap(rng))
        elif r < 0.8:
            steps.append(_random_io(rng, size, cs))
        elif r < 0.87:
            steps.append("img info --output=json t.qcow2" if rng.random() < 0.5
                         else "img info t.qcow2")
        elif r < 0.92:
            steps.append("img check t.qcow2")
        elif r < 0.96:
            steps.append("img convert --bitmaps -O qcow2 t.qcow2 c.qcow2")
        else:  # grows the bitmaps too (o.qcow2 keeps its size: merges fail then)
            steps.append(f"img resize t.qcow2 +{rng.choice(['512', '64k', '1M'])}")
    steps += ["img info t.qcow2", "img check t.qcow2"]
    return steps


@pytest.mark.parametrize("seed", range(50))
def test_random_sequence(tmp_path: Path, seed: int) -> None:
    log = run_sequence(tmp_path, random_steps(seed))
    step, out, rc = log[-1]
    assert rc == 0 and "No errors were found on the image." in out, (step, out)
