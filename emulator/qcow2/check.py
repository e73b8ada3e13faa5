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
from dataclasses import dataclass, field
from typing import Optional

from emulator.block import io
from emulator.block.node import BlockError
from emulator.qcow2 import overlap as ol
from emulator.qcow2 import refcount as rc
from emulator.qcow2.l2_entry import (
    BITMAP_ALL_ALLOC, BITMAP_ALL_ZEROES, L2E_OFFSET_MASK, L2E_STD_RESERVED_MASK,
    OFLAG_COPIED, OFLAG_ZERO, ClusterType, cluster_type, compressed_host_range,
    entry_size, get_entry,
)
from emulator.qcow2.header import AUTOCLEAR_BITMAPS, L1E_OFFSET_MASK, L1E_RESERVED_MASK, \
    QCOW_MAX_L1_SIZE, REFT_OFFSET_MASK, REFT_RESERVED_MASK

FIX_LEAKS = 1
FIX_ERRORS = 2

#: offset of refcount_table_offset (followed by refcount_table_clusters) in the header
_HDR_REFTABLE = 48


@dataclass
class FragInfo:
    """QEMU's BlockFragInfo."""

    total_clusters: int = 0
    allocated_clusters: int = 0
    fragmented_clusters: int = 0
    compressed_clusters: int = 0


@dataclass
class CheckResult:
    """QEMU's BdrvCheckResult."""

    corruptions: int = 0
    leaks: int = 0
    check_errors: int = 0
    corruptions_fixed: int = 0
    leaks_fixed: int = 0
    image_end_offset: int = 0
    bfi: FragInfo = field(default_factory=FragInfo)

    def copy(self) -> "CheckResult":
        return CheckResult(self.corruptions, self.leaks, self.check_errors,
                           self.corruptions_fixed, self.leaks_fixed,
                           self.image_end_offset, FragInfo(**vars(self.bfi)))


def _eprint(msg: str) -> None:
    err = sys.stderr
    err.write(msg + "\n")
    err.flush()


class _Imrt:
    """The in-memory refcount table: one counter per host cluster, growable."""

    def __init__(self, nb_clusters: int) -> None:
        self.counts: list[int] = [0] * nb_clusters

    @property
    def size(self) -> int:
        return len(self.counts)

    def grow(self, new_size: int) -> None:
        if new_size > len(self.counts):
            self.counts.extend([0] * (new_size - len(self.counts)))

    def get(self, i: int) -> int:
        return self.counts[i] if i < len(self.counts) else 0


