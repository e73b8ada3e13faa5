"""Corrupt qcow2 inputs: named corruptions, random mutations, and their comparison.

Base images are always made by real QEMU; each corruption is applied to a
copy, and each probe command runs on its own fresh copy on both sides.
"""
from __future__ import annotations

import hashlib
import random
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .compare import data_extents
from .filters import filter_output
from .runners import Result, Runner, qemu_runner
from .sequence import parse_script

IMG = "img.qcow2"
PROBES = [("img", ["check", IMG]), ("img", ["info", IMG]), ("io", ["-c", "read 0 64k", IMG])]
#: further probes: the write path and repair, where writes must match QEMU's exactly
WRITE_PROBES = [("io", ["-c", "write -P 0x77 0 64k", IMG]), ("img", ["check", "-r", "all", IMG])]
OFFSET_MASK = 0x00FFFFFFFFFFFE00

class Base:
    """How real QEMU builds a base image in an empty directory: ``before`` lines,
    ``qemu-img create`` of img.qcow2 (2M, with ``opts`` and ``create_args``),
    qemu-io writes ``cmds``, then ``after`` lines.  Files other than img.qcow2
    (backing file, data file) are companions, copied next to every mutated copy."""

    def __init__(self, opts: str, cmds: list[str], before: tuple[str, ...] = (),
                 after: tuple[str, ...] = (), create_args: str = "") -> None:
        self.opts, self.cmds, self.before, self.after = opts, cmds, before, after
        self.create_args = create_args

    def lines(self) -> list[str]:
        create = f"qemu-img create -q -f qcow2 -o {self.opts} {self.create_args}".rstrip()
        return [*self.before, f"{create} {IMG} 2M",
                "qemu-io -f qcow2 " + " ".join(f"-c '{c}'" for c in self.cmds) + f" {IMG}",
                *self.after]


_SNAPSHOTS = (f"qemu-img snapshot -c s1 {IMG}", f"qemu-io -f qcow2 -c 'write -P 0x55 0 96k' {IMG}",
              f"qemu-img snapshot -c second-snapshot {IMG}")

#: base images by name
BASES: dict[str, Base] = {
    "ext64k": Base("extended_l2=on,cluster_size=64k",
                   ["write -P 0x11 0 64k", "write -P 0x22 68k 4k", "write -c -P 0x33 128k 64k",
                    "write -z 192k 64k"]),
    "std64k": Base("cluster_size=64k",
                   ["write -P 0x11 0 64k", "write -P 0x22 64k 4k", "write -c -P 0x33 128k 64k",
                    "write -z 192k 64k"]),
    "std4k": Base("cluster_size=4k,refcount_bits=8",
                  ["write -P 0x11 0 8k", "write -c -P 0x33 8k 4k", "write -P 0x44 1M 4k"]),
    # internal snapshots (the second one after a resize: its disk size differs)
    "snap64k": Base("cluster_size=64k", ["write -P 0x11 0 64k", "write -c -P 0x33 128k 64k"],
                    after=(*_SNAPSHOTS[:2], f"qemu-img resize {IMG} 3M", _SNAPSHOTS[2])),
    "snapext": Base("extended_l2=on,cluster_size=32k,refcount_bits=4",
                    ["write -P 0x11 0 40k", "write -z 64k 32k"], after=_SNAPSHOTS),
    # backing file name and backing format extension
    "backing": Base("cluster_size=4k", ["write -P 0x22 4k 8k"],
                    before=("qemu-img create -q -f qcow2 base.qcow2 2M",
                            "qemu-io -f qcow2 -c 'write -P 0x66 0 1M' base.qcow2"),
                    create_args="-b base.qcow2 -F qcow2"),
    # external data file extension
    "datafile": Base("cluster_size=64k,data_file=img.data",
                     ["write -P 0x11 0 64k", "write -z 128k 64k"]),
}


def make_base(name: str, workdir: Path) -> bytes:
    """Create base image ``name`` with real QEMU in ``workdir``; return its bytes."""
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    q = qemu_runner()
    for step in parse_script("\n".join(BASES[name].lines())).steps:
        r = q.run(step.tool, list(step.argv), workdir)
        assert r.rc == 0, (step, r)
    return (workdir / IMG).read_bytes()


