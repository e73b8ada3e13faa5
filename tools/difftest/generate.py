"""Random command sequences: image creation (options, backing chains) then qemu-io work."""
from __future__ import annotations

from dataclasses import dataclass

from .choices import Chooser
from .sequence import Sequence, Step, img_step, io_step

KiB, MiB = 1024, 1024 * 1024
PLAIN_CLUSTERS = [512, 1024, 2048, 4096, 8192, 16384, 65536, 262144, 2 * MiB]
EXTENDED_CLUSTERS = [16384, 32768, 65536, 131072, 524288, 2 * MiB]
REFCOUNT_BITS = [1, 2, 4, 8, 16, 32, 64]
SHADOW_LIMIT = 16 * MiB


@dataclass
class Geometry:
    """What the generator needs to know about an image to aim its requests."""

    name: str
    fmt: str
    size: int
    cluster: int
    sub: int
    l2_span: int
    shadow: bytearray | None = None

    def resize(self, size: int) -> None:
        if self.shadow is not None:
            if size > SHADOW_LIMIT:
                self.shadow = None
            elif size < len(self.shadow):
                del self.shadow[size:]
            else:
                self.shadow.extend(bytes(size - len(self.shadow)))
        self.size = size

    def fill(self, off: int, length: int, byte: int) -> None:
        if self.shadow is not None and off < len(self.shadow):
            end = min(off + length, len(self.shadow))
            self.shadow[off:end] = bytes([byte]) * (end - off)


def _num(ch: Chooser, n: int) -> str:
    """A byte count as qemu-io/qemu-img accept it, sometimes with a suffix."""
    if n and n % MiB == 0 and ch.chance(0.3):
        return f"{n // MiB}M"
    if n and n % KiB == 0 and ch.chance(0.3):
        return f"{n // KiB}k"
    return str(n)


def create_options(ch: Chooser) -> tuple[list[str], int, bool]:
    """qcow2 creation options; returns (option list, cluster size, extended_l2)."""
    invalid = ch.chance(0.04)
    extended = ch.chance(0.5)
    if extended:
        cluster = ch.choice(EXTENDED_CLUSTERS[:3] * 3 + EXTENDED_CLUSTERS)
    else:
        cluster = ch.choice(PLAIN_CLUSTERS[:6] * 2 + PLAIN_CLUSTERS)
    compat = "1.1" if ch.chance(0.85) else "0.10"
    refcount_bits = 16 if ch.chance(0.4) else ch.choice(REFCOUNT_BITS)
    compression = "zlib" if ch.chance(0.6) else "zstd"
    if not invalid:
        if compat == "0.10":
            extended, refcount_bits, compression = False, 16, "zlib"
            if cluster < 16384 and ch.chance(0.5):
                cluster = 65536
    else:
        cluster = ch.choice([cluster, 4096 if extended else 3000, 4 * MiB])
    opts = [f"cluster_size={cluster}"]
    if extended or ch.chance(0.3):
        opts.append(f"extended_l2={'on' if extended else 'off'}")
    if refcount_bits != 16 or ch.chance(0.2):
        opts.append(f"refcount_bits={refcount_bits}")
    if compat != "1.1" or ch.chance(0.2):
        opts.append(f"compat={compat}")
    if compression != "zlib" or ch.chance(0.2):
        opts.append(f"compression_type={compression}")
    if ch.chance(0.1):
        opts.append("lazy_refcounts=on")
    if ch.chance(0.08):
        opts.append("preallocation=" + ch.choice(["off", "metadata", "falloc", "full"]))
    return opts, cluster, extended


def image_size(ch: Chooser, cluster: int, l2_span: int) -> int:
    """A virtual size: a few clusters, a few MiB, or just past an L2 table's span."""
    size = ch.choice([
        4 * cluster, 1 * MiB, 4 * MiB, 8 * cluster,
        min(l2_span + 2 * cluster, 64 * MiB),
    ])
    if ch.chance(0.1):
        size += ch.choice([512 * ch.integer(1, 7), ch.integer(1, 511)])
    return size


