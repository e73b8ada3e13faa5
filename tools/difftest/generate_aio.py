"""Random blkdebug sequences: injected errors and requests held at breakpoints.

Each sequence creates a qcow2 image (sometimes over a backing chain), maybe
populates it, then runs 1-3 qemu-io invocations through a blkdebug node:
- error injection: ``--image-opts`` with ``file.inject-error.N.*`` rules
  (random event, errno, once, immediately, sector, iotype; sometimes a
  ``set-state`` rule gating them) and random commands, aio ones included;
- a breakpoint: ``break EVENT A`` on a pattern ``aio_write`` that is sure to
  reach EVENT, ``wait_break A``, maybe other requests while A is held (aio
  writes and reads, possibly in A's cluster and so waiting for it; sync writes
  elsewhere), then ``resume A``, ``aio_flush`` and reads.

Avoided because QEMU itself would hang or answer non-deterministically:
waiting for a breakpoint a request may not reach; errors armed by the end of
an I/O (pwritev_done: the chunks of one write run as parallel tasks in QEMU, so
which request takes the error depends on I/O timing); sync requests that would
wait for the held one; other requests while A is held at an event reached
under the qcow2 lock; the completion order of concurrent requests (they run
with -q and are checked by reads afterwards); A spanning several clusters
(its later allocations would race with the other requests'); data writes in
flight over the same bytes, and zero writes (one freeing a cluster another
request is writing or copying races with it in QEMU's thread pool).
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
)
#: events just before the data write of one chunk of a write: an error they arm
#: must fail that write at once (with immediately=off QEMU's failing task yields and
#: the request allocates its next chunks before the failure is seen; not modelled)
DATA_EVENTS = ("write_aio", "cow_write", "write_compressed", "pwritev", "pwritev_zero")
#: events every pattern aio_write reaches; only write_aio is reached outside the qcow2 lock
BREAK_EVENTS = ("write_aio", "write_aio", "write_aio", "pwritev", "pwritev_done", "flush_to_os")


def _rule(ch: Chooser, n: int, event: str) -> list[str]:
    """``file.inject-error.N.*`` options of one rule."""
    p = f"file.inject-error.{n}."
    opts = [f"{p}event={event}", f"{p}errno={ch.choice([5, 5, 28, 1, 22, 27])}"]
    if ch.chance(0.6):
        opts.append(f"{p}once={ch.choice(['on', 'off'])}")
    if event in DATA_EVENTS:
        opts.append(f"{p}immediately=on")
    elif ch.chance(0.3):
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
        opts += _rule(ch, n, ch.choice(ERROR_EVENTS))
    if ch.chance(0.2):
        opts += [f"file.set-state.0.event={ch.choice(ERROR_EVENTS)}",
                 "file.set-state.0.new_state=2", "file.inject-error.0.state=2"]
    cmds = []
    for _ in range(ch.integer(1, 5)):
        if ch.chance(0.2):
            off = offset(ch, geo)
            cmds += [f"aio_write -P {ch.integer(1, 255):#x} {off} {length(ch, geo, off)}",
                     "aio_flush"]
        else:
            cmds.append(io_command(ch, geo))
    argv: list[str] = ["--image-opts"]
    for c in cmds:
        argv += ["-c", c]
    return Step("io", tuple(argv + [",".join(opts)]))


def _in_cluster(ch: Chooser, geo: Geometry, cluster: int) -> tuple[int, int]:
    """An offset and length inside guest cluster number ``cluster``."""
    base = cluster * geo.cluster
    off = base + ch.integer(0, geo.cluster // 512 - 1) * 512
    n = min(512 * ch.integer(1, 8), base + geo.cluster - off)
    return off, n


def _break_run(ch: Chooser, geo: Geometry, size: int) -> Step:
    """One qemu-io invocation holding a pattern aio_write at a breakpoint; its
    requests stay below ``size``, which the image surely has."""
    clusters = size // geo.cluster
    if clusters < 2:
        return io_step(f"blkdebug::{TOP}", ["read -P 0 0 512"], "qcow2")
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
            if kind == "aio_read":
                cmds.append(f"aio_read -q {o} {m}")
                continue
            if any(o < end and start < o + m for start, end in written):
                continue  # overlapping data writes in flight land in I/O order
            written.append((o, o + m))
            p = ch.integer(1, 255)
            cmds.append(f"{kind} -q -P {p:#x} {o} {m}")
            checks.append(f"read -P {p:#x} {o} {m}")
    cmds += ["resume A", "aio_flush", *reversed(checks)]
    if not checks or ch.chance(0.5):
        cmds.append(f"read -P {pat:#x} {off} {n}")
    return io_step(f"blkdebug::{TOP}", cmds, "qcow2")


def aio_sequence(ch: Chooser, label: str = "") -> Sequence:
    """Backing chain, qcow2 top image, maybe some data, then blkdebug runs."""
    steps, backing = backing_chain(ch) if ch.chance(0.3) else ([], None)
    s, geo = create_image(ch, TOP, "qcow2", backing)
    steps += s
    created = geo.size
    if ch.chance(0.6):
        steps.append(populate(ch, geo, 4))
    # a truncate of the populating run may have failed (-r): only sizes both
    # outcomes have are safe; breakpoint runs come first, before injected
    # errors could make the held write fail before its event
    size = min(created, geo.size)
    kinds = sorted(ch.chance(0.5) for _ in range(ch.integer(1, 3)))
    for error in kinds:
        steps.append(_error_run(ch, geo) if error else _break_run(ch, geo, size))
    return Sequence(steps, TOP, "qcow2", label)
