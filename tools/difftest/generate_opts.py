"""Random sequences that open images through block-layer option forms.

Each sequence creates a small qcow2 image (sometimes over a qcow2 backing
file, sometimes with a raw file beside it), then runs qemu-io and qemu-img
commands that name the image in one of QEMU's forms: a plain file name with
-f, ``--image-opts`` key=value text, a ``json:{...}`` name (nested objects
or dotted keys, typed values) or qemu-io's ``open -o``. The options mix
generic ones (discard, detect-zeroes, read-only, force-share), qcow2 runtime
options (cache sizes, lazy refcounts, discard pass-through, overlap checks),
file options, backing.* options, raw offset/size windows and blkdebug in
option form, with valid and invalid values; qemu-io runs sometimes reopen
with -o. The final probes of compare.py (map, check) judge the bytes.

Reopens change the read-only state of the root and of its file and backing
children; the messages naming automatically numbered nodes and a ``-s``
overlay's random temporary file are compared through the filters' masks
(the node counter is compared, QEMU's random digits are not). Forms QEMU
itself handles non-deterministically are avoided: multi-cluster writes
through the compress filter (parallel compressed writes) and cache.direct=on. Errors are not
armed at pwritev_rmw_head/tail (QEMU writes its uninitialised padding buffer after
a failed read-modify-write read), though other rules may still fail such a read.
"""
from __future__ import annotations

import json

from .choices import Chooser
from .sequence import Sequence, Step

TOP, BASE, RAW = "img.qcow2", "base.qcow2", "r.raw"
KiB = 1024

#: qcow2 runtime options: valid values first, then invalid ones
QCOW2_VALUES = {
    "l2-cache-size": ["64k", "1M", "0", "512", "4k", "abc", "-1"],
    "l2-cache-entry-size": ["512", "4096", "1k", "65536", "1000", "256", "128k"],
    "refcount-cache-size": ["64k", "0", "1M", "x"],
    "cache-size": ["0", "64k", "1M", "4M", "16k"],
    "cache-clean-interval": ["0", "10", "600", "4294967296", "-1", "ten"],
    "lazy-refcounts": ["on", "off", "maybe"],
    "pass-discard-request": ["on", "off", "yes", "bad"],
    "pass-discard-snapshot": ["on", "off"],
    "pass-discard-other": ["on", "off", "1"],
    "overlap-check": ["none", "constant", "cached", "all", "some"],
    "overlap-check.template": ["none", "all", "cached", "xyz"],
    "overlap-check.main-header": ["on", "off", "maybe"],
    "overlap-check.active-l1": ["on", "off"],
    "overlap-check.active-l2": ["on", "off"],
    "overlap-check.refcount-block": ["on", "off"],
    "overlap-check.inactive-l2": ["on", "off"],
    "overlap-check.bogus": ["on"],
}
GENERIC_VALUES = {
    "discard": ["unmap", "ignore", "on", "off", "bad"],
    "detect-zeroes": ["off", "on", "unmap", "bad"],
    "read-only": ["on", "off", "maybe"],
    "cache.no-flush": ["on", "off"],
    "auto-read-only": ["off", "on", "x"],
    "node-name": ["n1", "f0", "1bad"],
    "bogus": ["1"],
}
FILE_VALUES = {
    "locking": ["on", "off", "auto", "maybe"],
    "aio": ["threads", "native", "bad"],
    "node-name": ["f0"],
    "bogus": ["x"],
}


def _typed(ch: Chooser, value: str) -> object:
    """A JSON value for option text: sometimes a JSON bool or number."""
    if value in ("on", "off") and ch.chance(0.5):
        return value == "on"
    if value.isdigit() and ch.chance(0.5):
        return int(value)
    return value


def _pick(ch: Chooser, table: dict, n: int) -> dict:
    out = {}
    for _ in range(n):
        key = ch.choice(sorted(table))
        values = table[key]
        # mostly valid values: the first ones of each list
        out[key] = values[0] if ch.chance(0.3) else ch.choice(values)
    return out