class _Checker:
    """State of one qcow2_check_refcounts run over the open image ``s``."""

    def __init__(self, s, res: CheckResult) -> None:
        self.s = s
        self.res = res
        self.cs = s.cluster_size
        self.extended = bool(s.extended_l2)
        self.l2_entries = self.cs // entry_size(self.extended)

    # ------------------------------------------------ in-memory refcounts
    def inc_refcounts(self, imrt: _Imrt, offset: int, size: int) -> None:
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
        start = offset & ~(self.cs - 1)
        last = (offset + size - 1) & ~(self.cs - 1)
        for cluster_offset in range(start, last + 1, self.cs):
            k = cluster_offset >> s.cluster_bits
            if k >= imrt.size:
                imrt.grow(k + 1)
            count = imrt.counts[k]
            if count == s.refcount_max:
                _eprint(f"ERROR: overflow cluster offset=0x{cluster_offset:x}")
                _eprint("Use qemu-img amend to increase the refcount entry width or "
                        "qemu-img convert to create a clean copy if the image cannot "
                        "be opened for writing")
                res.corruptions += 1
                continue
            imrt.counts[k] = count + 1

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

    def check_l2(self, imrt: _Imrt, l2_offset: int, frag_info: bool, fix: int,
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
        for i in range(self.l2_entries):
            entry, bitmap = get_entry(table, i, self.extended)
            ctype = cluster_type(entry, self.extended)
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
                self.inc_refcounts(imrt, offset, self.cs)
            elif ctype == ClusterType.UNALLOCATED:
                if bitmap & BITMAP_ALL_ALLOC:
                    res.corruptions += 1
                    _eprint("ERROR: Unallocated cluster has non-zero subcluster allocation map")

    def check_l1(self, imrt: _Imrt, l1_offset: int, l1_size: int, frag_info: bool,
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
    def check_refblocks(self, imrt: _Imrt, fix: int) -> bool:
        """check_refblocks: account for every refblock; True when a rebuild is needed."""
        s, res = self.s, self.res
        rebuild = False
        for i in range(s.refcount_table_size):
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

    def calculate_refcounts(self, imrt: _Imrt, fix: int) -> bool:
        """calculate_refcounts: fill ``imrt``; True when a rebuild is needed."""
        s, res = self.s, self.res
        self.inc_refcounts(imrt, 0, self.cs)
        self.check_l1(imrt, s.l1_table_offset, s.l1_size, True, fix, True)
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
        self.check_bitmaps(imrt)
        return self.check_refblocks(imrt, fix)

    def check_bitmaps(self, imrt: _Imrt) -> None:
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

    def _stored_refcount(self, i: int) -> int:
        return rc.get_refcount(self.s, i)

    def compare_refcounts(self, imrt: _Imrt, fix: int) -> tuple[bool, int]:
        """compare_refcounts: (rebuild needed, highest used cluster)."""
        s, res = self.s, self.res
        rebuild = False
        highest = 0
        for i in range(imrt.size):
            try:
                stored = self._stored_refcount(i)
            except BlockError as e:
                _eprint(f"Can't get refcount for cluster {i}: {_strerror(e.errno)}")
                res.check_errors += 1
                continue
            counted = imrt.counts[i]
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

    # ------------------------------------------------ rebuild
    def _alloc_imrt(self, imrt: _Imrt, count: int, first_free: int) -> tuple[int, int]:
        """alloc_clusters_imrt: (offset, updated first free cluster)."""
        cluster = first_free
        first_gap = True
        contiguous = 0
        while cluster < imrt.size and contiguous < count:
            if not imrt.counts[cluster]:
                contiguous += 1
                if first_gap:
                    first_free = cluster
                    first_gap = False
            elif contiguous:
                contiguous = 0
            cluster += 1
        if contiguous < count:
            imrt.grow(cluster + count - contiguous)
        cluster -= contiguous
        for i in range(count):
            imrt.counts[cluster + i] = 1
        return cluster << self.s.cluster_bits, first_free

    def _refblock_bytes(self, imrt: _Imrt, index: int) -> bytes:
        s = self.s
        block = bytearray(self.cs)
        base = index << s.refcount_block_bits
        for j in range(s.refcount_block_size):
            v = imrt.get(base + j)
            if v:
                rc.set_refcount_in_block(block, j, s.refcount_order, v)
        return bytes(block)

    def _write_refblocks(self, imrt: _Imrt, first: int, end: int,
                         reftable: list[int]) -> bool:
        """rebuild_refcounts_write_refblocks: True when the reftable grew."""
        s = self.s
        first_free = 0
        grown = False
        cluster = first
        while cluster < end:
            if not imrt.get(cluster):
                cluster += 1
                continue
            index = cluster >> s.refcount_block_bits
            start = index << s.refcount_block_bits
            if len(reftable) > index and reftable[index]:
                block_offset = reftable[index]
            else:
                first_free = max(first_free, start)
                block_offset, first_free = self._alloc_imrt(imrt, 1, first_free)
                if block_offset // self.cs >= end:
                    end = block_offset // self.cs + 1
                if len(reftable) <= index:
                    entries = -(-((index + 1) * 8) // self.cs) * self.cs // 8
                    reftable.extend([0] * (entries - len(reftable)))
                    grown = True
                reftable[index] = block_offset
            try:
                ol.pre_write_overlap_check(s, 0, block_offset, self.cs)
                io.pwrite(s.file, block_offset, self._refblock_bytes(imrt, index))
            except BlockError as e:
                raise _context(e, "ERROR writing refblock") from None
            cluster = start + s.refcount_block_size
        return grown

    def rebuild(self, imrt: _Imrt) -> None:
        """rebuild_refcount_structure: new refblocks and reftable from ``imrt``.

        Failures raise BlockError whose message is QEMU's ("ERROR writing ...").
        """
        s, res = self.s, self.res
        s.refcount_cache.clear()
        reftable: list[int] = []
        try:
            self._write_refblocks(imrt, 0, imrt.size, reftable)
            while True:
                clusters = -(-len(reftable) * 8 // self.cs)
                table_offset, _ = self._alloc_imrt(imrt, clusters, 0)
                start = table_offset // self.cs
                if not self._write_refblocks(imrt, start, start + clusters, reftable):
                    break
        except BlockError:
            res.check_errors += 1
            raise
        try:
            ol.pre_write_overlap_check(s, 0, table_offset, len(reftable) * 8)
            io.pwrite(s.file, table_offset, struct.pack(f">{len(reftable)}Q", *reftable))
        except BlockError as e:
            raise _context(e, "ERROR writing reftable") from None
        try:
            io.pwrite(s.file, _HDR_REFTABLE, struct.pack(">QI", table_offset, clusters))
            io.flush(s.file)
        except BlockError as e:
            raise _context(e, "ERROR setting reftable") from None
        s.refcount_table = reftable
        s.refcount_table_offset = table_offset
        s.refcount_table_size = len(reftable)
        rc.update_max_refcount_table_index(s)

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
        for i in range(s.l1_size):
            l1e = s.l1_table[i]
            l2_offset = l1e & L1E_OFFSET_MASK
            if not l2_offset:
                continue
            try:
                count = self._stored_refcount(l2_offset >> s.cluster_bits)
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
            for j in range(self.l2_entries):
                entry, _bitmap = get_entry(table, j, self.extended)
                if cluster_type(entry, self.extended) not in (ClusterType.NORMAL,
                                                               ClusterType.ZERO_ALLOC):
                    continue
                try:
                    count = self._stored_refcount((entry & L2E_OFFSET_MASK) >> s.cluster_bits)
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


def _context(e: BlockError, what: str) -> BlockError:
    """error_setg_errno: 'WHAT: strerror'."""
    return BlockError(e.errno, f"{what}: {_strerror(e.errno)}")


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
    imrt = _Imrt(nb_clusters)
    rebuild = c.calculate_refcounts(imrt, fix)
    pre_compare = res.copy()
    rebuild2, highest = c.compare_refcounts(imrt, 0)
    rebuild = rebuild or rebuild2
    if rebuild and fix & FIX_ERRORS:
        old = res.copy()
        fresh_leaks = 0
        _eprint("Rebuilding refcount structure")
        try:
            c.rebuild(imrt)
        except BlockError as e:
            from emulator.report import error_report
            error_report(e.message)
            raise
        res.corruptions = 0
        res.leaks = 0
        imrt = _Imrt(imrt.size)
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


def _add_result(out: CheckResult, src: CheckResult, allocation_info: bool) -> None:
    """qcow2_add_check_result."""
    out.corruptions += src.corruptions
    out.leaks += src.leaks
    out.check_errors += src.check_errors
    out.corruptions_fixed += src.corruptions_fixed
    out.leaks_fixed += src.leaks_fixed
    if allocation_info:
        out.image_end_offset = src.image_end_offset
        out.bfi = FragInfo(**vars(src.bfi))


def _table_error(s, offset: int, entries: int) -> Optional[BlockError]:
    """qcow2_validate_table for the snapshot table."""
    from emulator.qcow2.snapshot_table import ENTRY_HEADER_SIZE, MAX_SNAPSHOTS
    if entries > MAX_SNAPSHOTS:
        return BlockError(errno.EFBIG, "snapshot table too large")
    if (1 << 63) - 1 - entries * ENTRY_HEADER_SIZE < offset or offset & (s.cluster_size - 1):
        return BlockError(errno.EINVAL, "snapshot table offset invalid")
    return None


def _report_err(prefix: str, e: BlockError) -> None:
    """error_reportf_err: 'PROG: PREFIXmessage' then the hint, if any."""
    from emulator.report import error_report
    error_report(prefix + e.message)
    if e.hint:
        sys.stderr.write(e.hint)
        sys.stderr.flush()


def _check_read_snapshot_table(s, res: CheckResult, fix: int) -> None:
    """qcow2_check_read_snapshot_table: (re)read the table, noting broken entries."""
    from emulator.qcow2.snapshot_table import MAX_SNAPSHOTS, read_snapshots
    try:
        nb, offset = struct.unpack(">IQ", io.pread(s.file, 60, 12))
    except BlockError as e:
        res.check_errors += 1
        _eprint("ERROR failed to read the snapshot table pointer from the image header: "
                f"{_strerror(e.errno)}")
        raise
    s.snapshots_offset, s.nb_snapshots = offset, nb
    reduced = 0
    if nb > MAX_SNAPSHOTS and fix & FIX_ERRORS:
        _eprint(f"Discarding {nb - MAX_SNAPSHOTS} overhanging snapshots")
        reduced += nb - MAX_SNAPSHOTS
        s.nb_snapshots = MAX_SNAPSHOTS
    err = _table_error(s, s.snapshots_offset, s.nb_snapshots)
    if err is not None:
        res.check_errors += 1
        _report_err("ERROR ", err)
        if s.nb_snapshots > MAX_SNAPSHOTS:
            sys.stderr.write(f"You can force-remove all {s.nb_snapshots - MAX_SNAPSHOTS} "
                             "overhanging snapshots with qemu-img check -r all\n")
        s.snapshots_offset = s.nb_snapshots = 0
        s.snapshots, s.snapshots_size = [], 0
        raise err
    try:
        table = read_snapshots(s, bool(fix & FIX_ERRORS))
    except BlockError as e:
        res.check_errors += 1
        _report_err("ERROR failed to read the snapshot table: ", e)
        s.snapshots_offset = s.nb_snapshots = 0
        s.snapshots, s.snapshots_size = [], 0
        raise
    s.snapshots, s.snapshots_size = table.snapshots, table.size
    s.nb_snapshots = len(table.snapshots)
    reduced += table.nb_clusters_reduced
    res.corruptions += reduced + table.extra_data_dropped
    if reduced:
        try:
            io.pwrite(s.file, 60, struct.pack(">I", s.nb_snapshots))
            io.flush(s.file)
        except BlockError as e:
            res.check_errors += 1
            _eprint(f"ERROR failed to update the snapshot count in the image header: "
                    f"{_strerror(e.errno)}")
            raise
        res.corruptions_fixed += reduced
        res.corruptions -= reduced
    if s.qcow_version >= 3:
        for i, sn in enumerate(s.snapshots):
            if sn.extra_data_size < 16:
                res.corruptions += 1
                _eprint(f"{'Repairing' if fix & FIX_ERRORS else 'ERROR'} snapshot table "
                        f"entry {i} is incomplete")


def _check_fix_snapshot_table(s, res: CheckResult, fix: int) -> None:
    """qcow2_check_fix_snapshot_table: rewrite the table when it had to be repaired."""
    from emulator.qcow2.snapshot_table import write_snapshots
    if res.corruptions and fix & FIX_ERRORS:
        try:
            write_snapshots(s, s.snapshots)
        except BlockError as e:
            res.check_errors += 1
            _eprint(f"ERROR failed to update snapshot table: {_strerror(e.errno)}")
            raise
        res.corruptions_fixed += res.corruptions
        res.corruptions = 0


def check(s, fix: int = 0) -> CheckResult:
    """qcow2_co_check_locked: check (and with ``fix`` repair) the open image ``s``."""
    result = CheckResult()
    snapshot_res = CheckResult()
    refcount_res = CheckResult()
    _check_read_snapshot_table(s, snapshot_res, fix)
    try:
        check_refcounts(s, refcount_res, fix)
    finally:
        _add_result(result, refcount_res, True)
    _check_fix_snapshot_table(s, snapshot_res, fix)
    _add_result(result, snapshot_res, False)
    if fix and result.check_errors == 0 and result.corruptions == 0:
        s.mark_clean()
        s.mark_consistent()
    return result
