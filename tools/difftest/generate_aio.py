"""Random blkdebug sequences: injected errors, requests in flight together,
requests held at breakpoints.

Each sequence creates a qcow2 image (sometimes over a backing chain), maybe
populates it, then runs 1-3 qemu-io invocations through a blkdebug node:
- error injection: ``--image-opts`` with ``file.inject-error.N.*`` rules
  (random event, errno, once, immediately, sector, iotype; sometimes a
  ``set-state`` rule gating them) and random commands, among them batches
  of aio requests in flight together;
- a batch run: several aio writes (pattern, zero), reads and writes of
  several clusters in flight together, synchronous reads, writes and
  one-cluster compressed writes among them, then ``aio_flush`` and reads;
- a breakpoint: ``break EVENT A`` on a pattern ``aio_write`` that is sure to
  reach EVENT, ``wait_break A``, maybe other requests while A is held (aio
  writes and reads, possibly in A's cluster and so waiting for it; sync writes
  elsewhere), then ``resume A``, ``aio_flush`` and reads. On an image nothing
  was written to yet, EVENT may be one reached under the qcow2 lock
  (cluster_alloc, l2_alloc_write, l1_update, l2_update): the other requests
  then wait for the lock.

Avoided because QEMU itself would hang or answer non-deterministically
(docs/divergences.md B3, B4, B6):
- waiting for a breakpoint a request may not reach; sync requests while A is
  held under the lock or in a cluster A allocates (they would wait for ever);
- the completion order of requests in flight together (QEMU's thread pool
  completes them in any order): they run with -q and are checked by reads;
- data writes in flight together over the same bytes (in-place writes land
  in I/O order), and zero writes sharing a cluster with another request in
  flight (one freeing a cluster another one writes or copies races with it);
- several requests in flight that may fail by injected errors (the order of
  their failure lines follows the I/O completion order): a batch of an error
  run holds one request that may fail, the others only read;
- compressed writes of several clusters (compressed in parallel tasks, their
  host order varies), and sync commands reading metadata (map, alloc) while
  aio writes are in flight in a plain run (how far those got depends on the
  thread-pool timing, docs/divergences.md B13).
Errors armed by pwritev_done are drawn (QEMU gave the same answer 8 of 8 runs
on writes of several chunks, and 400 of 400 seeds against itself).
"""
from __future__ import annotations

from .choices import Chooser
from .generate import (Geometry, backing_chain, create_image, io_command, length, offset,
                       populate)
from .sequence import Sequence, Step, io_step

TOP = "img.qcow2"
#: events a random write/read/flush may reach, for injected errors
ERROR_EVENTS = (
    "l1_update", "l1_grow_alloc_table", "l1_grow_write_table", "l1_grow_activate_table",
    "l2_load", "l2_update", "l2_update_compressed", "l2_alloc_cow_read", "l2_alloc_write",
    "read_aio", "read_backing_aio", "read_compressed", "write_aio", "write_compressed",
    "cow_read", "cow_write", "refblock_update_part", "refblock_alloc", "refblock_load",
    "refblock_alloc_hookup", "refblock_alloc_write", "cluster_alloc", "cluster_alloc_bytes",
    "cluster_free", "cluster_alloc_space", "flush_to_os", "pwritev", "pwritev_zero",
    "flush_to_disk", "reftable_load", "pwritev_done",
)
#: events before the data write of a chunk (drawn more often: an error they arm
#: without ``immediately`` fails a task while the write goes on allocating)
DATA_EVENTS = ("write_aio", "write_aio", "cow_write", "pwritev", "cluster_alloc")
#: events every pattern aio_write reaches; write_aio is reached outside the qcow2 lock
BREAK_EVENTS = ("write_aio", "write_aio", "write_aio", "pwritev", "pwritev_done", "flush_to_os")
#: events the first pattern aio_write on an image nothing was written to reaches
#: with the qcow2 lock held
LOCKED_EVENTS = ("cluster_alloc", "l2_alloc_write", "l1_update", "l2_update")


def _rule(ch: Chooser, n: int, event: str) -> list[str]:
    """``file.inject-error.N.*`` options of one rule."""
    p = f"file.inject-error.{n}."
    opts = [f"{p}event={event}", f"{p}errno={ch.choice([5, 5, 28, 1, 22, 27])}"]
    if ch.chance(0.6):
        opts.append(f"{p}once={ch.choice(['on', 'off'])}")
    if ch.chance(0.3):
        opts.append(f"{p}immediately={ch.choice(['on', 'off'])}")
    if ch.chance(0.15):
        opts.append(f"{p}sector={ch.integer(0, 2048)}")
    if ch.chance(0.15):
        opts.append(f"{p}iotype={ch.choice(['read', 'write', 'write-zeroes', 'flush'])}")
    return opts