def _options(ch: Chooser, target: str, backing: bool) -> dict:
    """A flat options dict (text values) for opening ``target``."""
    opts: dict = {}
    if target == RAW:
        opts["driver"] = "raw"
        opts["file.filename"] = RAW
        if ch.chance(0.7):
            opts["offset"] = ch.choice(["0", "4096", "4k", "512", "64k", "2M", "abc", "100"])
        if ch.chance(0.6):
            opts["size"] = ch.choice(["65536", "64k", "512", "1000", "1M", "2M"])
        return opts
    if ch.chance(0.15):  # blkdebug between the format and its file, in option form
        opts["driver"] = "qcow2"
        opts["file.driver"] = "blkdebug"
        opts["file.image.filename"] = target
        opts.update({"file." + k: v for k, v in _blkdebug(ch).items()})
        return opts
    if ch.chance(0.06):  # raw over the qcow2 image's guest data
        return {"driver": "raw", "file.driver": "qcow2", "file.file.filename": target}
    opts["driver"] = ch.choice(["qcow2"] * 8 + ["raw", "qcow3"])
    if ch.chance(0.8):
        opts["file.driver"] = "file"
    opts["file.filename"] = target if ch.chance(0.95) else "missing.qcow2"
    if opts["driver"] == "qcow2":
        opts.update(_pick(ch, QCOW2_VALUES, ch.choice([0, 1, 1, 2, 3])))
    if ch.chance(0.3):
        opts.update(_pick(ch, GENERIC_VALUES, 1))
    if ch.chance(0.15):
        opts.update({"file." + k: v for k, v in _pick(ch, FILE_VALUES, 1).items()})
    if backing and ch.chance(0.35):
        kind = ch.choice(["null", "driver", "runtime", "file", "bad", "empty"])
        if kind == "null":
            opts["backing"] = None
        elif kind == "empty":
            opts["backing"] = ""
        elif kind == "driver":
            opts["backing.driver"] = ch.choice(["qcow2", "raw"])
        elif kind == "runtime":
            opts.update({"backing." + k: v for k, v in _pick(ch, QCOW2_VALUES, 1).items()})
        elif kind == "file":
            opts["backing.file.filename"] = ch.choice([BASE, "missing.qcow2"])
        else:
            opts["backing.bogus"] = "1"
    return opts


def _blkdebug(ch: Chooser) -> dict:
    """blkdebug options: request limits and error injection / state rules."""
    opts: dict = {}
    if ch.chance(0.4):
        opts["align"] = ch.choice(["512", "4096", "4k", "3", "0"])
    if ch.chance(0.2):
        opts[ch.choice(["max-transfer", "opt-write-zero", "max-write-zero", "opt-discard",
                        "max-discard"])] = ch.choice(["4k", "8k", "65536", "1000"])
    for i in range(ch.choice([0, 0, 1, 2])):
        rule = f"inject-error.{i}." if ch.chance(0.8) else "inject-error."
        opts[rule + "event"] = ch.choice(["read_aio", "write_aio", "l2_load", "refblock_alloc",
                                          "cluster_alloc", "none", "bogus", "flush_to_disk",
                                          "reftable_load", "pwritev_rmw_after_head",
                                          "pwritev_rmw_after_tail"])
        if ch.chance(0.5):
            opts[rule + "errno"] = ch.choice(["5", "28", "1"])
        if ch.chance(0.5):
            opts[rule + "once"] = ch.choice(["on", "off"])
        if ch.chance(0.2):
            opts[rule + "iotype"] = ch.choice(["read", "write", "flush", "bad"])
        if ch.chance(0.2):
            opts[rule + "state"] = "2"
        if rule == "inject-error.":
            break
    if ch.chance(0.15):
        opts["set-state.0.event"] = ch.choice(["write_aio", "l2_load"])
        opts["set-state.0.new_state"] = "2"
    return opts


def _nest(flat: dict, ch: Chooser) -> dict:
    """The options as a JSON object: dotted keys sometimes as nested objects."""
    out: dict = {}
    for key, value in flat.items():
        value = _typed(ch, value) if isinstance(value, str) else value
        parts = key.split(".")
        if len(parts) > 1 and parts[0] in ("file", "backing") and ch.chance(0.7):
            node = out
            for p in parts[:-1]:
                node = node.setdefault(p, {})
                if not isinstance(node, dict):
                    break
            else:
                node[parts[-1]] = value
                continue
        out[key] = value
    return out


