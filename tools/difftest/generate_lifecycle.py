"""Random lifecycle sequences: qemu-img snapshot, resize, amend, measure, convert,
commit, rebase, dd, bench, check, info, map and compare mixed with qemu-io work
(and qemu-io crashes with lazy refcounts), on images with or without extended L2
entries, backing chains or an external data file.

Steps that QEMU itself runs non-deterministically are avoided: commits go into
a raw base, or into the top image from a fresh overlay holding a single write
(one allocating mirror operation); compressed writes stay single-cluster
(generate.py); convert never gets -W.
"""
from __future__ import annotations

from .choices import Chooser
from .generate import (KiB, MiB, Geometry, _num, backing_chain, create_image,
                       create_options, img_probe, length, offset, populate)
from .sequence import Sequence, Step, img_step, io_step

TOP = "img.qcow2"
RAW_LIMIT = 32 * MiB  # bigger raw outputs would make comparing the files slow


class State:
    """What the generator tracks between steps: the top image and its snapshots."""

    def __init__(self, geo: Geometry, backing: Geometry | None, data_file: bool) -> None:
        self.geo, self.backing, self.data_file = geo, backing, data_file
        self.snapshots: dict[str, tuple[int, bytearray | None]] = {}
        self.counter = 0
        #: a write may free a cluster (snapshots taken, compressed clusters written)
        self.frees_on_write = False

    def note(self, steps: list[Step]) -> None:
        """Track what the steps leave behind that later steps depend on."""
        for step in steps:
            if step.argv[:2] == ("snapshot", "-c") or any(
                    a.startswith("write -c") for a in step.argv):
                self.frees_on_write = True


def _top_image(ch: Chooser, backing: Geometry | None) -> tuple[list[Step], Geometry, bool]:
    """The qcow2 top image, sometimes with an external data file."""
    steps, geo = create_image(ch, TOP, "qcow2", backing)
    if backing is None and ch.chance(0.12):
        argv = list(steps[0].argv)
        opt = "data_file=img.data" + (",data_file_raw=on" if ch.chance(0.5) else "")
        argv[argv.index("-o") + 1] += "," + opt
        return [Step("img", tuple(argv))], geo, True
    return steps, geo, False


def _snap_name(ch: Chooser, st: State) -> str:
    if st.snapshots and ch.chance(0.8):
        return ch.choice(sorted(st.snapshots))
    return ch.choice(["s1", "s2", "snap", "1", "none"])


def _snapshot(ch: Chooser, st: State) -> list[Step]:
    kind = ch.choice(["-c", "-c", "-c", "-l", "-a", "-a", "-d"])
    if kind == "-l":
        return [img_step("snapshot", "-l", TOP)]
    if kind == "-c":
        st.counter += 1
        name = f"s{st.counter}" if ch.chance(0.9) else _snap_name(ch, st)
        if not st.data_file and name not in st.snapshots:
            shadow = st.geo.shadow
            st.snapshots[name] = (st.geo.size, None if shadow is None else bytearray(shadow))
        return [img_step("snapshot", "-c", name, TOP)]
    name = _snap_name(ch, st)
    if kind == "-a" and name in st.snapshots:
        size, shadow = st.snapshots[name]
        st.geo.size, st.geo.shadow = size, None if shadow is None else bytearray(shadow)
    elif kind == "-d":
        st.snapshots.pop(name, None)
    return [img_step("snapshot", kind, name, TOP)]


def _resize(ch: Chooser, st: State) -> list[Step]:
    geo = st.geo
    grow = ch.chance(0.65)
    prealloc = ch.choice(["off", "metadata", "falloc", "full"]) if grow and ch.chance(0.3) else None
    step = ch.choice([geo.cluster, geo.sub, 512, ch.integer(1, 8) * 512, geo.l2_span])
    step = min(step, 4 * MiB if prealloc in ("falloc", "full") else 64 * MiB)
    shrink = not grow and ch.chance(0.9)
    argv = ["resize"] + (["--shrink"] if shrink else [])
    argv += [f"--preallocation={prealloc}"] if prealloc else []
    new = geo.size + step if grow else max(0, geo.size - step)
    if grow or shrink:
        geo.resize(new)
    if ch.chance(0.5):
        return [img_step(*argv, TOP, ("+" if grow else "-") + _num(ch, step))]
    return [img_step(*argv, TOP, _num(ch, new))]


def _amend(ch: Chooser, st: State) -> list[Step]:
    opt = ch.choice(["compat=0.10", "compat=1.1", "compat=v3", "lazy_refcounts=on",
                     "lazy_refcounts=off", "refcount_bits=" + str(ch.choice([1, 2, 4, 8, 32, 64])),
                     "refcount_bits=16", "extended_l2=on", "cluster_size=4096",
                     "compat=0.10,refcount_bits=16", "compat=1.1,lazy_refcounts=on"])
    if ("refcount_bits" in opt or "0.10" in opt) and st.geo.cluster > 64 * KiB:
        # QEMU takes minutes to rewrite refcounts or downgrade images of big clusters
        opt = "lazy_refcounts=on"
    if st.backing is not None and ch.chance(0.15):
        opt = f"backing_file={st.backing.name},backing_fmt={st.backing.fmt}"
    argv = ["amend", "-o", opt]
    if ch.chance(0.5):
        argv += ["-f", "qcow2"]
    return [img_step(*argv, TOP)]


