"""Changing options of an existing image (qcow2_amend_options, qcow2_upgrade,
qcow2_downgrade, qcow2_expand_zero_clusters).

API summary: ``amend(s, opts, force=False, status=None)`` with ``opts`` holding
only the options given on the command line (qemu-img amend -o names: compat,
size, backing_file, backing_fmt, data_file, data_file_raw, lazy_refcounts,
refcount_bits, encrypt.*), values as strings or typed. Raises BlockError with
QEMU's message (and ``hint`` where QEMU adds one). ``status(offset, total)``
receives the progress of the whole amendment (qemu-img amend -p).
"""
from __future__ import annotations

import errno
from typing import Callable, Optional

from emulator.block.node import BlockError
from emulator.qcow2 import header as hdr
from emulator.qcow2 import l2_entry as l2e
from emulator.qcow2.header import L1E_OFFSET_MASK, c_hex

#: qcow2_amend_opts order (QCOW_COMMON_OPTIONS after the encrypt.* ones)
_ORDER = ("size", "compat", "backing_file", "backing_fmt", "data_file", "data_file_raw",
          "lazy_refcounts", "refcount_bits")


def _bool(val) -> bool:
    return val if isinstance(val, bool) else str(val) in ("on", "yes", "true", "y")


StatusCB = Callable[[int, int], None]


class _Progress:
    """qcow2_amend_helper_cb: the steps of each operation projected over all of them."""

    def __init__(self, status: Optional[StatusCB], total_operations: int) -> None:
        self.status = status
        self.total = total_operations
        self.current = self.last = ""
        self.completed = self.offset_completed = self.last_work = 0

    def start(self, operation: str) -> None:
        self.current = operation

    def __call__(self, offset: int, work: int) -> None:
        if self.status is None:
            return
        if self.current != self.last:
            if self.last:
                self.offset_completed += self.last_work
                self.completed += 1
            self.last = self.current
        self.last_work = work
        current = self.offset_completed + work
        projected = current * (self.total - self.completed - 1) // (self.completed + 1)
        self.status(self.offset_completed + offset, current + projected)


def amend(s, opts: dict, force: bool = False, status: Optional[StatusCB] = None) -> None:
    old_version = new_version = s.qcow_version
    new_size = 0
    backing_file = backing_format = data_file = None
    lazy = s.use_lazy_refcounts
    refcount_bits = s.refcount_bits
    data_file_raw = bool(s.autoclear_features & hdr.AUTOCLEAR_DATA_FILE_RAW)
    encryption_update = any(k.startswith("encrypt.") for k in opts)
    if encryption_update:
        if getattr(s, "crypto", None) is None:
            raise BlockError(errno.EINVAL,
                             "Can't amend encryption options - encryption not present")
        from emulator.qcow2.crypto import CRYPT_LUKS
        if s.crypt_method != CRYPT_LUKS:
            raise BlockError(errno.ENOTSUP, "Only LUKS encryption options can be amended")
    for key in _ORDER:
        if key not in opts:
            continue
        val = opts[key]
        if key == "compat":
            if val in ("0.10", "v2"):
                new_version = 2
            elif val in ("1.1", "v3"):
                new_version = 3
            elif val is not None:
                raise BlockError(errno.EINVAL, f"Unknown compatibility level {val}")
        elif key == "size":
            new_size = int(val)
        elif key == "backing_file":
            backing_file = val
        elif key == "backing_fmt":
            backing_format = val
        elif key == "lazy_refcounts":
            lazy = _bool(val)
        elif key == "refcount_bits":
            refcount_bits = int(val)
            if refcount_bits <= 0 or refcount_bits > 64 or refcount_bits & (refcount_bits - 1):
                raise BlockError(errno.EINVAL, "Refcount width must be a power of two and may "
                                               "not exceed 64 bits")
        elif key == "data_file":
            data_file = val
            if data_file and not s.incompatible_features & hdr.INCOMPAT_DATA_FILE:
                raise BlockError(errno.EINVAL, "data-file can only be set for images that use "
                                               "an external data file")
        elif key == "data_file_raw":
            data_file_raw = _bool(val)
            if data_file_raw and not s.autoclear_features & hdr.AUTOCLEAR_DATA_FILE_RAW:
                raise BlockError(errno.EINVAL, "data-file-raw cannot be set on existing images")
    progress = _Progress(status, (new_version != old_version)
                         + (s.refcount_bits != refcount_bits) + encryption_update)
    if new_version > old_version:
        progress.start("upgrade")
        _upgrade(s, new_version, progress)
    if encryption_update:
        from emulator.qcow2.crypto import amend as amend_encryption
        amend_encryption(s, {k[len("encrypt."):]: v for k, v in opts.items()
                             if k.startswith("encrypt.")}, force)
    if s.refcount_bits != refcount_bits:
        if new_version < 3 and refcount_bits != 16:
            raise BlockError(errno.EINVAL, "Refcount widths other than 16 bits require "
                             "compatibility level 1.1 or above (use compat=1.1 or greater)")
        from emulator.qcow2.refcount import change_refcount_order
        change_refcount_order(s, refcount_bits.bit_length() - 1)
    if data_file_raw:
        s.autoclear_features |= hdr.AUTOCLEAR_DATA_FILE_RAW
    else:
        s.autoclear_features &= ~hdr.AUTOCLEAR_DATA_FILE_RAW
    if data_file is not None:
        s.image_data_file = data_file or None
    s.update_header()
    if backing_file or backing_format:
        if backing_file != s.image_backing_file or backing_format != s.image_backing_format:
            raise BlockError(errno.EINVAL, "Cannot amend the backing file",
                             "You can use 'qemu-img rebase' instead.\n")
    if s.use_lazy_refcounts != lazy:
        if lazy:
            if new_version < 3:
                raise BlockError(errno.EINVAL, "Lazy refcounts only supported with "
                                 "compatibility level 1.1 and above (use compat=1.1 or greater)")
            s.compatible_features |= hdr.COMPAT_LAZY_REFCOUNTS
            s.update_header()
            s.use_lazy_refcounts = True
        else:
            s.mark_clean()
            s.compatible_features &= ~hdr.COMPAT_LAZY_REFCOUNTS
            s.update_header()
            s.use_lazy_refcounts = False
    if new_size:
        from emulator.block import io
        io.truncate(s, new_size, exact=True, prealloc="off")
    if new_version < old_version:
        progress.start("downgrade")
        _downgrade(s, new_version, progress)