def _image_opts_text(flat: dict) -> str | None:
    """--image-opts text, or None when a value cannot be written there (null)."""
    if any(v is None for v in flat.values()):
        return None
    return ",".join(f"{k}={str(v).replace(',', ',,')}" for k, v in flat.items())


def _name_args(ch: Chooser, flat: dict) -> list[str]:
    """The image as command-line arguments: --image-opts TEXT or a json: name."""
    text = _image_opts_text(flat)
    if text is not None and ch.chance(0.5):
        return ["--image-opts", text]
    return ["json:" + json.dumps(_nest(flat, ch), separators=(",", ":"))]


def _io_cmds(ch: Chooser, writable: bool) -> list[str]:
    cmds = []
    for _ in range(ch.integer(1, 4)):
        off = ch.choice([0, 4 * KiB, 60 * KiB, 192 * KiB, 512 * KiB])
        n = ch.choice([512, 4 * KiB, 8 * KiB, 64 * KiB])
        kind = ch.choice(["read", "read", "info", "map", "write", "write", "zero", "discard",
                          "reopen", "length"])
        if kind == "write" or (kind in ("zero", "discard") and not writable):
            cmds.append(f"write -P {ch.integer(1, 255):#x} {off} {n}")
        elif kind == "zero":
            cmds.append(f"write -z {off} {n}")
        elif kind == "discard":
            cmds.append(f"discard {off} {n}")
        elif kind == "read":
            cmds.append(f"read {off} {n}")
        elif kind == "reopen":
            cmds.append(_reopen(ch))
        else:
            cmds.append(kind)
    return cmds


def _reopen(ch: Chooser) -> str:
    kind = ch.choice(["qcow2", "qcow2", "generic", "file", "rw", "backing", "window",
                      "read-only", "read-only"])
    if kind == "rw":
        return ch.choice(["reopen -r", "reopen -w", "reopen -r -w", "reopen"])
    if kind == "read-only":  # the root's and its children's read-only states
        return ch.choice(["reopen -o read-only=on", "reopen -o read-only=off",
                          "reopen -o file.read-only=on", "reopen -o file.read-only=off",
                          "reopen -r -o file.read-only=off", "reopen -w -o file.read-only=on",
                          "reopen -o backing.read-only=off", "reopen -o backing.read-only=on",
                          "reopen -o read-only=on,file.read-only=off"])
    if kind == "window":  # raw's offset/size (other drivers cannot change them)
        return "reopen -o " + ch.choice(["offset=8k", "size=32k", "offset=0,size=64k",
                                         "offset=abc", "size=1000", "offset=2M"])
    table = {"qcow2": QCOW2_VALUES, "generic": GENERIC_VALUES, "file": FILE_VALUES,
             "backing": QCOW2_VALUES}[kind]
    opts = _pick(ch, table, ch.integer(1, 2))
    opts.pop("read-only", None)
    if not opts:
        return "reopen -w"
    prefix = {"file": "file.", "backing": "backing."}.get(kind, "")
    return "reopen -o " + ",".join(f"{prefix}{k}={v}" for k, v in opts.items())


def _setup(ch: Chooser) -> tuple[list[Step], bool, int]:
    """The images: (steps, whether img.qcow2 has a backing file, its cluster size)."""
    cluster = ch.choice([512, 4096, 65536])
    extra = ch.choice(["", "", ",lazy_refcounts=on", ",compat=0.10"])
    backing = ch.chance(0.4)
    steps = []
    if backing:
        steps.append(Step("img", ("create", "-q", "-f", "qcow2", BASE, "1M")))
        steps.append(Step("io", ("-f", "qcow2", "-c", f"write -P 0x5a 0 {cluster * 3}", BASE)))
    argv = ["create", "-q", "-f", "qcow2", "-o", f"cluster_size={cluster}{extra}"]
    if backing:
        argv += ["-b", BASE, "-F", "qcow2"]
    steps.append(Step("img", (*argv, TOP, "1M")))
    steps.append(Step("io", ("-f", "qcow2", "-c", "write -P 0x11 0 8k", TOP)))
    if ch.chance(0.3):
        steps.append(Step("img", ("create", "-q", "-f", "raw", RAW, "1M")))
    return steps, backing, cluster