def companions(workdir: Path) -> dict[str, bytes]:
    """The files next to a base image made in ``workdir`` (backing or data file)."""
    return {p.name: p.read_bytes() for p in workdir.iterdir() if p.name != IMG}


def repro(base: str, original: bytes, mutated: bytes) -> str:
    """Shell lines rebuilding ``mutated`` from scratch: QEMU creates the base, python pokes."""
    lines = [ln + (" >/dev/null" if ln.startswith("qemu-io") else "")
             for ln in BASES[base].lines()]
    i, n = 0, min(len(original), len(mutated))
    while i < n:
        if original[i] == mutated[i]:
            i += 1
            continue
        j = i
        while j < n and original[j] != mutated[j]:
            j += 1
        lines.append(f"python3 -c \"f=open('{IMG}','r+b');f.seek({i:#x});"
                     f"f.write(bytes.fromhex('{mutated[i:j].hex()}'))\"")
        i = j
    return "\n".join(lines)


@dataclass
class Layout:
    """Where the metadata of an image lives."""

    l1: int
    l1_size: int
    l2: int
    l2_entry_size: int
    reftable: int
    refblock: int
    ext_start: int
    refcount_bytes: float
    #: offset of every header extension's (type, length) pair, the end marker included
    exts: list[int]
    #: every snapshot table entry: (entry offset, its L1 table offset, L1 size,
    #: extra data size, id and name size)
    snapshots: list[tuple[int, int, int, int, int]]


def _extensions(data: bytes, start: int) -> list[int]:
    exts, pos = [], start
    while pos + 8 <= len(data):
        kind, length = struct.unpack_from(">II", data, pos)
        exts.append(pos)
        if not kind:
            break
        pos += 8 + (length + 7) // 8 * 8
    return exts


def _snapshot_entries(data: bytes) -> list[tuple[int, int, int, int, int]]:
    nb, pos = struct.unpack_from(">IQ", data, 60)
    entries = []
    for _ in range(nb):
        l1, l1_size, id_size, name_size = struct.unpack_from(">QIHH", data, pos)
        extra = struct.unpack_from(">I", data, pos + 36)[0]
        entries.append((pos, l1, l1_size, extra, id_size + name_size))
        pos += (40 + extra + id_size + name_size + 7) // 8 * 8
    return entries


def layout(data: bytes) -> Layout:
    """Read the metadata offsets of a (valid) qcow2 image."""
    l1_size, l1 = struct.unpack_from(">IQ", data, 36)
    reftable = struct.unpack_from(">Q", data, 48)[0]
    incompat = struct.unpack_from(">Q", data, 72)[0]
    order = struct.unpack_from(">I", data, 96)[0]
    hdr_len = struct.unpack_from(">I", data, 100)[0]
    l2 = struct.unpack_from(">Q", data, l1)[0] & OFFSET_MASK
    refblock = struct.unpack_from(">Q", data, reftable)[0]
    return Layout(l1, l1_size, l2, 16 if incompat & 16 else 8, reftable, refblock,
                  hdr_len, (1 << order) / 8, _extensions(data, hdr_len), _snapshot_entries(data))


def _put(data: bytearray, off: int, fmt: str, *values: int) -> None:
    struct.pack_into(fmt, data, off, *values)


def _l2_entry(data: bytearray, index: int, value: int, bitmap: int | None = None) -> None:
    lay = layout(data)
    _put(data, lay.l2 + index * lay.l2_entry_size, ">Q", value)
    if bitmap is not None:
        _put(data, lay.l2 + index * lay.l2_entry_size + 8, ">Q", bitmap)


def _snap(data: bytearray, index: int) -> int:
    """Offset of snapshot table entry ``index``."""
    return layout(data).snapshots[index][0]


def _ext(data: bytearray, kind: int) -> int:
    """Offset of the header extension of type ``kind``."""
    return next(off for off in layout(data).exts if struct.unpack_from(">I", data, off)[0] == kind)


def _garbage(data: bytearray, start: int, end: int, seed: int = 1) -> None:
    rng = random.Random(seed)
    data[start:end] = bytes(rng.randrange(256) for _ in range(end - start))


Mutation = Callable[[bytearray], None]