def _error_run(ch: Chooser, geo: Geometry) -> Step:
    """One qemu-io invocation with injected errors."""
    opts = [f"driver=qcow2,file.driver=blkdebug,file.image.filename={TOP}"]
    for n in range(ch.integer(1, 2)):
        opts += _rule(ch, n, ch.choice(ERROR_EVENTS + DATA_EVENTS))
    if ch.chance(0.2):
        opts += [f"file.set-state.0.event={ch.choice(ERROR_EVENTS)}",
                 "file.set-state.0.new_state=2", "file.inject-error.0.state=2"]
    cmds = []
    for _ in range(ch.integer(1, 5)):
        if ch.chance(0.2):
            off = offset(ch, geo)
            cmds += [f"aio_write -P {ch.integer(1, 255):#x} {off} {length(ch, geo, off)}",
                     "aio_flush"]
        elif ch.chance(0.2):
            cmds += _batch(ch, geo, geo.size, failing=1)[0]
        else:
            cmds.append(io_command(ch, geo))
    argv: list[str] = ["--image-opts"]
    for c in cmds:
        argv += ["-c", c]
    return Step("io", tuple(argv + [",".join(opts)]))


def _batch(ch: Chooser, geo: Geometry, size: int,
           failing: int = 4) -> tuple[list[str], list[str]]:
    """2-5 aio requests in flight together below ``size``, then ``aio_flush``;
    and reads checking what they wrote. At most ``failing`` of them write."""
    cs = geo.cluster
    cmds: list[str] = []
    checks: list[str] = []
    written: list[tuple[int, int]] = []
    zeroed: set[int] = set()
    touched: set[int] = set()
    writes = 0
    for _ in range(ch.integer(2, 5)):
        kind = ch.choice(["write"] * 5 + ["zero", "read", "sync"])
        off = offset(ch, geo)
        n = length(ch, geo, off, cap=4 * cs) if ch.chance(0.7) else \
            cs * ch.integer(2, 4) + ch.choice([0, 512, -512])
        compressed = kind == "sync" and ch.chance(0.3)
        if compressed:  # one whole cluster
            off, n = off - off % cs, cs
        if n <= 0 or off + n > size:
            continue
        clusters = set(range(off // cs, (off + n - 1) // cs + 1))
        if kind == "sync":
            # a synchronous request polls the others while it runs; kept off
            # their clusters (it could wait for ever, or read racing data)
            if failing >= 4 and not clusters & touched:
                touched |= clusters
                if ch.chance(0.5) and not compressed:
                    cmds.append(f"read -q {off} {n}")
                else:
                    pat = ch.integer(1, 255)
                    flag = "-c " if compressed else ""
                    cmds.append(f"write -q {flag}-P {pat:#x} {off} {n}")
                    checks.append(f"read -q -P {pat:#x} {off} {n}")
                    geo.fill(off, n, pat)
            continue
        if kind == "read":
            if failing >= 4:  # a read may fail too
                cmds.append(f"aio_read -q {off} {n}")
            continue
        if writes >= failing or clusters & zeroed:
            continue
        if kind == "zero":
            if clusters & touched:
                continue
            zeroed |= clusters
            touched |= clusters
            unmap = "-u " if ch.chance(0.4) else ""
            cmds.append(f"aio_write -q -z {unmap}{off} {n}")
            checks.append(f"read -q -P 0 {off} {n}")
            geo.fill(off, n, 0)
        else:
            if any(off < end and start < off + n for start, end in written):
                continue
            written.append((off, off + n))
            touched |= clusters
            pat = ch.integer(1, 255)
            cmds.append(f"aio_write -q -P {pat:#x} {off} {n}")
            checks.append(f"read -q -P {pat:#x} {off} {n}")
            geo.fill(off, n, pat)
        writes += 1
    return cmds + ["aio_flush"], checks


def _batch_run(ch: Chooser, geo: Geometry, size: int) -> Step:
    """One qemu-io invocation of batches of aio requests in flight together."""
    cmds: list[str] = []
    for _ in range(ch.integer(1, 3)):
        batch, checks = _batch(ch, geo, size)
        cmds += batch + checks
    if ch.chance(0.3):
        cmds.append("map")
    if ch.chance(0.3):  # the last batch drained by the exit instead
        batch, _ = _batch(ch, geo, size)
        cmds += batch[:-1]
    return io_step(f"blkdebug::{TOP}", cmds, "qcow2")


def _in_cluster(ch: Chooser, geo: Geometry, cluster: int) -> tuple[int, int]:
    """An offset and length inside guest cluster number ``cluster``."""
    base = cluster * geo.cluster
    off = base + ch.integer(0, geo.cluster // 512 - 1) * 512
    n = min(512 * ch.integer(1, 8), base + geo.cluster - off)
    return off, n


def _break_run(ch: Chooser, geo: Geometry, size: int, fresh: bool) -> Step:
    """One qemu-io invocation holding a pattern aio_write at a breakpoint; its
    requests stay below ``size``, which the image surely has. ``fresh``: nothing
    was written to the image yet (A then surely allocates)."""
    clusters = size // geo.cluster
    if clusters < 2:
        return io_step(f"blkdebug::{TOP}", ["read -P 0 0 512"], "qcow2")
    if fresh and ch.chance(0.8):
        return _locked_break_run(ch, geo, clusters)
    event = ch.choice(BREAK_EVENTS)
    a = ch.integer(0, clusters - 1)
    off, n = _in_cluster(ch, geo, a)
    pat = ch.integer(1, 255)
    cmds = [f"break {event} A", f"aio_write -P {pat:#x} {off} {n}", "wait_break A"]
    checks = []
    written = [(off, off + n)]
    if event == "write_aio":
        for _ in range(ch.integer(0, 3)):
            other = a if ch.chance(0.5) else ch.integer(0, clusters - 1)
            o, m = _in_cluster(ch, geo, other)
            kind = ch.choice(["aio_write", "aio_write", "aio_read", "write"])
            if kind == "write" and other == a:
                continue  # a sync write waiting for A would wait for ever
            flag = ""
            if kind == "write" and ch.chance(0.3):  # compressed: one whole cluster
                o, m, flag = other * geo.cluster, geo.cluster, "-c "
            if kind == "aio_read":
                cmds.append(f"aio_read -q {o} {m}")
                continue
            if any(o < end and start < o + m for start, end in written):
                continue  # overlapping data writes in flight land in I/O order
            written.append((o, o + m))
            p = ch.integer(1, 255)
            cmds.append(f"{kind} -q {flag}-P {p:#x} {o} {m}")
            checks.append(f"read -P {p:#x} {o} {m}")
    cmds += ["resume A", "aio_flush", *reversed(checks)]
    if not checks or ch.chance(0.5):
        cmds.append(f"read -P {pat:#x} {off} {n}")
    return io_step(f"blkdebug::{TOP}", cmds, "qcow2")


def _locked_break_run(ch: Chooser, geo: Geometry, clusters: int) -> Step:
    """A held at an event reached under the qcow2 lock: the other (aio)
    requests wait for the lock until A is resumed."""
    event = ch.choice(LOCKED_EVENTS)
    a = ch.integer(0, clusters - 1)
    off, n = _in_cluster(ch, geo, a)
    pat = ch.integer(1, 255)
    geo.fill(off, n, pat)
    cmds = [f"break {event} A", f"aio_write -P {pat:#x} {off} {n}", "wait_break A"]
    checks = [f"read -P {pat:#x} {off} {n}"]
    written = [(off, off + n)]
    for _ in range(ch.integer(1, 3)):
        o, m = _in_cluster(ch, geo, a if ch.chance(0.4) else ch.integer(0, clusters - 1))
        if ch.chance(0.25):
            cmds.append(f"aio_read -q {o} {m}")
            continue
        if any(o < end and start < o + m for start, end in written):
            continue
        written.append((o, o + m))
        p = ch.integer(1, 255)
        geo.fill(o, m, p)
        cmds.append(f"aio_write -q -P {p:#x} {o} {m}")
        checks.append(f"read -q -P {p:#x} {o} {m}")
    cmds += ["resume A", "aio_flush", *checks]
    if ch.chance(0.4):
        cmds.append("map")
    return io_step(f"blkdebug::{TOP}", cmds, "qcow2")


def aio_sequence(ch: Chooser, label: str = "") -> Sequence:
    """Backing chain, qcow2 top image, maybe some data, then blkdebug runs."""
    steps, backing = backing_chain(ch) if ch.chance(0.3) else ([], None)
    s, geo = create_image(ch, TOP, "qcow2", backing)
    steps += s
    created = geo.size
    fresh = not any("preallocation=" in a for a in s[-1].argv)
    if ch.chance(0.6):
        steps.append(populate(ch, geo, 4))
        fresh = False
    # a truncate of the populating run may have failed (-r): only sizes both
    # outcomes have are safe; breakpoint runs come first, before injected
    # errors could make the held write fail before its event
    size = min(created, geo.size)
    kinds = sorted(ch.choice(["break", "batch", "error"]) for _ in range(ch.integer(1, 3)))
    for kind in kinds:
        if kind == "break":
            steps.append(_break_run(ch, geo, size, fresh))
        elif kind == "batch":
            steps.append(_batch_run(ch, geo, size))
        else:
            steps.append(_error_run(ch, geo))
        fresh = False
    return Sequence(steps, TOP, "qcow2", label)
