"""The active-commit block job of qemu-img commit (block/mirror.c in commit mode).

Everything allocated above the base is marked dirty in a bitmap of
``granularity`` chunks, then copied chunk run by chunk run into the base in
ascending offset order: data is read through the whole chain and written,
zero areas become zero writes, unallocated ones discards.  QEMU runs up to 16
such operations concurrently, so when one commit needs several of them the
base's cluster allocation order (and so its bytes) varies from run to run in
QEMU itself; this model issues them one after the other in offset order.
"""
from __future__ import annotations

INT_MAX = (1 << 31) - 1
MAX_IN_FLIGHT = 16
MAX_IO_BYTES = 1 << 20
BUF_SIZE = MAX_IN_FLIGHT * MAX_IO_BYTES
MAX_IOV = 1024


def granularity_of(target) -> int:
    """bdrv_get_default_bitmap_granularity: the cluster size clamped to [4k, 64k]."""
    cluster = target.cluster_size if target.format_name == "qcow2" else 0
    return min(65536, max(4096, cluster)) if cluster else 65536


def _round_to_clusters(target, offset: int, nbytes: int) -> tuple[int, int]:
    cluster = target.cluster_size if target.format_name == "qcow2" else 0
    if not cluster:
        return offset, nbytes
    start = offset - offset % cluster
    end = -(-(offset + nbytes) // cluster) * cluster
    return start, end - start


def _dirty_chunks(top, base_overlay, length: int, gran: int) -> list[bool]:
    """mirror_dirty_init: chunks allocated anywhere from top down to base_overlay."""
    from emulator.block import io
    dirty = [False] * (-(-length // gran))
    offset = 0
    while offset < length:
        n = min(length - offset, INT_MAX // gran * gran)
        depth, count = io.is_allocated_above(top, base_overlay, True, offset, n)
        if depth:
            for i in range(offset // gran, -(-(offset + count) // gran)):
                dirty[i] = True
        offset += count
    return dirty


def run(top, base, base_overlay) -> None:
    """mirror_run for an active commit of ``top`` into ``base``; raises BlockError."""
    from emulator.block import io
    from emulator.block.node import (
        BDRV_BLOCK_DATA, BDRV_BLOCK_ZERO, BDRV_REQ_MAY_UNMAP, BlockError,
    )
    length = io.getlength(top)
    if length > io.getlength(base):
        io.truncate(base, length, exact=False, prealloc="off")
    if length == 0:
        return
    gran = granularity_of(base)
    dirty = _dirty_chunks(top, base_overlay, length, gran)
    chunk = 0
    while chunk < len(dirty):
        if not dirty[chunk]:
            chunk += 1
            continue
        offset = chunk * gran
        nb_chunks = 1
        while nb_chunks * gran < BUF_SIZE and offset + nb_chunks * gran < length \
                and dirty[chunk + nb_chunks]:
            nb_chunks += 1
        for i in range(chunk, chunk + nb_chunks):
            dirty[i] = False
        while nb_chunks > 0 and offset < length:
            try:
                st = io.block_status_above(top, None, offset, nb_chunks * gran)[0]
                flags, io_bytes = st.flags, st.pnum
                if flags & BDRV_BLOCK_DATA:
                    io_bytes = min(io_bytes, MAX_IO_BYTES)
            except BlockError:
                flags, io_bytes = -1, min(nb_chunks * gran, MAX_IO_BYTES)
            io_bytes -= io_bytes % gran
            method = "copy"
            if io_bytes < gran:
                io_bytes = gran
            elif flags >= 0 and not flags & BDRV_BLOCK_DATA:
                if _round_to_clusters(base, offset, io_bytes) == (offset, io_bytes):
                    method = "zero" if flags & BDRV_BLOCK_ZERO else "discard"
            io_bytes = min(io_bytes, length - offset)
            if method == "copy":
                io_bytes = min(BUF_SIZE, gran * MAX_IOV, io_bytes)
                io.pwrite(base, offset, io.pread(top, offset, io_bytes))
            elif method == "zero":
                io.pwrite_zeroes(base, offset, io_bytes, BDRV_REQ_MAY_UNMAP)
            else:
                io.pdiscard(base, offset, io_bytes)
            offset += io_bytes
            nb_chunks -= -(-io_bytes // gran)
        chunk = -(-offset // gran)
