"""qemu-img check for qcow2: refcount and metadata consistency (qcow2-refcount.c).

``check(s, fix)`` rebuilds the reference counts every cluster should have
from the header, the L1/L2 tables (active and of every snapshot), the
snapshot table and the refcount structures themselves, compares them with the
refcounts stored in the image and reports each difference on stderr with
QEMU's wording. ``fix`` is a mask of FIX_LEAKS / FIX_ERRORS (``-r leaks`` /
``-r all``): leaks and too-low refcounts are then corrected, broken refcount
structures rebuilt, misaligned preallocated entries zeroed and OFLAG_COPIED
flags repaired.

Returns a :class:`CheckResult` (QEMU's BdrvCheckResult); when QEMU's check
returns an error code (e.g. the refcount structure would need a rebuild that
was not requested) ``BlockError`` is raised after the messages were printed,
and qemu-img then reports "Check failed: <strerror>".
"""
from __future__ import annotations

import errno
import struct
import sys
from itertools import compress
from typing import Optional

from emulator.block import io
from emulator.block.node import BlockError
from emulator.qcow2 import overlap as ol
from emulator.qcow2 import refcount as rc
from emulator.qcow2.check_result import FIX_ERRORS, FIX_LEAKS, CheckResult, add_result
from emulator.qcow2.check_snapshots import check_fix_snapshot_table, check_read_snapshot_table
from emulator.qcow2.imrt import Imrt, rebuild_refcount_structure
from emulator.qcow2.l2_entry import (
    BITMAP_ALL_ALLOC, BITMAP_ALL_ZEROES, L2E_OFFSET_MASK, L2E_STD_RESERVED_MASK,
    OFLAG_COPIED, OFLAG_ZERO, ClusterType, cluster_type, compressed_host_range,
    entry_size, get_entry, used_entries,
)
from emulator.qcow2.header import AUTOCLEAR_BITMAPS, L1E_OFFSET_MASK, L1E_RESERVED_MASK, \
    QCOW_MAX_L1_SIZE, REFT_OFFSET_MASK, REFT_RESERVED_MASK

__all__ = ["FIX_ERRORS", "FIX_LEAKS", "CheckResult", "check", "check_refcounts"]


def _eprint(msg: str) -> None:
    err = sys.stderr
    err.write(msg + "\n")
    err.flush()


