"""In-flight cluster allocations and the requests that wait for them (qcow2-cluster.c).

While a request's data write is in flight (or it is held at a blkdebug
breakpoint), its allocations are not yet linked into the L2 table. A write
that overlaps one of them must wait until it is linked or aborted, as QEMU
7.2's handle_dependencies decides: the
ranges are compared at cluster granularity, but when the held allocation keeps
its old clusters (subcluster allocation in an allocated cluster) only its COW
range counts. ``s.cluster_allocs`` holds ``[meta, waiting coroutines]``,
newest first; it exists only once an allocation was registered.
"""
from __future__ import annotations


def register(s, metas: list) -> None:
    """Put a request's new allocations on the in-flight list."""
    if not metas:
        return
    if not s.cluster_allocs:
        s.cluster_allocs = []
    for m in metas:
        s.cluster_allocs.insert(0, [m, []])


def retire(s, m) -> None:
    """The allocation is linked or aborted: take it off the list, wake its waiters."""
    from emulator.block import coroutine
    for entry in s.cluster_allocs:
        if entry[0] is m:
            s.cluster_allocs.remove(entry)
            for co in entry[1]:
                coroutine.wake(co)
            return


def handle_dependencies(s, guest_offset: int, nbytes: int, have_metas: bool) -> int | None:
    """How many bytes from ``guest_offset`` may be gathered now (0: stop here);
    None after waiting for an overlapping allocation (the caller starts over).

    The wait releases the qcow2 lock (:mod:`emulator.qcow2.lock`) and takes it
    again. A request of the main thread never waits (in QEMU it would wait for
    ever for a request held at a breakpoint); it goes on as if there were no
    conflict.
    """
    from emulator.block import coroutine
    cs = s.cluster_size
    start, end = guest_offset, guest_offset + nbytes
    for m, waiters in s.cluster_allocs:
        cow_start = m.offset + m.cow_start.offset
        cow_end = m.offset + m.cow_end.offset + m.cow_end.nb_bytes
        old_start = cow_start & ~(cs - 1)
        old_end = -(-cow_end // cs) * cs
        if end <= old_start or start >= old_end:
            continue
        if m.keep_old_clusters and (end <= cow_start or start >= cow_end):
            continue
        co = coroutine.current()
        if co is None:
            continue
        nbytes = old_start - start if start < old_start else 0
        if nbytes == 0 and have_metas:
            return 0
        if nbytes == 0:
            from emulator.qcow2.lock import lock, unlock
            waiters.append(co)
            unlock(s)
            coroutine.yield_()
            lock(s)
            return None
        end = start + nbytes
    return nbytes
