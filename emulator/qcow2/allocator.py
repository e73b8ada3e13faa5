"""Cluster allocation (qcow2-refcount.c): first fit from the free cluster index.

API summary (``s`` is an open Qcow2 node):
- ``alloc_clusters_noref(s, size, max_offset)`` -> offset of the first run of
  free clusters at or after ``s.free_cluster_index`` (refcounts untouched).
- ``alloc_clusters(s, size)`` -> offset, refcounts incremented.
- ``alloc_clusters_at(s, offset, n)`` -> how many clusters from ``offset`` it
  could take (stops at the first used one).
- ``alloc_bytes(s, size)`` -> byte offset for compressed data, packing into
  the current partially used cluster.
- ``free_clusters(s, offset, size, discard_type)``;
  ``free_any_cluster(s, l2_entry, discard_type)``.
"""
from __future__ import annotations

import errno

from emulator.qcow2.header import c_hex
from emulator.block.node import BlockError
from emulator.qcow2 import l2_entry as l2e
from emulator.qcow2.header import QCOW_MAX_CLUSTER_OFFSET
from emulator.qcow2.refcount import Again, get_refcount, process_discards, update_refcount


def alloc_clusters_noref(s, size: int, max_offset: int) -> int:
    if s.cache_discards:
        process_discards(s)
    n = (size + s.cluster_size - 1) >> s.cluster_bits
    i = 0
    while i < n:
        idx = s.free_cluster_index
        s.free_cluster_index += 1
        if get_refcount(s, idx) != 0:
            i = 0
            continue
        i += 1
    if s.free_cluster_index > 0 and s.free_cluster_index - 1 > (max_offset >> s.cluster_bits):
        raise BlockError(errno.EFBIG)
    return (s.free_cluster_index - n) << s.cluster_bits


def alloc_clusters(s, size: int) -> int:
    if s.blkdbg:
        s.blkdbg("cluster_alloc")
    while True:
        offset = alloc_clusters_noref(s, size, QCOW_MAX_CLUSTER_OFFSET)
        try:
            update_refcount(s, offset, size, 1, False, 0)
            return offset
        except Again:
            continue


def alloc_clusters_at(s, offset: int, nb_clusters: int) -> int:
    if nb_clusters == 0:
        return 0
    while True:
        idx = offset >> s.cluster_bits
        i = 0
        while i < nb_clusters and get_refcount(s, idx + i) == 0:
            i += 1
        try:
            update_refcount(s, offset, i << s.cluster_bits, 1, False, 0)
            return i
        except Again:
            continue


def alloc_bytes(s, size: int) -> int:
    if s.blkdbg:
        s.blkdbg("cluster_alloc_bytes")
    cs = s.cluster_size
    offset = s.free_byte_offset
    if offset and get_refcount(s, offset >> s.cluster_bits) == s.refcount_max:
        offset = 0
    free_in_cluster = cs - (offset & (cs - 1))
    while True:
        if not offset or free_in_cluster < size:
            _, _, omask = l2e.compressed_layout(s.cluster_bits)
            new_cluster = alloc_clusters_noref(s, cs, min(omask, QCOW_MAX_CLUSTER_OFFSET))
            if new_cluster == 0:
                s.signal_corruption(True, "Preventing invalid allocation of compressed "
                                          "cluster at offset 0")
                raise BlockError(errno.EIO)
            if not offset or ((offset + cs - 1) & ~(cs - 1)) != new_cluster:
                offset = new_cluster
                free_in_cluster = cs
            else:
                free_in_cluster += cs
        try:
            update_refcount(s, offset, size, 1, False, 0)
            break
        except Again:
            offset = 0  # QEMU retries in a fresh cluster after any failure
            continue
        except BlockError:
            offset = 0
            raise
    s.l2_cache.set_dependency(s.refcount_cache)
    s.free_byte_offset = offset + size
    if not s.free_byte_offset & (cs - 1):
        s.free_byte_offset = 0
    return offset


def free_clusters(s, offset: int, size: int, discard_type: int) -> None:
    """qcow2_free_clusters: failures are only reported on stderr."""
    if s.blkdbg:
        s.blkdbg("cluster_free")
    try:
        update_refcount(s, offset, size, 1, True, discard_type)
    except (BlockError, Again) as e:
        import os
        import sys
        err = e.errno if isinstance(e, BlockError) else errno.EAGAIN
        sys.stderr.write(f"qcow2_free_clusters failed: {os.strerror(err)}\n")
        sys.stderr.flush()


def free_any_cluster(s, entry: int, discard_type: int) -> None:
    ctype = l2e.cluster_type(entry, s.extended_l2, s.has_data_file)
    if s.has_data_file:
        if s.discard_passthrough[discard_type] and \
                ctype in (l2e.ClusterType.NORMAL, l2e.ClusterType.ZERO_ALLOC):
            from emulator.block import io
            io.pdiscard(s.data_file, entry & l2e.L2E_OFFSET_MASK, s.cluster_size)
        return
    if ctype == l2e.ClusterType.COMPRESSED:
        coff, csize = l2e.compressed_host_range(entry, s.cluster_bits)
        free_clusters(s, coff, csize, discard_type)
    elif ctype in (l2e.ClusterType.NORMAL, l2e.ClusterType.ZERO_ALLOC):
        host = entry & l2e.L2E_OFFSET_MASK
        if host & (s.cluster_size - 1):
            s.signal_corruption(False, f"Cannot free unaligned cluster {c_hex(host)}")
        else:
            free_clusters(s, host, s.cluster_size, discard_type)