def _measure(ch: Chooser, st: State) -> list[Step]:
    opts, _, _ = create_options(ch)
    out = ["--output=json"] if ch.chance(0.3) else []
    if ch.chance(0.2):
        return [img_step("measure", *out, "--size", _num(ch, st.geo.size), "-O", "qcow2",
                         "-o", ",".join(opts))]
    target = ch.choice([["-O", "qcow2"], ["-O", "qcow2", "-o", ",".join(opts)], ["-O", "raw"]])
    return [img_step("measure", *out, *target, TOP)]


def _convert(ch: Chooser, st: State) -> list[Step]:
    raw = st.geo.size <= RAW_LIMIT and ch.chance(0.25)
    out = "conv.raw" if raw else "conv.qcow2"
    steps: list[Step] = []
    argv = ["convert"] + (["-f", "qcow2"] if ch.chance(0.5) else [])
    argv += ["-O", "raw" if raw else "qcow2"]
    if ch.chance(0.3):
        argv += ["-S", ch.choice(["0", "512", "4k", "64k"])]
    if not raw and ch.chance(0.15):
        steps.append(img_step("create", "-f", "qcow2", out, str(st.geo.size)))
        argv.insert(1, "-n")
    elif not raw:
        opts, _, _ = create_options(ch)
        if ch.chance(0.25):
            argv.append("-c")
            opts = [o for o in opts if not o.startswith("preallocation")]
        if ch.chance(0.6):
            argv += ["-o", ",".join(opts)]
        if st.backing is not None and ch.chance(0.3):
            argv += ["-B", st.backing.name, "-F", st.backing.fmt]
    if st.snapshots and ch.chance(0.2):
        argv += ["-l", _snap_name(ch, st)]
    steps.append(img_step(*argv, TOP, out))
    if ch.chance(0.4):
        steps.append(img_step("compare", *(["-s"] if ch.chance(0.3) else []), TOP, out))
    return steps


def _commit(ch: Chooser, st: State) -> list[Step]:
    """A commit QEMU runs deterministically: into a raw base, or from a fresh
    overlay with one write into the top image."""
    if st.backing is not None and st.backing.fmt == "raw" and ch.chance(0.5):
        flags = ch.choice([[], ["-d"], ["-q"], ["-b", st.backing.name]])
        return [img_step("commit", *flags, TOP)]
    geo = st.geo
    # inside one 64 KiB cluster of the overlay, wholly within the image: the
    # mirror job copies it in a single operation (its granularity divides 64 KiB)
    off = offset(ch, geo) // (64 * KiB) * (64 * KiB)
    if off + 64 * KiB > geo.size:
        return _look(ch, st)
    steps = [img_step("create", "-f", "qcow2", "-b", TOP, "-F", "qcow2", "ov.qcow2")]
    n = ch.choice([4 * KiB, 32 * KiB, 64 * KiB])
    pat = ch.integer(1, 255)
    geo.fill(off, n, pat)
    cmd = f"write -P {pat:#x} {off} {n}" if ch.chance(0.85) else f"write -z {off} {n}"
    steps.append(io_step("ov.qcow2", [cmd], "qcow2"))
    steps.append(img_step("commit", *ch.choice([[], ["-d"], ["-q"], ["-b", TOP]]), "ov.qcow2"))
    return steps