def _step(ch: Chooser, backing: bool, has_raw: bool) -> Step:
    target = RAW if has_raw and ch.chance(0.25) else TOP
    flat = _options(ch, target, backing)
    tool = ch.choice(["io", "io", "io", "io-open", "img"])
    if tool == "img":
        sub = ch.choice([["info"], ["info", "--output=json"], ["check"], ["map", "--output=json"],
                         ["info", "--backing-chain"]])
        if sub[0] == "check" and flat.get("driver") != "qcow2":
            sub = ["map"]
        return Step("img", (*sub, *_name_args(ch, flat)))
    flags = ch.choice([[], [], [], ["-r"], ["-r", "-U"], ["-U"], ["-s"], ["-d", "ignore"]])
    if target == TOP and flat.get("driver") == "raw" and flat.get("file.driver") != "qcow2":
        flags = ["-r"]  # raw writes would corrupt the qcow2 file (a different subject)
    cmds = _io_cmds(ch, "-r" not in flags)
    if tool == "io-open":
        text = _image_opts_text({k: v for k, v in flat.items() if k != "file.filename"})
        name = flat.get("file.filename", flat.get("file.image.filename", TOP))
        if text is not None and "file.image.filename" not in flat \
                and "file.file.filename" not in flat:
            open_flags = " ".join(f for f in flags if f in ("-r", "-U", "-s"))
            line = f"open {open_flags} -o {text} {name}".replace("  ", " ")
            argv = [arg for c in [line, *cmds] for arg in ("-c", c)]
            return Step("io", tuple(argv))
    argv = list(flags)
    for c in cmds:
        argv += ["-c", c]
    return Step("io", (*argv, *_name_args(ch, flat)))


def _filter_step(ch: Chooser, cluster: int) -> Step:
    """qemu-io (or qemu-img info/map) on a null-co device, or through the compress
    filter onto the image."""
    if ch.chance(0.4):
        node = {"driver": ch.choice(["null-co", "null-aio"])}
        if ch.chance(0.6):
            node["size"] = ch.choice(["1M", 65536, "4096", "x"])
        if ch.chance(0.5):
            node["read-zeroes"] = ch.choice([True, False, "on"])
        choices = ["read -v 0 16", "write -P 0x3c 0 4k", "read -P 0 0 4k", "map", "length",
                   "write -z 0 4k", "discard 0 4k", "info"]
        cmds = [ch.choice(choices) for _ in range(ch.integer(1, 3))]
    else:
        node = {"driver": "compress", "file": {"driver": "qcow2", "file": {"filename": TOP}}}
        cmds = []
        for _ in range(3):
            off = cluster * ch.integer(0, 15)
            cmds.append(ch.choice([f"write -P {ch.integer(1, 255):#x} {off} {cluster}",
                                   f"read {off} {cluster}", "map", "info", "reopen -r",
                                   "reopen -o read-only=on"]))
    name = "json:" + json.dumps(node, separators=(",", ":"))
    if ch.chance(0.25):
        return Step("img", (*ch.choice([["info"], ["info", "--output=json"], ["map"]]), name))
    argv = [a for c in cmds for a in ("-c", c)]
    return Step("io", (*argv, name))


def options_sequence(ch: Chooser, label: str = "") -> Sequence:
    """A whole differential test: images, then 1-4 runs through option forms."""
    steps, backing, cluster = _setup(ch)
    has_raw = any(RAW in s.argv for s in steps)
    for _ in range(ch.integer(1, 4)):
        if ch.chance(0.12):
            steps.append(_filter_step(ch, cluster))
        else:
            steps.append(_step(ch, backing, has_raw))
    return Sequence(steps, TOP, "qcow2", label)