class _Checker:
    """State of one qcow2_check_refcounts run over the open image ``s``."""

    def __init__(self, s, res: CheckResult) -> None:
        self.s = s
        self.res = res
        self.cs = s.cluster_size
        self.extended = bool(s.extended_l2)
        self.data_file = bool(getattr(s, "has_data_file", False))
        self.l2_entries = self.cs // entry_size(self.extended)

    # ------------------------------------------------ in-memory refcounts
    def inc_refcounts(self, imrt: Imrt, offset: int, size: int) -> None:
        """qcow2_inc_refcounts_imrt: count [offset, offset+size) as referenced."""
        s, res = self.s, self.res
        if size <= 0:
            return
        file_len = io.getlength(s.file)
        if offset + size - file_len >= self.cs:
            _eprint("ERROR: counting reference for region exceeding the end of the "
                    f"file by one cluster or more: offset 0x{offset:x} size 0x{size:x}")
            res.corruptions += 1
            return
        first = offset >> s.cluster_bits
        last = (offset + size - 1) >> s.cluster_bits
        imrt.grow(last + 1)
        top, bits = s.refcount_max, imrt.bits
        mask = (1 << bits) - 1
        for k in range(first, last + 1):
            counts = imrt.writable_block(k >> bits)
            count = counts[k & mask]
            if count == top:
                _eprint(f"ERROR: overflow cluster offset=0x{k << s.cluster_bits:x}")
                _eprint("Use qemu-img amend to increase the refcount entry width or "
                        "qemu-img convert to create a clean copy if the image cannot "
                        "be opened for writing")
                res.corruptions += 1
                continue
            counts[k & mask] = count + 1

    # ------------------------------------------------ L2 / L1
    def _fix_l2_entry_by_zero(self, l2_offset: int, table: bytearray, index: int,
                              active: bool) -> bool:
        """fix_l2_entry_by_zero: make a misaligned preallocated entry read as zeroes.

        False when the write failed; an overlap with metadata aborts the check.
        """
        s, res = self.s, self.res
        esz = entry_size(self.extended)
        if self.extended:
            bitmap = struct.unpack_from(">Q", table, index * 16 + 8)[0]
            bitmap = (bitmap | (bitmap << 32)) & BITMAP_ALL_ZEROES
            struct.pack_into(">QQ", table, index * 16, 0, bitmap)
        else:
            struct.pack_into(">Q", table, index * 8, OFLAG_ZERO)
        entry_offset = l2_offset + index * esz
        try:
            ol.pre_write_overlap_check(s, ol.OL_ACTIVE_L2 if active else ol.OL_INACTIVE_L2,
                                       entry_offset, esz)
        except BlockError:
            _eprint("ERROR: Overlap check failed")
            res.check_errors += 1
            raise
        try:
            io.pwrite(s.file, entry_offset, bytes(table[index * esz:(index + 1) * esz]))
            io.flush(s.file)
        except BlockError as e:
            _eprint(f"ERROR: Failed to overwrite L2 table entry: {_strerror(e.errno)}")
            res.check_errors += 1
            return False
        res.corruptions -= 1
        res.corruptions_fixed += 1
        return True

    def check_l2(self, imrt: Imrt, l2_offset: int, frag_info: bool, fix: int,
                 active: bool) -> None:
        """check_refcounts_l2."""
        s, res = self.s, self.res
        try:
            table = bytearray(io.pread(s.file, l2_offset, self.l2_entries * entry_size(self.extended)))
        except BlockError:
            _eprint("ERROR: I/O error in check_refcounts_l2")
            res.check_errors += 1
            raise
        next_contiguous = 0
        # an all-zero entry is an unallocated cluster with nothing to count or report
        for i in used_entries(table, self.l2_entries, self.extended):
            entry, bitmap = get_entry(table, i, self.extended)
            ctype = cluster_type(entry, self.extended, self.data_file)
            if ctype != ClusterType.COMPRESSED and entry & L2E_STD_RESERVED_MASK:
                _eprint(f"ERROR found l2 entry with reserved bits set: {entry:x}")
                res.corruptions += 1
            if ctype == ClusterType.COMPRESSED:
                if entry & OFLAG_COPIED:
                    _, _, omask = _compressed_mask(s.cluster_bits)
                    _eprint(f"ERROR: coffset=0x{entry & omask:x}: copied flag must "
                            "never be set for compressed clusters")
                    entry &= ~OFLAG_COPIED
                    res.corruptions += 1
                if self.data_file:
                    _eprint(f"ERROR compressed cluster {i} with data file, entry=0x{entry:x}")
                    res.corruptions += 1
                    continue
                if bitmap:
                    _eprint(f"ERROR compressed cluster {i} with non-zero subcluster "
                            f"allocation bitmap, entry=0x{entry:x}")
                    res.corruptions += 1
                    continue
                coffset, csize = compressed_host_range(entry, s.cluster_bits)
                self.inc_refcounts(imrt, coffset, csize)
                if frag_info:
                    res.bfi.allocated_clusters += 1
                    res.bfi.compressed_clusters += 1
                    res.bfi.fragmented_clusters += 1
            elif ctype in (ClusterType.ZERO_ALLOC, ClusterType.NORMAL):
                offset = entry & L2E_OFFSET_MASK
                if (bitmap >> 32) & bitmap:
                    res.corruptions += 1
                    _eprint(f"ERROR offset={offset:x}: Allocated cluster has corrupted "
                            "subcluster allocation bitmap")
                if offset & (self.cs - 1):
                    res.corruptions += 1
                    if self.extended:
                        contains_data = bool(bitmap & BITMAP_ALL_ALLOC)
                    else:
                        contains_data = not entry & OFLAG_ZERO
                    if not contains_data:
                        _eprint(f"{'Repairing' if fix & FIX_ERRORS else 'ERROR'} "
                                f"offset={offset:x}: Preallocated cluster is not properly "
                                "aligned; L2 entry corrupted.")
                        if fix & FIX_ERRORS and self._fix_l2_entry_by_zero(l2_offset, table, i,
                                                                           active):
                            continue
                    else:
                        _eprint(f"ERROR offset={offset:x}: Data cluster is not properly "
                                "aligned; L2 entry corrupted.")
                if frag_info:
                    res.bfi.allocated_clusters += 1
                    if next_contiguous and offset != next_contiguous:
                        res.bfi.fragmented_clusters += 1
                    next_contiguous = offset + self.cs
                if not self.data_file:
                    self.inc_refcounts(imrt, offset, self.cs)
            elif ctype == ClusterType.UNALLOCATED:
                if bitmap & BITMAP_ALL_ALLOC:
                    res.corruptions += 1
                    _eprint("ERROR: Unallocated cluster has non-zero subcluster allocation map")

    def check_l1(self, imrt: Imrt, l1_offset: int, l1_size: int, frag_info: bool,
                 fix: int, active: bool) -> None:
        """check_refcounts_l1."""
        s, res = self.s, self.res
        if not l1_size:
            return
        self.inc_refcounts(imrt, l1_offset, l1_size * 8)
        try:
            raw = io.pread(s.file, l1_offset, l1_size * 8)
        except BlockError:
            _eprint("ERROR: I/O error in check_refcounts_l1")
            res.check_errors += 1
            raise
        for l1e in struct.unpack(f">{l1_size}Q", raw):
            if not l1e:
                continue
            if l1e & L1E_RESERVED_MASK:
                _eprint(f"ERROR found L1 entry with reserved bits set: {l1e:x}")
                res.corruptions += 1
            l2_offset = l1e & L1E_OFFSET_MASK
            self.inc_refcounts(imrt, l2_offset, self.cs)
            if l2_offset & (self.cs - 1):
                _eprint(f"ERROR l2_offset={l2_offset:x}: Table is not cluster aligned; "
                        "L1 entry corrupted")
                res.corruptions += 1
            self.check_l2(imrt, l2_offset, frag_info, fix, active)

    # ------------------------------------------------ refcount structures
    def check_refblocks(self, imrt: Imrt, fix: int) -> bool:
        """check_refblocks: account for every refblock; True when a rebuild is needed."""
        s, res = self.s, self.res
        rebuild = False
        indices = range(s.refcount_table_size)
        if imrt.size:  # a zero entry then has nothing to count or report
            indices = compress(indices, s.refcount_table[:s.refcount_table_size])
        for i in indices:
            entry = s.refcount_table[i]
            offset = entry & REFT_OFFSET_MASK
            cluster = offset >> s.cluster_bits
            if entry & REFT_RESERVED_MASK:
                _eprint(f"ERROR refcount table entry {i} has reserved bits set")
                res.corruptions += 1
                rebuild = True
                continue
            if offset & (self.cs - 1):
                _eprint(f"ERROR refcount block {i} is not cluster aligned; refcount "
                        "table entry corrupted")
                res.corruptions += 1
                rebuild = True
                continue
            if cluster >= imrt.size:
                res.corruptions += 1
                _eprint(f"{'Repairing' if fix & FIX_ERRORS else 'ERROR'} refcount block "
                        f"{i} is outside image")
                if fix & FIX_ERRORS:
                    if offset > (1 << 63) - 1 - self.cs:
                        rebuild = True
                        _eprint(f"ERROR could not resize image: {_strerror(errno.EINVAL)}")
                        continue
                    try:
                        io.truncate(s.file, offset + self.cs, False, "off")
                        size = io.getlength(s.file)
                    except BlockError as e:
                        from emulator.report import error_report
                        error_report(e.message)
                        rebuild = True
                        _eprint(f"ERROR could not resize image: {_strerror(e.errno)}")
                        continue
                    imrt.grow(-(-size // self.cs))
                    if cluster >= imrt.size:
                        rebuild = True
                        _eprint(f"ERROR could not resize image: {_strerror(errno.EINVAL)}")
                        continue
                    res.corruptions -= 1
                    res.corruptions_fixed += 1
                    self.inc_refcounts(imrt, offset, self.cs)
                continue
            if offset:
                self.inc_refcounts(imrt, offset, self.cs)
                if imrt.get(cluster) != 1:
                    _eprint(f"ERROR refcount block {i} refcount={imrt.get(cluster)}")
                    res.corruptions += 1
                    rebuild = True
        return rebuild

    def calculate_refcounts(self, imrt: Imrt, fix: int) -> bool:
        """calculate_refcounts: fill ``imrt``; True when a rebuild is needed."""
        s, res = self.s, self.res
        self.inc_refcounts(imrt, 0, self.cs)
        self.check_l1(imrt, s.l1_table_offset, s.l1_size, True, fix, True)
        if self.data_file and s.nb_snapshots:
            _eprint(f"ERROR {s.nb_snapshots} snapshots in image with data file")
            res.corruptions += 1
        for sn in s.snapshots:
            if sn.l1_table_offset & (self.cs - 1):
                _eprint(f"ERROR snapshot {sn.id_str} ({sn.name}) l1_offset="
                        f"{_hash_x(sn.l1_table_offset)}: L1 table is not cluster aligned; "
                        "snapshot table entry corrupted")
                res.corruptions += 1
                continue
            if sn.l1_size > QCOW_MAX_L1_SIZE // 8:
                _eprint(f"ERROR snapshot {sn.id_str} ({sn.name}) l1_size="
                        f"{_hash_x(sn.l1_size)}: L1 table is too large; snapshot table "
                        "entry corrupted")
                res.corruptions += 1
                continue
            self.check_l1(imrt, sn.l1_table_offset, sn.l1_size, False, fix, False)
        self.inc_refcounts(imrt, s.snapshots_offset, s.snapshots_size)
        self.inc_refcounts(imrt, s.refcount_table_offset, s.refcount_table_size * 8)
        if getattr(s, "crypto_header_length", 0):  # the LUKS header clusters
            self.inc_refcounts(imrt, s.crypto_header_offset, s.crypto_header_length)
        self.check_bitmaps(imrt)
        return self.check_refblocks(imrt, fix)

    def check_bitmaps(self, imrt: Imrt) -> None:
        """qcow2_check_bitmaps_refcounts: the bitmap directory, tables and data clusters."""
        from emulator.qcow2 import bitmap_directory as bd
        s, res = self.s, self.res
        payload = getattr(s, "bitmaps_extension", None)
        if payload is None or not s.autoclear_features & AUTOCLEAR_BITMAPS:
            return
        nb, dir_size, dir_offset = bd.extension_fields(payload)
        if not nb:
            return
        self.inc_refcounts(imrt, dir_offset, dir_size)
        try:
            entries = bd.load_directory(s, nb, dir_offset, dir_size)
        except BlockError:
            res.corruptions += 1
            raise BlockError(errno.EINVAL) from None
        for e in entries:
            self.inc_refcounts(imrt, e.table_offset, e.table_size * 8)
            try:
                table = bd.load_table(s, e)
            except BlockError:
                res.corruptions += 1
                raise
            for entry in table:
                offset = entry & bd.TABLE_ENTRY_OFFSET_MASK
                if offset:
                    self.inc_refcounts(imrt, offset, self.cs)

    def compare_refcounts(self, imrt: Imrt, fix: int) -> tuple[bool, int]:
        """compare_refcounts: (rebuild needed, highest used cluster)."""
        s, res = self.s, self.res
        rebuild = False
        highest = 0
        size, rbs = imrt.size, s.refcount_block_size
        zeros = counts = [0] * rbs
        stored_refcounts = _StoredRefcounts(s, size)
        i = -1
        while i + 1 < size:
            i += 1
            if not i & (rbs - 1):
                index = i >> s.refcount_block_bits
                counts = imrt.block(index) or zeros
                if counts is zeros and not _refblock_offset(s, index):
                    # nothing counted, nothing stored: on to the next block with either
                    i = min(size, _next_block_in_use(s, imrt, index) << s.refcount_block_bits) - 1
                    continue
            try:
                stored = stored_refcounts.get(i)
            except BlockError as e:
                _eprint(f"Can't get refcount for cluster {i}: {_strerror(e.errno)}")
                res.check_errors += 1
                continue
            block = stored_refcounts.block
            if block is not None and not i & (s.refcount_block_size - 1):
                end = min(size, i + s.refcount_block_size)
                if block[:end - i] == counts[:end - i]:  # the whole block agrees
                    down = range(end - 1 - i, -1, -1)
                    highest = i + next(compress(down, map(counts.__getitem__, down)),
                                       highest - i)
                    i = end - 1
                    continue
            counted = counts[i & (rbs - 1)]
            if stored > 0 or counted > 0:
                highest = i
            if stored == counted:
                continue
            fixed: Optional[str] = None
            if stored == 0:
                rebuild = True
            elif stored > counted and fix & FIX_LEAKS:
                fixed = "leaks_fixed"
            elif stored < counted and fix & FIX_ERRORS:
                fixed = "corruptions_fixed"
            label = "Repairing" if fixed else ("ERROR" if stored < counted else "Leaked")
            _eprint(f"{label} cluster {i} refcount={stored} reference={counted}")
            if fixed:
                stored_refcounts.forget()
                try:
                    rc.update_refcount(s, i << s.cluster_bits, 1, abs(stored - counted),
                                       stored > counted, rc.DISCARD_ALWAYS)
                    setattr(res, fixed, getattr(res, fixed) + 1)
                    continue
                except (BlockError, rc.Again):
                    pass
            if stored < counted:
                res.corruptions += 1
            else:
                res.leaks += 1
        return rebuild, highest

    # ------------------------------------------------ OFLAG_COPIED
    def check_oflag_copied(self, fix: int) -> None:
        """check_oflag_copied over the active L1 table and its L2 tables."""
        s, res = self.s, self.res
        if fix & FIX_ERRORS:
            repair = True
        elif fix & FIX_LEAKS:
            repair = not res.check_errors and not res.corruptions and not res.leaks
        else:
            repair = False
        esz = entry_size(self.extended)
        stored_refcounts = _StoredRefcounts(s, -(-io.getlength(s.file) // self.cs))
        for i in range(s.l1_size):
            l1e = s.l1_table[i]
            l2_offset = l1e & L1E_OFFSET_MASK
            if not l2_offset:
                continue
            try:
                count = stored_refcounts.get(l2_offset >> s.cluster_bits)
            except BlockError:
                continue
            if (count == 1) != bool(l1e & OFLAG_COPIED):
                res.corruptions += 1
                _eprint(f"{'Repairing' if repair else 'ERROR'} OFLAG_COPIED L2 cluster: "
                        f"l1_index={i} l1_entry={l1e:x} refcount={count}")
                if repair:
                    s.l1_table[i] = l1e | OFLAG_COPIED if count == 1 else l1e & ~OFLAG_COPIED
                    try:
                        from emulator.qcow2.l1_table import write_l1_entry
                        ol.pre_write_overlap_check(s, ol.OL_ACTIVE_L1,
                                                   s.l1_table_offset + 8 * i, 8)
                        write_l1_entry(s, i)
                        io.flush(s.file)
                    except BlockError:
                        res.check_errors += 1
                        raise
                    res.corruptions -= 1
                    res.corruptions_fixed += 1
            try:
                table = bytearray(io.pread(s.file, l2_offset, self.l2_entries * esz))
            except BlockError as e:
                _eprint(f"ERROR: Could not read L2 table: {_strerror(e.errno)}")
                res.check_errors += 1
                raise
            dirty = 0
            for j in used_entries(table, self.l2_entries, self.extended):
                entry, _bitmap = get_entry(table, j, self.extended)
                if cluster_type(entry, self.extended, self.data_file) not in (
                        ClusterType.NORMAL, ClusterType.ZERO_ALLOC):
                    continue
                if self.data_file:
                    count = 1
                else:
                    try:
                        count = stored_refcounts.get((entry & L2E_OFFSET_MASK) >> s.cluster_bits)
                    except BlockError:
                        continue
                if (count == 1) != bool(entry & OFLAG_COPIED):
                    res.corruptions += 1
                    _eprint(f"{'Repairing' if repair else 'ERROR'} OFLAG_COPIED data cluster: "
                            f"l2_entry={entry:x} refcount={count}")
                    if repair:
                        new = entry | OFLAG_COPIED if count == 1 else entry & ~OFLAG_COPIED
                        struct.pack_into(">Q", table, j * esz, new)
                        dirty += 1
            if dirty:
                try:
                    ol.pre_write_overlap_check(s, ol.OL_ACTIVE_L2, l2_offset, self.cs)
                except BlockError as e:
                    _eprint("ERROR: Could not write L2 table; metadata overlap check failed: "
                            f"{_strerror(e.errno)}")
                    res.check_errors += 1
                    raise
                try:
                    io.pwrite(s.file, l2_offset, bytes(table[:self.cs]))
                except BlockError as e:
                    _eprint(f"ERROR: Could not write L2 table: {_strerror(e.errno)}")
                    res.check_errors += 1
                    raise
                s.l2_cache.discard(l2_offset)
                res.corruptions -= dirty
                res.corruptions_fixed += dirty


class _StoredRefcounts:
    """qcow2_get_refcount over consecutive clusters: the refcount block in use is
    decoded once (up to cluster ``limit``), and repeated cache hits on it are
    not repeated (they change nothing but its recency, which stays the highest)."""

    def __init__(self, s, limit: int) -> None:
        self.s = s
        self.limit = limit
        self.index = -1
        #: refcounts of block ``index`` from its first cluster on; None where
        #: get_refcount is asked each time
        self.block: Optional[list[int]] = None

    def forget(self) -> None:
        """The refcounts may change: ask the cache again next time."""
        self.index = -1
        self.block = None

    def get(self, cluster: int) -> int:
        s = self.s
        index = cluster >> s.refcount_block_bits
        if index != self.index:
            self.forget()
            offset = s.refcount_table[index] & REFT_OFFSET_MASK \
                if index < s.refcount_table_size else 0
            count = max(0, min(s.refcount_block_size,
                               self.limit - (index << s.refcount_block_bits)))
            if not offset:
                self.block = [0] * count
            elif not offset & (s.cluster_size - 1):
                self.block = rc.refcounts_in_block(s.refcount_cache.get(offset),
                                                   s.refcount_order, count)
            self.index = index
        j = cluster & (s.refcount_block_size - 1)
        if self.block is None or j >= len(self.block):
            return rc.get_refcount(s, cluster)
        return self.block[j]


def _refblock_offset(s, index: int) -> int:
    """The refcount table's offset for refcount block ``index`` (0: none)."""
    return s.refcount_table[index] & REFT_OFFSET_MASK if index < s.refcount_table_size else 0


def _next_block_in_use(s, imrt: Imrt, index: int) -> int:
    """The next refcount block index after ``index`` that has counted references
    or a refcount block on disk (past the end when there is none)."""
    made = imrt.next_block(index)
    limit = min(s.refcount_table_size, made if made is not None else 1 << 62)
    on_disk = next((j for j in range(index + 1, limit) if _refblock_offset(s, j)), None)
    if on_disk is not None:
        return on_disk
    return made if made is not None else 1 << 62


def _compressed_mask(cluster_bits: int) -> tuple[int, int, int]:
    from emulator.qcow2.l2_entry import compressed_layout
    return compressed_layout(cluster_bits)


def _hash_x(v: int) -> str:
    """printf's %#x: '0' for zero, else 0x-prefixed hex."""
    return f"{v:#x}" if v else "0"


def _strerror(err: int) -> str:
    import os
    return os.strerror(err)


def check_refcounts(s, res: CheckResult, fix: int) -> None:
    """qcow2_check_refcounts: fills ``res``; raises BlockError where QEMU returns -errno."""
    c = _Checker(s, res)
    size = io.getlength(s.file)
    nb_clusters = -(-size // c.cs)
    if nb_clusters > (1 << 31) - 1:
        res.check_errors += 1
        raise BlockError(errno.EFBIG)
    res.bfi.total_clusters = -(-io.getlength(s) // c.cs)
    imrt = Imrt(nb_clusters, s.refcount_block_bits)
    rebuild = c.calculate_refcounts(imrt, fix)
    pre_compare = res.copy()
    rebuild2, highest = c.compare_refcounts(imrt, 0)
    rebuild = rebuild or rebuild2
    if rebuild and fix & FIX_ERRORS:
        old = res.copy()
        fresh_leaks = 0
        _eprint("Rebuilding refcount structure")
        try:
            rebuild_refcount_structure(s, imrt)
        except BlockError as e:
            from emulator.report import error_report
            error_report(e.message)
            raise
        res.corruptions = 0
        res.leaks = 0
        imrt = Imrt(imrt.size, imrt.bits)
        c.calculate_refcounts(imrt, 0)
        if fix & FIX_LEAKS:
            saved = res.copy()
            c.res = res2 = CheckResult()
            rebuild_again, highest = c.compare_refcounts(imrt, FIX_LEAKS)
            if rebuild_again:
                _eprint("ERROR rebuilt refcount structure is still broken")
            fresh_leaks = res2.leaks
            c.res = res
            _assign(res, saved)
        if res.corruptions < old.corruptions:
            res.corruptions_fixed += old.corruptions - res.corruptions
        if res.leaks < old.leaks:
            res.leaks_fixed += old.leaks - res.leaks
        res.leaks += fresh_leaks
    elif fix:
        if rebuild:
            _eprint("ERROR need to rebuild refcount structures")
            res.check_errors += 1
            raise BlockError(errno.EIO)
        if res.leaks or res.corruptions:
            _assign(res, pre_compare)
            _, highest = c.compare_refcounts(imrt, fix)
    c.check_oflag_copied(fix)
    res.image_end_offset = (highest + 1) * c.cs


def _assign(dst: CheckResult, src: CheckResult) -> None:
    for name, value in vars(src.copy()).items():
        setattr(dst, name, value)


def check(s, fix: int = 0) -> CheckResult:
    """bdrv_co_check + qcow2_co_check_locked: check (and with ``fix`` repair) image ``s``.

    An image made unusable by a fatal corruption event fails with ENOMEDIUM.
    """
    if s.dead:
        raise BlockError(errno.ENOMEDIUM)
    result = CheckResult()
    snapshot_res = CheckResult()
    refcount_res = CheckResult()
    check_read_snapshot_table(s, snapshot_res, fix)
    try:
        check_refcounts(s, refcount_res, fix)
    finally:
        add_result(result, refcount_res, True)
    check_fix_snapshot_table(s, snapshot_res, fix)
    add_result(result, snapshot_res, False)
    if fix and result.check_errors == 0 and result.corruptions == 0:
        s.mark_clean()
        s.mark_consistent()
    return result