def _upgrade(s, target: int, progress: _Progress) -> None:
    from emulator.qcow2.snapshot_table import write_snapshots
    progress(0, 2)
    if any(sn.extra_data_size < 16 for sn in s.snapshots):
        try:
            write_snapshots(s, s.snapshots)
        except BlockError as e:
            raise BlockError(e.errno, f"Failed to update the snapshot table: {e.message}")
    progress(1, 2)
    s.qcow_version = target
    s.update_header()
    progress(2, 2)


def _downgrade(s, target: int, progress: _Progress) -> None:
    if s.refcount_order != 4:
        raise BlockError(errno.ENOTSUP, "compat=0.10 requires refcount_bits=16")
    if s.incompatible_features & hdr.INCOMPAT_DATA_FILE:
        raise BlockError(errno.ENOTSUP, "Cannot downgrade an image with a data file")
    for sn in s.snapshots:
        if sn.vm_state_size > 0xFFFFFFFF or sn.disk_size != s.size:
            raise BlockError(errno.ENOTSUP, "Internal snapshots prevent downgrade of image")
    if s.incompatible_features & hdr.INCOMPAT_DIRTY:
        s.mark_clean()
    rest = s.incompatible_features & ~hdr.INCOMPAT_COMPRESSION
    if rest:
        raise BlockError(errno.ENOTSUP, f"Cannot downgrade an image with incompatible "
                                        f"features 0x{rest:x} set")
    s.compatible_features = 0
    s.autoclear_features = 0
    try:
        expand_zero_clusters(s, progress)
    except BlockError as e:
        raise BlockError(e.errno, f"Failed to turn zero into data clusters: {e.message}")
    if s.incompatible_features & hdr.INCOMPAT_COMPRESSION:
        if _has_compressed_clusters(s):
            raise BlockError(errno.ENOTSUP, "Cannot downgrade an image with zstd compression "
                                            "type and existing compressed clusters")
        s.incompatible_features &= ~hdr.INCOMPAT_COMPRESSION
        s.compression_type = hdr.COMPRESSION_ZLIB
    s.qcow_version = target
    s.update_header()


def _has_compressed_clusters(s) -> bool:
    """qcow2_has_compressed_clusters: any compressed cluster in the active image."""
    from emulator.qcow2.cluster import get_host_offset
    from emulator.qcow2.l2_entry import SubclusterType
    offset, remaining = 0, s.size
    while remaining:
        n, _, t = get_host_offset(s, offset, min((1 << 31) - 1, remaining))
        if t == SubclusterType.COMPRESSED:
            return True
        offset += n
        remaining -= n
    return False