def create_image(ch: Chooser, name: str, fmt: str,
                 backing: Geometry | None) -> tuple[list[Step], Geometry]:
    """Steps creating one image, and its geometry."""
    if fmt == "raw":
        size = image_size(ch, 512, 32 * KiB) if backing is None else backing.size
        geo = Geometry(name, "raw", size, 4096, 4096, 1 * MiB)
        return [img_step("create", "-f", "raw", name, _num(ch, size))], _with_shadow(geo, None)
    opts, cluster, extended = create_options(ch)
    sub = cluster // 32 if extended else cluster
    l2_span = cluster * (cluster // (16 if extended else 8))
    argv = ["create", "-f", "qcow2", "-o", ",".join(opts)]
    size: int | None = image_size(ch, cluster, l2_span)
    if backing is not None:
        argv += ["-b", backing.name]
        if ch.chance(0.97):
            argv += ["-F", backing.fmt]
        if ch.chance(0.3):
            size = None
        elif ch.chance(0.5):
            size = backing.size
    argv.append(name)
    if size is not None:
        argv.append(_num(ch, size))
    else:
        size = backing.size if backing else 0
    geo = Geometry(name, "qcow2", size, cluster, sub, l2_span)
    return [img_step(*argv)], _with_shadow(geo, backing)


def _with_shadow(geo: Geometry, backing: Geometry | None) -> Geometry:
    if geo.size <= SHADOW_LIMIT:
        geo.shadow = bytearray(geo.size)
        if backing is not None and backing.shadow is not None:
            n = min(geo.size, len(backing.shadow))
            geo.shadow[:n] = backing.shadow[:n]
    return geo


def offset(ch: Chooser, geo: Geometry) -> int:
    """A guest offset near an interesting boundary."""
    unit = ch.choice([geo.cluster, geo.sub, geo.sub, 512, geo.l2_span])
    off = ch.integer(0, max(0, geo.size // unit - 1)) * unit if geo.size > unit else 0
    if unit == geo.l2_span and off and ch.chance(0.6):
        off -= ch.choice([geo.sub, geo.cluster, 512])
    if ch.chance(0.25):
        off += ch.choice([ch.integer(1, 511), 512 * ch.integer(1, 7)])
    return max(0, min(off, max(0, geo.size - 1)))


def length(ch: Chooser, geo: Geometry, off: int, cap: int = 1 * MiB) -> int:
    """A request length, usually in units of (sub)clusters, mostly within the image."""
    unit = ch.choice([geo.sub, geo.cluster, 512])
    n = unit * ch.integer(1, 3)
    if ch.chance(0.25):
        n += ch.choice([ch.integer(1, 511), 512 * ch.integer(1, 7)]) * ch.choice([1, -1])
    n = max(1, min(n, cap))
    if ch.chance(0.97):
        n = max(0, min(n, geo.size - off))
    return n


def _write(ch: Chooser, geo: Geometry, off: int) -> str:
    n = length(ch, geo, off)
    pat = ch.integer(1, 255)
    geo.fill(off, n, pat)
    flag = "-f " if ch.chance(0.05) else ""
    return f"write {flag}-P {pat:#x} {_num(ch, off)} {_num(ch, n)}"


def _bulk(ch: Chooser, geo: Geometry, off: int) -> str:
    """Many clusters at once: refcount block/table and L2 growth."""
    n = min(ch.choice([256 * KiB, 1 * MiB]), max(0, geo.size - off))
    pat = ch.integer(1, 255)
    geo.fill(off, n, pat)
    return f"write -P {pat:#x} {off} {n}"


def _writev(ch: Chooser, geo: Geometry, off: int) -> str:
    parts = [length(ch, geo, off, cap=256 * KiB) for _ in range(ch.integer(2, 3))]
    pat = ch.integer(1, 255)
    geo.fill(off, sum(parts), pat)
    return f"writev -P {pat:#x} {off} " + " ".join(str(n) for n in parts)


def _readv(ch: Chooser, geo: Geometry, off: int) -> str:
    parts = [length(ch, geo, off, cap=256 * KiB) for _ in range(ch.integer(2, 3))]
    pat = geo.shadow[off] if geo.shadow is not None and off < len(geo.shadow) else 0
    return f"readv -P {pat:#x} {off} " + " ".join(str(n) for n in parts)


def _plain(ch: Chooser, geo: Geometry, off: int) -> str:
    n = length(ch, geo, off)
    geo.fill(off, n, 0xCD)
    return f"write {_num(ch, off)} {_num(ch, n)}"


def _zero(ch: Chooser, geo: Geometry, off: int) -> str:
    n = length(ch, geo, off)
    geo.fill(off, n, 0)
    flag = ch.choice(["-z -u", "-z", "-z", "-z -u", "-z -f", "-z -n", "-z -u -n"])
    return f"write {flag} {_num(ch, off)} {_num(ch, n)}"


def _compress(ch: Chooser, geo: Geometry, off: int) -> str:
    off -= off % geo.cluster if ch.chance(0.9) else 0
    # one cluster at most: QEMU compresses several clusters in parallel
    # tasks, so their host order is not deterministic
    n = geo.cluster if ch.chance(0.9) else min(length(ch, geo, off), geo.cluster)
    n = min(n, max(0, geo.size - off)) if ch.chance(0.95) else n
    pat = ch.integer(0, 255)
    geo.fill(off, n, pat)
    return f"write -c -P {pat:#x} {_num(ch, off)} {_num(ch, n)}"


def _discard(ch: Chooser, geo: Geometry, off: int) -> str:
    n = length(ch, geo, off, cap=4 * MiB)
    return f"discard {_num(ch, off)} {_num(ch, n)}"


def _read(ch: Chooser, geo: Geometry, off: int) -> str:
    """A pattern read, usually expecting what the shadow copy says is there."""
    n = length(ch, geo, off)
    pat = ch.integer(0, 255)
    if geo.shadow is not None and off < len(geo.shadow) and ch.chance(0.8):
        pat = geo.shadow[off]
        run = 1
        while off + run < min(off + n, len(geo.shadow)) and geo.shadow[off + run] == pat:
            run += 1
        n = run if ch.chance(0.8) else n
    return f"read -P {pat:#x} {_num(ch, off)} {_num(ch, n)}"


def _truncate(ch: Chooser, geo: Geometry, off: int) -> str:
    grow = ch.chance(0.7)
    step = ch.choice([geo.cluster, geo.sub, 512, ch.integer(1, 4095),
                      min(geo.l2_span * ch.integer(1, 4), 256 * MiB)])
    size = geo.size + step if grow else max(0, geo.size - step)
    geo.resize(size)
    mode = ch.choice(["off", "metadata", "falloc", "full"]) if ch.chance(0.2) else None
    return f"truncate -m {mode} {_num(ch, size)}" if mode else f"truncate {_num(ch, size)}"


COMMANDS = {
    "write": _write, "bulk": _bulk, "writev": _writev, "readv": _readv, "plain": _plain,
    "zero": _zero, "compress": _compress, "discard": _discard, "read": _read,
    "truncate": _truncate,
    "dump": lambda ch, geo, off: f"read -v {off} {ch.integer(1, 48)}",
    "map": lambda ch, geo, off: "map",
    "length": lambda ch, geo, off: "length",
    "misc": lambda ch, geo, off: ch.choice(["flush", "info", "aio_flush"]),
    "alloc": lambda ch, geo, off:
        f"alloc {_num(ch, off)} {_num(ch, length(ch, geo, off, cap=64 * MiB))}",
}


def io_command(ch: Chooser, geo: Geometry) -> str:
    """One random qemu-io command aimed at ``geo`` (which tracks its effect)."""
    kind = ch.choice(["write"] * 6 + ["zero"] * 3 + ["compress"] * (2 if geo.fmt == "qcow2" else 0)
                     + ["discard"] * 2 + ["read"] * 4 + ["dump", "map", "alloc", "length",
                                                         "truncate", "plain", "writev", "readv",
                                                         "misc", "bulk"])
    return COMMANDS[kind](ch, geo, offset(ch, geo))


def populate(ch: Chooser, geo: Geometry, max_cmds: int) -> Step:
    """One qemu-io invocation of random commands on ``geo``."""
    cmds = [io_command(ch, geo) for _ in range(ch.integer(1, max_cmds))]
    fmt = geo.fmt if geo.fmt == "raw" or ch.chance(0.8) else None
    step = io_step(geo.name, cmds, fmt)
    if ch.chance(0.25):
        opts = ch.choice([["-d", "unmap"], ["--cache", "writeback", "--aio", "threads"], ["-C"],
                          ["-r"], ["-t", "none"], ["-d", "ignore"], ["-U", "-r"]])
        step = Step("io", tuple(opts) + step.argv)
    return step


def backing_chain(ch: Chooser) -> tuple[list[Step], Geometry | None]:
    """No backing file, a raw or qcow2 one, or a two-level chain."""
    kind = ch.choice(["none", "none", "raw", "qcow2", "chain"])
    if kind == "none":
        return [], None
    steps, below = [], None
    layers = [("base.raw" if kind == "raw" else "base.qcow2", "raw" if kind == "raw" else "qcow2")]
    if kind == "chain":
        layers = [ch.choice([("base.raw", "raw"), ("base.qcow2", "qcow2")]), ("mid.qcow2", "qcow2")]
    for name, fmt in layers:
        s, below = create_image(ch, name, fmt, below)
        steps += s
        writes = [io_command_write(ch, below) for _ in range(ch.integer(1, 3))]
        steps.append(io_step(name, writes, fmt))
    return steps, below


def io_command_write(ch: Chooser, geo: Geometry) -> str:
    """A pattern write, used to give backing files recognisable content."""
    off = offset(ch, geo)
    n = length(ch, geo, off)
    pat = ch.integer(1, 255)
    geo.fill(off, n, pat)
    return f"write -P {pat:#x} {off} {n}"


def img_probe(ch: Chooser, geo: Geometry) -> Step:
    """A qemu-img command that looks at the image between qemu-io runs."""
    top, fmt = geo.name, geo.fmt
    off = offset(ch, geo)
    return ch.choice([
        img_step("map", "-f", fmt, top),
        img_step("map", "--output=json", "--start-offset", str(off),
                 "--max-length", str(length(ch, geo, off, cap=64 * MiB)), top),
        img_step("info", "-f", fmt, top),
        img_step("info", "--output=json", top),
        img_step("info", "--backing-chain", top),
        img_step("check", top) if fmt == "qcow2" else img_step("map", top),
        img_step("check", "-r", ch.choice(["leaks", "all"]), top) if fmt == "qcow2"
        else img_step("info", top),
        img_step("check", "--output=json", top) if fmt == "qcow2" else img_step("info", top),
    ])


def random_sequence(ch: Chooser, label: str = "") -> Sequence:
    """A whole differential test: backing chain, top image, 1-3 qemu-io runs, probes."""
    steps, backing = backing_chain(ch)
    top_fmt = "raw" if backing is None and ch.chance(0.08) else "qcow2"
    top = "img.raw" if top_fmt == "raw" else "img.qcow2"
    s, geo = create_image(ch, top, top_fmt, backing)
    steps += s
    for _ in range(ch.integer(1, 4)):
        steps.append(populate(ch, geo, 6))
        if ch.chance(0.2):
            steps.append(img_probe(ch, geo))
    if backing is not None and ch.chance(0.2):
        steps.append(img_step("compare", *ch.choice([[], ["-s"], ["-f", top_fmt, "-F", backing.fmt]]),
                              top, backing.name))
    return Sequence(steps, top, top_fmt, label)