#: named corruptions: name -> (base image, mutation)
NAMED: dict[str, tuple[str, Mutation]] = {
    "garbage_header_keep_magic": ("std64k", lambda d: _garbage(d, 4, 104)),
    "garbage_first_sector": ("std64k", lambda d: _garbage(d, 0, 512)),
    "version_1": ("std64k", lambda d: _put(d, 4, ">I", 1)),
    "version_4": ("std64k", lambda d: _put(d, 4, ">I", 4)),
    "cluster_bits_8": ("std64k", lambda d: _put(d, 20, ">I", 8)),
    "cluster_bits_22": ("std64k", lambda d: _put(d, 20, ">I", 22)),
    "unknown_incompatible_bits": ("ext64k", lambda d: _put(d, 72, ">Q", 0x10 | 1 << 13 | 1 << 40)),
    "unknown_autoclear_bit": ("std64k", lambda d: _put(d, 88, ">Q", 1 << 20)),
    "unknown_compatible_bit": ("std64k", lambda d: _put(d, 80, ">Q", 1 << 33)),
    "corrupt_bit": ("std64k", lambda d: _put(d, 72, ">Q", 2)),
    "dirty_bit": ("std64k", lambda d: _put(d, 72, ">Q", 1)),
    "crypt_method_aes": ("std64k", lambda d: _put(d, 32, ">I", 1)),
    "crypt_method_negative": ("datafile", lambda d: _put(d, 32, ">I", 0xCD41BFD8)),
    "refcount_order_7": ("std64k", lambda d: _put(d, 96, ">I", 7)),
    "header_length_small": ("std64k", lambda d: _put(d, 100, ">I", 100)),
    "header_length_huge": ("std64k", lambda d: _put(d, 100, ">I", 0x20000)),
    "l1_beyond_eof": ("std64k", lambda d: _put(d, 40, ">Q", 0x10000000)),
    "l1_unaligned": ("std64k", lambda d: _put(d, 40, ">Q", layout(d).l1 + 0x200)),
    "l1_size_huge": ("std64k", lambda d: _put(d, 36, ">I", 0x7FFFFFFF)),
    "l1_size_too_small": ("std64k", lambda d: _put(d, 24, ">Q", 1 << 40)),
    "refcount_table_beyond_eof": ("std64k", lambda d: _put(d, 48, ">Q", 0x10000000)),
    "refcount_table_unaligned": ("std64k", lambda d: _put(d, 48, ">Q", layout(d).reftable + 8)),
    "refcount_table_clusters_huge": ("std64k", lambda d: _put(d, 56, ">I", 0x1000000)),
    "l2_beyond_eof": ("std64k", lambda d: _put(d, layout(d).l1, ">Q", 1 << 63 | 0x10000000)),
    "l2_unaligned": ("std64k", lambda d: _put(d, layout(d).l1, ">Q", 1 << 63 | layout(d).l2 + 0x200)),
    "data_beyond_eof": ("std64k", lambda d: _l2_entry(d, 0, 1 << 63 | 0x10000000)),
    "data_beyond_eof_ext": ("ext64k", lambda d: _l2_entry(d, 0, 1 << 63 | 0x10000000)),
    "unaligned_host_offset": ("std64k", lambda d: _l2_entry(d, 0, 1 << 63 | 0x50200)),
    "unaligned_host_offset_ext": ("ext64k", lambda d: _l2_entry(d, 0, 1 << 63 | 0x50200)),
    "subcluster_both_bits": ("ext64k", lambda d: _l2_entry(d, 0, 1 << 63 | 0x50000,
                                                           0x1_FFFFFFFF)),
    "subcluster_alloc_without_host": ("ext64k", lambda d: _l2_entry(d, 0, 0, 0x1)),
    "compressed_with_bitmap": ("ext64k", lambda d: _l2_entry(
        d, 2, struct.unpack_from(">Q", d, layout(d).l2 + 32)[0], 0xFF)),
    "l2_reserved_bits": ("std64k", lambda d: _l2_entry(d, 0, 1 << 63 | 1 << 56 | 0x50000)),
    "refcount_block_zeroed": ("std64k", lambda d: d.__setitem__(
        slice(layout(d).refblock, layout(d).refblock + 64), bytes(64))),
    "refcount_table_entry_beyond_eof": ("std64k", lambda d: _put(d, layout(d).reftable, ">Q",
                                                                 0x10000000)),
    "extension_length_huge": ("std64k", lambda d: _put(d, layout(d).ext_start + 4, ">I",
                                                       0xFFFF0000)),
    "extension_length_past_cluster": ("std64k", lambda d: _put(d, layout(d).ext_start + 4, ">I",
                                                                0x10000)),
    "backing_name_beyond_eof": ("std64k", lambda d: (_put(d, 8, ">Q", 0x10000000),
                                                     _put(d, 16, ">I", 16))),
    "backing_name_too_long": ("std64k", lambda d: (_put(d, 8, ">Q", 0x1000),
                                                   _put(d, 16, ">I", 2000))),
    "snapshot_table_beyond_eof": ("std64k", lambda d: (_put(d, 60, ">I", 1),
                                                       _put(d, 64, ">Q", 0x10000000))),
    # D11: host writes fail with EFBIG (past the host's maximum file size)
    "l1_past_max_file_size": ("std64k", lambda d: _put(d, 40, ">Q", 0x2000000030000)),
    "refblock_past_max_file_size": ("std4k", lambda d: _put(d, layout(d).reftable, ">Q",
                                                            0x40000000002000)),
    "l2_past_max_file_size": ("std64k", lambda d: _put(d, layout(d).l1, ">Q",
                                                       0x8080000001040000)),
    # D15: COPIED flag with offset 0: QEMU aborts on an assertion
    "l1_copied_offset_zero": ("std64k", lambda d: _put(d, layout(d).l1, ">Q", 1 << 63)),
    # D14: L2 table without COPIED past EOF: freeing it fails with EAGAIN
    "l1_not_copied_past_eof": ("std4k", lambda d: _put(d, layout(d).l1, ">Q", 0x80004000)),
    # D13: refcount block far past the end of the file (check -r all extends the file)
    "refblock_far_outside_image": ("std4k", lambda d: _put(d, layout(d).reftable + 8, ">Q",
                                                           0x4000000000)),
    # snapshot table entries and the snapshots' L1 tables
    "snapshot_id_size_huge": ("snap64k", lambda d: _put(d, _snap(d, 0) + 12, ">H", 0xFFFF)),
    "snapshot_name_size_zero": ("snap64k", lambda d: _put(d, _snap(d, 1) + 14, ">H", 0)),
    "snapshot_extra_data_huge": ("snapext", lambda d: _put(d, _snap(d, 0) + 36, ">I", 0x10000)),
    "snapshot_extra_data_short": ("snapext", lambda d: _put(d, _snap(d, 1) + 36, ">I", 4)),
    "snapshot_l1_beyond_eof": ("snap64k", lambda d: _put(d, _snap(d, 0), ">Q", 0x10000000)),
    "snapshot_l1_unaligned": ("snapext", lambda d: _put(d, _snap(d, 1), ">Q",
                                                        layout(d).snapshots[1][1] + 8)),
    "snapshot_l1_size_huge": ("snap64k", lambda d: _put(d, _snap(d, 1) + 8, ">I", 0x7FFFFFFF)),
    "snapshot_l1_entry_beyond_eof": ("snap64k", lambda d: _put(d, layout(d).snapshots[0][1],
                                                               ">Q", 0x10000000)),
    "snapshot_disk_size_huge": ("snap64k", lambda d: _put(d, _snap(d, 0) + 48, ">Q", 1 << 62)),
    # D26: the repaired table is written where the misread old one still "is"
    "snapshot_count_high": ("snapext", lambda d: _put(d, 60, ">I", 0x4002)),
    # D27: an id that is not UTF-8 is written back byte for byte
    "snapshot_id_not_utf8": ("snap64k", lambda d: (_put(d, _snap(d, 0) + 0x42, ">B", 0xED),
                                                    _put(d, _snap(d, 0) + 12, ">H", 0xFFFF))),
    # header extension lengths: backing format, external data file, feature name table
    "backing_format_length_huge": ("backing", lambda d: _put(d, _ext(d, 0xE2792ACA) + 4, ">I",
                                                             0x1000)),
    "data_file_name_length_zero": ("datafile", lambda d: _put(d, _ext(d, 0x44415441) + 4, ">I",
                                                              0)),
    "feature_table_length_odd": ("std64k", lambda d: _put(d, _ext(d, 0x6803F857) + 4, ">I", 47)),
    # D29: check mode leaves the snapshot table unread, so the header rewrite that clears an
    # unknown autoclear bit drops it; with the bitmaps bit the repair then hits the overlap check
    "snapshots_unknown_autoclear_bit": ("snapext", lambda d: _put(d, 88, ">Q", 1 << 20)),
    "snapshots_bitmaps_autoclear_bit": ("snapext", lambda d: _put(d, 88, ">Q", 1 << 20 | 1)),
    # D30: freeing a cluster at 2^55: QEMU's refcount table index wraps to 0 (unsigned int)
    "l2_entry_at_2_55": ("backing", lambda d: _l2_entry(d, 8, 1 << 55 | 2)),
    # virtual size 2^64-1: size_to_l1 wraps to 0 L1 entries (fuzz seed 3873)
    "size_wraps_2_64": ("snap64k", lambda d: _put(d, 24, ">Q", (1 << 64) - 1)),
    "size_2_63": ("std64k", lambda d: _put(d, 24, ">Q", 1 << 63)),
    # the data file name runs into the next extension: QEMU's C string ends at its NUL
    "data_file_name_past_nul": ("datafile", lambda d: _put(d, _ext(d, 0x44415441) + 4, ">I",
                                                           0x80C)),
}