def expand_zero_clusters(s, progress: StatusCB) -> None:
    """Turn zero clusters into allocated zeroed clusters (or drop them without a
    backing file), in the active L1 table and every snapshot's; ``progress``
    gets (L1 entries visited, L1 entries in all tables)."""
    import struct
    visited = [0, s.l1_size + sum(sn.l1_size for sn in s.snapshots)]
    _expand_in_l1(s, s.l1_table, True, visited, progress)
    s.l2_cache.flush()
    s.l2_cache.clear()
    for sn in s.snapshots:
        if sn.l1_size > hdr.QCOW_MAX_L1_SIZE // 8 or \
                ((1 << 63) - 1) - sn.l1_size * 8 < sn.l1_table_offset or \
                sn.l1_table_offset & (s.cluster_size - 1):
            from emulator.report import error_report
            text = "Snapshot L1 table too large" if sn.l1_size > hdr.QCOW_MAX_L1_SIZE // 8 \
                else "Snapshot L1 table offset invalid"
            error_report(text)
            raise BlockError(errno.EFBIG if "large" in text else errno.EINVAL)
        raw = s.file_read(sn.l1_table_offset, sn.l1_size * 8)
        _expand_in_l1(s, list(struct.unpack(f">{sn.l1_size}Q", raw)), False, visited,
                      progress)


def _expand_in_l1(s, l1: list, active: bool, visited: list, progress: StatusCB) -> None:
    from emulator.block import io
    from emulator.qcow2.allocator import alloc_clusters, free_clusters
    from emulator.qcow2.overlap import OL_ACTIVE_L2, OL_INACTIVE_L2, pre_write_overlap_check
    from emulator.qcow2.refcount import DISCARD_ALWAYS, DISCARD_OTHER, get_refcount, \
        update_refcount
    cs = s.cluster_size
    for i, l1e in enumerate(l1):
        l2_offset = l1e & L1E_OFFSET_MASK
        if not l2_offset:
            visited[0] += 1
            progress(*visited)
            continue
        if l2_offset & (cs - 1):
            s.signal_corruption(True, f"L2 table offset {c_hex(l2_offset)} unaligned "
                                      f"(L1 index: {c_hex(i)})")
            raise BlockError(errno.EIO)
        l2_refcount = get_refcount(s, l2_offset >> s.cluster_bits)
        table = s.l2_cache.get(l2_offset) if active else bytearray(s.file_read(l2_offset, cs))
        dirty = False
        for j in range(s.l2_size):
            entry, _ = l2e.get_entry(table, j, False)
            offset = entry & l2e.L2E_OFFSET_MASK
            ctype = l2e.cluster_type(entry, False)
            if ctype not in (l2e.ClusterType.ZERO_PLAIN, l2e.ClusterType.ZERO_ALLOC):
                continue
            if ctype == l2e.ClusterType.ZERO_PLAIN:
                if s.backing is None:
                    l2e.set_entry(table, j, 0, 0, False)
                    dirty = True
                    continue
                offset = alloc_clusters(s, cs)
                if l2_refcount > 1:
                    update_refcount(s, offset, 1, l2_refcount - 1, False, DISCARD_OTHER)
            if offset & (cs - 1):
                s.signal_corruption(True, f"Cluster allocation offset {c_hex(offset)} "
                                          f"unaligned (L2 offset: {c_hex(l2_offset)}, "
                                          f"L2 index: {c_hex(j)})")
                if ctype == l2e.ClusterType.ZERO_PLAIN:
                    free_clusters(s, offset, cs, DISCARD_ALWAYS)
                raise BlockError(errno.EIO)
            try:
                pre_write_overlap_check(s, 0, offset, cs)
                io.pwrite_zeroes(s.file, offset, cs, 0)
            except BlockError:
                if ctype == l2e.ClusterType.ZERO_PLAIN:
                    free_clusters(s, offset, cs, DISCARD_ALWAYS)
                raise
            new = offset | l2e.OFLAG_COPIED if l2_refcount == 1 else offset
            if active:
                table = s.l2_cache.get(l2_offset)
            l2e.set_entry(table, j, new, 0, False)
            dirty = True
        if dirty:
            if active:
                s.l2_cache.mark_dirty(l2_offset)
            else:
                pre_write_overlap_check(s, OL_INACTIVE_L2 | OL_ACTIVE_L2, l2_offset, cs)
                s.file_write(l2_offset, bytes(table))
        visited[0] += 1
        progress(*visited)