def _rebase(ch: Chooser, st: State) -> list[Step]:
    steps = []
    kind = ch.choice(["new", "new", "none", "same"])
    unsafe = ["-u"] if ch.chance(0.3) else []
    if kind == "none":
        st.backing = None
        return [img_step("rebase", *unsafe, "-b", "", TOP)]
    if kind == "same" and st.backing is not None:
        return [img_step("rebase", *unsafe, "-b", st.backing.name, "-F", st.backing.fmt, TOP)]
    size = st.geo.size if ch.chance(0.7) else max(512, st.geo.size // 2 // 512 * 512)
    cluster = ch.choice([4096, 65536])
    steps.append(img_step("create", "-f", "qcow2", "-o", f"cluster_size={cluster}",
                          "new.qcow2", str(size)))
    # later commits must not go into this qcow2 backing file (several allocating
    # operations: QEMU's own result varies, seed 627)
    st.backing = Geometry("new.qcow2", "qcow2", size, cluster, cluster, cluster * cluster // 8)
    off = offset(ch, st.geo) if st.geo.size else 0
    steps.append(io_step("new.qcow2", [f"write -P {ch.integer(1, 255):#x} {off} "
                                       f"{max(0, min(length(ch, st.geo, off), size - off))}"],
                         "qcow2"))
    steps.append(img_step("rebase", *unsafe, "-b", "new.qcow2", "-F", "qcow2", TOP))
    return steps


def _dd(ch: Chooser, st: State) -> list[Step]:
    bs = ch.choice([512, 4096, 65536, 3000, 1 * MiB])
    argv = ["dd", f"bs={bs}"]
    if ch.chance(0.5):
        argv.append(f"count={ch.integer(0, 40)}")
    if ch.chance(0.4):
        argv.append(f"skip={ch.integer(0, max(0, st.geo.size // bs))}")
    if st.geo.size > RAW_LIMIT or ch.chance(0.5):
        return [img_step(*argv, "-O", "qcow2", f"if={TOP}", "of=dd.qcow2")]
    return [img_step(*argv, f"if={TOP}", "of=dd.raw")]


def _bench(ch: Chooser, st: State) -> list[Step]:
    geo = st.geo
    size = ch.choice([512, 4096, geo.cluster, geo.sub, 3000])
    count = ch.integer(1, 40)
    off = offset(ch, geo) // 512 * 512
    write = ch.chance(0.6)
    depth = ch.choice([1, 1, 2, 3, 4]) if write else 1
    cs = geo.cluster
    if depth > 1 and (geo.size % cs or depth * 2 * cs > geo.size or cs < 4096
                      or st.frees_on_write):
        depth = 1
    if depth > 1:
        # requests in flight together interleave at every host I/O as QEMU's
        # coroutines do (D22); sharing a cluster they race in QEMU's thread
        # pool (different images from run to run), so each gets whole clusters;
        # small clusters (L2 tables allocated mid-run, seeds 165 and 332 of
        # 14:30) race too, and so do overwrites that free a shared or compressed
        # cluster while the other request allocates (seed 6189 of 15:50)
        size = cs * ch.choice([1, 2])
        off = off // cs * cs
    argv = ["bench", "-c", str(count), "-s", str(size), "-o", str(off)]
    if write:
        pat = ch.integer(0, 255)
        argv += ["-w", "--pattern", str(pat)]
        if geo.size:
            for i in range(count):
                geo.fill((off + i * size) % geo.size, size, pat)
        argv += ["-d", str(depth)]
    elif ch.chance(0.3):
        argv += ["-d", str(ch.choice([1, 2, 8]))]
    return [img_step(*argv, "-f", "qcow2", TOP)]


def _crash(ch: Chooser, st: State) -> list[Step]:
    """qemu-io dies (abort) after a write, mostly with lazy refcounts on; then a check."""
    geo = st.geo
    steps = [img_step("amend", "-o", "lazy_refcounts=on", TOP)] if ch.chance(0.6) else []
    off = offset(ch, geo)
    cmd = f"write -P {ch.integer(1, 255):#x} {off} {length(ch, geo, off)}"
    steps.append(io_step(TOP, [cmd, "abort"], "qcow2"))
    steps.append(img_step("check", *ch.choice([[], ["-r", "leaks"], ["-r", "all"]]), TOP))
    return steps


def _look(ch: Chooser, st: State) -> list[Step]:
    if st.backing is not None and ch.chance(0.2):
        return [img_step("compare", *ch.choice([[], ["-s"], ["-F", st.backing.fmt]]), TOP,
                         st.backing.name)]
    if ch.chance(0.3):
        return [img_step(*ch.choice([["info", "--backing-chain"], ["map", "--output=json"],
                                     ["info", "--output=json"], ["check", "-r", "all"]]), TOP)]
    return [img_probe(ch, st.geo)]


ACTIONS = {"io": lambda ch, st: [populate(ch, st.geo, 5)], "snapshot": _snapshot,
           "resize": _resize, "amend": _amend, "measure": _measure, "convert": _convert,
           "commit": _commit, "rebase": _rebase, "dd": _dd, "bench": _bench, "crash": _crash,
           "look": _look}
WEIGHTS = {"io": 6, "snapshot": 5, "resize": 2, "amend": 2, "measure": 1, "convert": 2,
           "commit": 2, "rebase": 1, "dd": 1, "bench": 1, "crash": 1, "look": 2}
_POOL = [k for k, w in WEIGHTS.items() for _ in range(w)]


def lifecycle_sequence(ch: Chooser, label: str = "") -> Sequence:
    """Backing chain, qcow2 top image, then 4-10 lifecycle or qemu-io steps on it."""
    steps, backing = backing_chain(ch)
    s, geo, data_file = _top_image(ch, backing)
    steps += s
    st = State(geo, backing, data_file)
    steps.append(populate(ch, geo, 4))
    st.note(steps)
    for _ in range(ch.integer(4, 10)):
        action = ACTIONS[ch.choice(_POOL)](ch, st)
        st.note(action)
        steps += action
    return Sequence(steps, TOP, "qcow2", label)