HEADER_FIELDS = [(4, ">I"), (8, ">Q"), (16, ">I"), (20, ">I"), (24, ">Q"), (32, ">I"), (36, ">I"),
                 (40, ">Q"), (48, ">Q"), (56, ">I"), (60, ">I"), (64, ">Q"), (72, ">Q"),
                 (80, ">Q"), (88, ">Q"), (96, ">I"), (100, ">I"), (104, ">B")]


def _random_value(rng: random.Random, old: int, bits: int) -> int:
    kind = rng.randrange(5)
    if kind == 0:
        return old ^ (1 << rng.randrange(bits))
    if kind == 1:
        return rng.getrandbits(bits)
    if kind == 2:
        return (old + rng.choice([-1, 1, 0x200, -0x200, 0x10000, 8])) % (1 << bits)
    if kind == 3:
        return rng.choice([0, (1 << bits) - 1, 1 << (bits - 1)])
    return old ^ (1 << rng.randrange(bits)) ^ (1 << rng.randrange(bits))


#: fields of a snapshot table entry: l1_table_offset, l1_size, id_str_size,
#: name_size, date_sec, vm_clock_nsec, vm_state_size, extra_data_size
SNAPSHOT_FIELDS = [(0, ">Q"), (8, ">I"), (12, ">H"), (14, ">H"), (16, ">I"), (24, ">Q"),
                   (32, ">I"), (36, ">I")]


def _snapshot_field(rng: random.Random, snapshot: tuple[int, int, int, int, int]
                    ) -> tuple[int, str]:
    """A field of a (pristine) snapshot table entry: fixed part, extra data
    (vm_state_size_large, disk_size, icount) or a byte of its id or name."""
    entry, _, _, extra, names = snapshot
    kind = rng.randrange(4)
    if kind == 1 and extra >= 8:
        return entry + 40 + 8 * rng.randrange(extra // 8), ">Q"
    if kind == 2 and names:
        return entry + 40 + extra + rng.randrange(names), ">B"
    off, fmt = rng.choice(SNAPSHOT_FIELDS)
    return entry + off, fmt


def random_mutation(rng: random.Random, data: bytearray, lay: Layout) -> str:
    """Mutate ``data`` (whose pristine layout is ``lay``) in place; describe the change."""
    where = rng.choice(["header", "header", "l1", "l2", "l2", "refblock", "reftable", "ext", "ext"]
                       + ["snapshot"] * 3 * bool(lay.snapshots)
                       + ["snapshot_l1"] * bool(lay.snapshots))
    if where == "header":
        off, fmt = rng.choice(HEADER_FIELDS)
    elif where == "l1":
        off, fmt = lay.l1 + 8 * rng.randrange(lay.l1_size), ">Q"
    elif where == "l2":
        off, fmt = lay.l2 + 8 * rng.randrange(2 * lay.l2_entry_size), ">Q"
    elif where == "refblock":
        off, fmt = lay.refblock + rng.randrange(16), ">B"
    elif where == "reftable":
        off, fmt = lay.reftable + 8 * rng.randrange(2), ">Q"
    elif where == "ext":
        off, fmt = rng.choice(lay.exts) + rng.choice([0, 4, 4]), ">I"
    elif where == "snapshot":
        off, fmt = _snapshot_field(rng, rng.choice(lay.snapshots))
    else:
        _, l1, l1_size, _, _ = rng.choice(lay.snapshots)
        off, fmt = l1 + 8 * rng.randrange(max(1, l1_size)), ">Q"
    old = struct.unpack_from(fmt, data, off)[0]
    new = _random_value(rng, old, struct.calcsize(fmt) * 8)
    struct.pack_into(fmt, data, off, new)
    return f"{where} @{off:#x} ({fmt[1]}): {old:#x} -> {new:#x}"


@dataclass
class ProbeResult:
    result: Result
    after: tuple[int, str]


def digest(path: Path) -> tuple[int, str]:
    """(size, hash of the data extents) of a possibly huge sparse file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for start, stop in data_extents(path):
            f.seek(start)
            h.update(start.to_bytes(8, "little"))
            while start < stop:
                chunk = f.read(min(1 << 20, stop - start))
                if not chunk:
                    break
                h.update(chunk)
                start += len(chunk)
    return path.stat().st_size, h.hexdigest()


def probe(runner: Runner, data: bytes, tool: str, argv: list[str], workdir: Path,
          others: dict[str, bytes] | None = None) -> ProbeResult:
    """Run one command on a fresh copy of ``data`` (and of the companion files
    ``others``); return its result and the image file after."""
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    (workdir / IMG).write_bytes(data)
    for name, content in (others or {}).items():
        (workdir / name).write_bytes(content)
    r = runner.run(tool, argv, workdir)
    d = (str(workdir.resolve()),)
    r = Result(r.rc, filter_output(r.out, d), filter_output(r.err, d))
    return ProbeResult(r, digest(workdir / IMG))


def _first_line(text: str) -> str:
    return text.splitlines()[0] if text else ""


def compare_corrupt(data: bytes, ref: Runner, sut: Runner, workdir: Path,
                    probes: list[tuple[str, list[str]]] = PROBES,
                    others: dict[str, bytes] | None = None) -> tuple[list[str], list[str]]:
    """(hard, soft) differences over the probe commands for one corrupt image
    (with the companion files ``others`` next to it).

    Hard: exit code, first stderr line, a traceback, the file after the command.
    Soft: any other difference in stdout/stderr.
    """
    hard: list[str] = []
    soft: list[str] = []
    before: tuple[int, str] | None = None
    for tool, argv in probes:
        a = probe(ref, data, tool, argv, workdir / "qemu", others)
        b = probe(sut, data, tool, argv, workdir / "ours", others)
        cmd = " ".join(["qemu-img" if tool == "img" else "qemu-io", *argv])
        if "PYTHON" in b.result.err:
            hard.append(f"`{cmd}`: traceback\n{b.result.err}")
        if a.result.rc != b.result.rc:
            hard.append(f"`{cmd}`: exit {a.result.rc} vs {b.result.rc}")
        if _first_line(a.result.err) != _first_line(b.result.err):
            hard.append(f"`{cmd}`: first error line\n    qemu: {_first_line(a.result.err)}\n"
                        f"    ours: {_first_line(b.result.err)}")
        if a.after != b.after:
            if before is None:
                (workdir / "orig").write_bytes(data)
                before = digest(workdir / "orig")
            hard.append(f"`{cmd}`: image file after the command differs "
                        f"({'QEMU wrote' if a.after != before else 'QEMU did not write'}; "
                        f"sizes {a.after[0]:#x} vs {b.after[0]:#x})")
        if (a.result.out, a.result.err) != (b.result.out, b.result.err):
            soft.append(f"`{cmd}`: output differs\n--- qemu\n{a.result.out}{a.result.err}"
                        f"--- ours\n{b.result.out}{b.result.err}")
    return hard, soft
