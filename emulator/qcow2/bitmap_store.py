"""Persistent dirty bitmaps of a qcow2 node: load on open, store on close (qcow2-bitmap.c).

- ``load_dirty_bitmaps(s)`` -> True when the header was rewritten (the in-use
  flags were set in place); BlockError with QEMU's message on failure.
- ``store_dirty_bitmaps(s, release)`` writes every changed bitmap anew (data
  clusters, table, then a new directory) and frees the old clusters; BitmapError.
- ``reopen_bitmaps_ro(s)`` / ``reopen_bitmaps_rw(s)``: a reopen's bitmap part.
- ``remove_persistent(s, name)``, ``can_store_new(s, node_name, name, granularity)``,
  ``info_list(s)``, ``truncate_check(s)``: the driver callbacks of the same job.
"""
from __future__ import annotations

import errno
import os
import struct

from emulator.block import io
from emulator.block.node import BlockError
from emulator.qcow2 import bitmap_directory as bd
from emulator.qcow2 import bitmap_dirty as bdm
from emulator.qcow2.bitmap_directory import MAX_BITMAPS
from emulator.qcow2.bitmap_dirty import BitmapError
from emulator.qcow2.header import AUTOCLEAR_BITMAPS


def node_name(node) -> str:
    """bdrv_get_device_or_node_name of a qemu-img node: QEMU's automatic node
    names (#blockNNN) vary from run to run, so any such name will do."""
    return getattr(node, "node_name", None) or "#block100"


def _name(e) -> str:
    return e.name.decode("utf-8", "surrogateescape")


def _table_size(s, bm) -> int:
    return -(-bm.serialization_size() // s.cluster_size)


def _load_list(s) -> list:
    return bd.load_directory(s, s.nb_bitmaps, s.bitmap_directory_offset,
                             s.bitmap_directory_size)


def _load_bitmap(s, e) -> "bdm.DirtyBitmap":
    """load_bitmap: the in-memory bitmap of one entry (its data unless in use)."""
    bm = bdm.create(s, 1 << e.granularity_bits, _name(e))
    if e.flags & bd.FLAG_IN_USE:
        return bm
    try:
        table = bd.load_table(s, e)
    except BlockError as err:
        bdm.release(s, bm)
        raise BlockError(err.errno, f"Could not read bitmap_table table from image for "
                                    f"bitmap '{_name(e)}': {os.strerror(err.errno)}")
    cs = s.cluster_size
    if _table_size(s, bm) != e.table_size:
        bdm.release(s, bm)
        raise BlockError(errno.EINVAL, f"Could not read bitmap '{_name(e)}' from image: "
                                       f"{os.strerror(errno.EINVAL)}")
    for i, entry in enumerate(table):
        offset = entry & bd.TABLE_ENTRY_OFFSET_MASK
        if offset:
            bm.load_chunk(i, io.pread(s.file, offset, cs))
        elif entry & bd.TABLE_ENTRY_FLAG_ALL_ONES:
            bm.set_chunk_ones(i, cs)
    return bm


def load_dirty_bitmaps(s) -> bool:
    """qcow2_load_dirty_bitmaps: create the in-memory bitmaps, mark them in use."""
    if not s.nb_bitmaps:
        return False
    entries = _load_list(s)
    created = []
    needs_update = False
    try:
        for e in entries:
            bm = _load_bitmap(s, e)
            created.append(bm)
            bm.persistent = True
            if e.flags & bd.FLAG_IN_USE:
                bm.inconsistent = True
            else:
                e.flags |= bd.FLAG_IN_USE
                needs_update = True
            if not e.flags & bd.FLAG_AUTO:
                bm.enabled = False
        if needs_update and not s.read_only:
            try:
                _update_in_place(s, entries)
            except BlockError as err:
                raise BlockError(err.errno, f"Can't update bitmap directory: "
                                            f"{os.strerror(err.errno)}")
            return True
    except BlockError:
        for bm in created:
            bdm.release(s, bm)
        raise
    if s.read_only:
        for bm in created:
            bm.readonly = True
    return False


def _header_sync(s) -> None:
    """update_header_sync: the header, then a flush of the file (none with
    cache=unsafe, i.e. BDRV_O_NO_FLUSH, recorded as ``s.no_flush``)."""
    s.update_header()
    if not getattr(s, "no_flush", False):
        io.flush(s.file)


def _update_in_place(s, entries: list) -> None:
    """update_ext_header_and_dir_in_place: autoclear off, directory, autoclear on."""
    if not s.autoclear_features & AUTOCLEAR_BITMAPS or len(entries) != s.nb_bitmaps:
        raise BlockError(errno.EINVAL)
    s.autoclear_features &= ~AUTOCLEAR_BITMAPS
    _header_sync(s)
    _write_directory(s, entries, s.bitmap_directory_offset)
    _header_sync(s)
    s.autoclear_features |= AUTOCLEAR_BITMAPS
    _header_sync(s)


def _write_directory(s, entries: list, offset: int | None) -> tuple[int, int]:
    """bitmap_list_store: (offset, size) of the directory; a new one unless ``offset``."""
    from emulator.qcow2.allocator import alloc_clusters, free_clusters
    from emulator.qcow2.overlap import OL_BITMAP_DIRECTORY, pre_write_overlap_check
    from emulator.qcow2.refcount import DISCARD_OTHER
    size = sum(bd.entry_size(len(e.name)) for e in entries)
    if size == 0 or size > bd.MAX_DIRECTORY_SIZE:
        raise BlockError(errno.EINVAL)
    if offset is not None and (size != s.bitmap_directory_size or not offset):
        raise BlockError(errno.EINVAL)
    if not all(bd.entry_valid(s, e) for e in entries):
        raise BlockError(errno.EINVAL)
    data = b"".join(bd.pack_entry(e) for e in entries)
    in_place = offset is not None
    if not in_place:
        offset = alloc_clusters(s, size)
    try:
        pre_write_overlap_check(s, OL_BITMAP_DIRECTORY if in_place else 0, offset, size)
        io.pwrite(s.file, offset, data)
    except BlockError:
        if not in_place:
            free_clusters(s, offset, size, DISCARD_OTHER)
        raise
    return offset, size


def _update_ext_header_and_dir(s, entries: list) -> None:
    """update_ext_header_and_dir: a new directory, the header, the old one freed."""
    from emulator.qcow2.allocator import free_clusters
    from emulator.qcow2.refcount import DISCARD_OTHER
    old = (s.bitmap_directory_offset, s.bitmap_directory_size, s.nb_bitmaps,
           s.autoclear_features)
    new_offset = new_size = 0
    if entries:
        if len(entries) > MAX_BITMAPS:
            raise BlockError(errno.EINVAL)
        new_offset, new_size = _write_directory(s, entries, None)
        try:
            s.write_caches()
        except BlockError:
            free_clusters(s, new_offset, new_size, DISCARD_OTHER)
            raise
        s.autoclear_features |= AUTOCLEAR_BITMAPS
    else:
        s.autoclear_features &= ~AUTOCLEAR_BITMAPS
    s.bitmap_directory_offset, s.bitmap_directory_size = new_offset, new_size
    s.nb_bitmaps = len(entries)
    try:
        _header_sync(s)
    except BlockError:
        if new_offset:
            free_clusters(s, new_offset, new_size, DISCARD_OTHER)
        (s.bitmap_directory_offset, s.bitmap_directory_size, s.nb_bitmaps,
         s.autoclear_features) = old
        raise
    if old[1]:
        free_clusters(s, old[0], old[1], DISCARD_OTHER)


def _clear_table(s, table: list) -> None:
    """clear_bitmap_table: free the data clusters a table points to."""
    from emulator.qcow2.allocator import free_clusters
    from emulator.qcow2.refcount import DISCARD_ALWAYS
    for i, entry in enumerate(table):
        addr = entry & bd.TABLE_ENTRY_OFFSET_MASK
        if addr:
            free_clusters(s, addr, s.cluster_size, DISCARD_ALWAYS)
            table[i] = 0


def _free_bitmap_clusters(s, e) -> None:
    """free_bitmap_clusters: the data clusters, then the table itself (an
    unreadable table leaves them leaked, as QEMU ignores the failure)."""
    from emulator.qcow2.allocator import free_clusters
    from emulator.qcow2.refcount import DISCARD_OTHER
    try:
        table = bd.load_table(s, e)
    except BlockError:
        return
    _clear_table(s, table)
    free_clusters(s, e.table_offset, e.table_size * 8, DISCARD_OTHER)
    e.table_offset = e.table_size = 0


def _check_constraints(s, name: str, granularity: int) -> None:
    """check_constraints_on_bitmap."""
    gbits = granularity.bit_length() - 1
    if gbits > bd.MAX_GRANULARITY_BITS:
        raise BitmapError(f"Granularity exceeds maximum ({1 << bd.MAX_GRANULARITY_BITS} bytes)")
    if gbits < bd.MIN_GRANULARITY_BITS:
        raise BitmapError(f"Granularity is under minimum ({1 << bd.MIN_GRANULARITY_BITS} bytes)")
    length = io.getlength(s)
    nbytes = -(-(-(-length // granularity)) // 8)
    if nbytes > bd.MAX_PHYS_SIZE or nbytes > bd.MAX_TABLE_SIZE * s.cluster_size:
        raise BitmapError("Too much space will be occupied by the bitmap. "
                          "Use larger granularity")
    if len(name.encode("utf-8", "surrogateescape")) > bd.MAX_NAME_SIZE:
        raise BitmapError(f"Name length exceeds maximum ({bd.MAX_NAME_SIZE} characters)")


def _store_bitmap_data(s, bm) -> list:
    """store_bitmap_data: one new cluster per table entry holding a dirty bit."""
    from emulator.qcow2.allocator import alloc_clusters
    from emulator.qcow2.overlap import pre_write_overlap_check
    cs = s.cluster_size
    size = _table_size(s, bm)
    if size > bd.MAX_TABLE_SIZE or size * cs > bd.MAX_PHYS_SIZE:
        raise BitmapError(f"Bitmap '{bm.name}' is too big")
    table = [0] * size
    try:
        for index in bm.dirty_chunks(cs):
            try:
                off = alloc_clusters(s, cs)
            except BlockError as err:
                raise BitmapError(f"Failed to allocate clusters for bitmap '{bm.name}': "
                                  f"{os.strerror(err.errno)}")
            table[index] = off
            try:
                pre_write_overlap_check(s, 0, off, cs)
            except BlockError as err:
                raise BitmapError(f"Qcow2 overlap check failed: {os.strerror(err.errno)}")
            try:
                io.pwrite(s.file, off, bm.chunk(index, cs))
            except BlockError as err:
                raise BitmapError(f"Failed to write bitmap '{bm.name}' to file: "
                                  f"{os.strerror(err.errno)}")
    except BitmapError:
        _clear_table(s, table)
        raise
    return table


def _store_bitmap(s, e) -> None:
    """store_bitmap: the data clusters, then the table, into entry ``e``."""
    from emulator.qcow2.allocator import alloc_clusters, free_clusters
    from emulator.qcow2.overlap import pre_write_overlap_check
    from emulator.qcow2.refcount import DISCARD_OTHER
    bm = e.bitmap
    table = _store_bitmap_data(s, bm)
    nbytes = len(table) * 8
    offset = 0
    try:
        try:
            offset = alloc_clusters(s, nbytes)
        except BlockError as err:
            raise BitmapError(f"Failed to allocate clusters for bitmap '{bm.name}': "
                              f"{os.strerror(err.errno)}")
        try:
            pre_write_overlap_check(s, 0, offset, nbytes)
        except BlockError as err:
            raise BitmapError(f"Qcow2 overlap check failed: {os.strerror(err.errno)}")
        try:
            io.pwrite(s.file, offset, struct.pack(f">{len(table)}Q", *table))
        except BlockError as err:
            raise BitmapError(f"Failed to write bitmap '{bm.name}' to file: "
                              f"{os.strerror(err.errno)}")
    except BitmapError:
        _clear_table(s, table)
        if offset:
            free_clusters(s, offset, nbytes, DISCARD_OTHER)
        raise
    e.table_offset, e.table_size = offset, len(table)


def _find(entries: list, name: str):
    raw = name.encode("utf-8", "surrogateescape")
    for e in entries:
        if e.name == raw:
            return e
    return None


def store_dirty_bitmaps(s, release: bool) -> None:
    """qcow2_store_persistent_dirty_bitmaps; BitmapError with QEMU's message."""
    try:
        entries = _load_list(s) if s.nb_bitmaps else []
    except BlockError as err:
        raise BitmapError(err.message or os.strerror(err.errno))
    nb, dir_size = s.nb_bitmaps, s.bitmap_directory_size
    drop = []
    need_write = False
    try:
        for bm in list(getattr(s, "dirty_bitmaps", None) or ()):
            if not bm.persistent or bm.inconsistent:
                continue
            if bm.readonly:
                e = _find(entries, bm.name)
                if e is not None:
                    e.bitmap = bm
                continue
            need_write = True
            try:
                _check_constraints(s, bm.name, bm.granularity)
            except BitmapError as err:
                raise BitmapError(f"Bitmap '{bm.name}' doesn't satisfy the constraints: "
                                  f"{err.message}")
            e = _find(entries, bm.name)
            if e is None:
                nb += 1
                if nb > MAX_BITMAPS:
                    raise BitmapError("Too many persistent bitmaps")
                dir_size += bd.entry_size(len(bm.name.encode("utf-8", "surrogateescape")))
                if dir_size > bd.MAX_DIRECTORY_SIZE:
                    raise BitmapError("Bitmap directory is too large")
                e = bd.BitmapEntry(0, 0, 0, 0, bm.name.encode("utf-8", "surrogateescape"))
                entries.append(e)
            else:
                if not e.flags & bd.FLAG_IN_USE:
                    raise BitmapError(f"Bitmap '{bm.name}' already exists in the image")
                drop.append(bd.BitmapEntry(e.table_offset, e.table_size, 0, 0, b""))
                e.table_offset = e.table_size = 0
            e.flags = bd.FLAG_AUTO if bm.enabled else 0
            e.granularity_bits = bm.granularity_bits
            e.bitmap = bm
        if need_write:
            if s.read_only:
                raise BitmapError("No write access")
            for e in entries:
                if e.bitmap is None or e.bitmap.readonly:
                    continue
                _store_bitmap(s, e)
            try:
                _update_ext_header_and_dir(s, entries)
            except BlockError as err:
                raise BitmapError(f"Failed to update bitmap extension: "
                                  f"{os.strerror(err.errno)}")
            for t in drop:
                _free_bitmap_clusters(s, t)
    except BitmapError:
        for e in entries:
            if e.bitmap is not None and e.table_offset and not e.bitmap.readonly:
                _free_bitmap_clusters(s, e)
        raise
    if release:
        for e in entries:
            if e.bitmap is not None:
                bdm.release(s, e.bitmap)


def remove_persistent(s, name: str) -> None:
    """qcow2_co_remove_persistent_dirty_bitmap; BitmapError with QEMU's message."""
    if not s.nb_bitmaps:
        return
    try:
        entries = _load_list(s)
    except BlockError as err:
        raise BitmapError(err.message)
    e = _find(entries, name)
    if e is None:
        return
    entries.remove(e)
    try:
        _update_ext_header_and_dir(s, entries)
    except BlockError as err:
        raise BitmapError(f"Failed to update bitmap extension: {os.strerror(err.errno)}")
    _free_bitmap_clusters(s, e)


def can_store_new(s, node_name: str, name: str, granularity: int) -> None:
    """qcow2_co_can_store_new_dirty_bitmap; BitmapError with QEMU's message."""
    if bdm.find(s, name) is not None:
        raise BitmapError(f"Bitmap already exists: {name}")
    try:
        if s.qcow_version < 3:
            raise BitmapError("Cannot store dirty bitmaps in qcow2 v2 files")
        _check_constraints(s, name, granularity)
        persistent = [bm for bm in getattr(s, "dirty_bitmaps", None) or () if bm.persistent]
        size = sum(bd.entry_size(len(bm.name.encode("utf-8", "surrogateescape")))
                   for bm in persistent)
        size += bd.entry_size(len(name.encode("utf-8", "surrogateescape")))
        if len(persistent) + 1 > MAX_BITMAPS:
            raise BitmapError("Maximum number of persistent bitmaps is already reached")
        if size > bd.MAX_DIRECTORY_SIZE:
            raise BitmapError("Not enough space in the bitmap directory")
    except BitmapError as err:
        raise BitmapError(f"Can't make bitmap '{name}' persistent in '{node_name}': "
                          f"{err.message}")


def info_list(s) -> list:
    """qcow2_get_bitmap_info_list: [{"flags": [...], "name": ..., "granularity": ...}]."""
    if not s.nb_bitmaps:
        return []
    out = []
    for e in _load_list(s):
        flags = [f for bit, f in ((bd.FLAG_IN_USE, "in-use"), (bd.FLAG_AUTO, "auto"))
                 if e.flags & bit]
        out.append({"flags": flags, "name": _name(e), "granularity": 1 << e.granularity_bits})
    return out


def truncate_check(s) -> None:
    """qcow2_truncate_bitmaps_check: BlockError(ENOTSUP) when a bitmap blocks a resize."""
    if not s.nb_bitmaps:
        return
    for e in _load_list(s):
        bm = bdm.find(s, _name(e))
        if bm is None:
            raise BlockError(errno.ENOTSUP, "Cannot resize qcow2 with persistent bitmaps "
                                            "that were not loaded into memory")
        try:
            bm.check(bdm.BITMAP_DEFAULT)
        except BitmapError as err:
            raise BlockError(errno.ENOTSUP, err.message, err.hint)


def reopen_bitmaps_rw(s) -> None:
    """qcow2_reopen_bitmaps_rw: a node reopened read-write marks its loaded bitmaps
    in use and makes them writable; a failure is reported, the bitmaps stay read-only."""
    if not s.nb_bitmaps:
        return
    try:
        _reopen_rw(s)
    except (BlockError, BitmapError) as err:
        from emulator.cli.errors import report_err
        report_err(f"{node_name(s)}: Failed to make dirty bitmaps writable: {err.message}",
                   getattr(err, "hint", ""))


def _reopen_rw(s) -> None:
    entries = _load_list(s)
    readonly = []
    need_update = False
    for e in entries:
        bm = bdm.find(s, _name(e))
        if bm is None:
            raise BitmapError(f"Unexpected bitmap '{_name(e)}' in image '{s.filename}'")
        if not e.flags & bd.FLAG_IN_USE:
            if not bm.readonly:
                raise BitmapError(f"Corruption: bitmap '{bm.name}' is not marked IN_USE in "
                                  f"the image '{s.filename}' and not marked readonly in RAM")
            if bm.inconsistent:
                raise BitmapError(f"Corruption: bitmap '{bm.name}' is inconsistent but is "
                                  f"not marked IN_USE in the image '{s.filename}'")
            e.flags |= bd.FLAG_IN_USE
            need_update = True
        elif bm.readonly and not bm.inconsistent:
            raise BitmapError(f"Corruption: bitmap '{bm.name}' is marked IN_USE in the image "
                              f"'{s.filename}' but it is readonly and consistent in RAM")
        if bm.readonly:
            readonly.append(bm)
    if need_update:
        try:
            _update_in_place(s, entries)
        except BlockError as err:
            raise BitmapError(f"Cannot update bitmap directory: {os.strerror(err.errno)}")
    for bm in readonly:
        bm.readonly = False


def reopen_bitmaps_ro(s) -> None:
    """qcow2_reopen_bitmaps_ro: store the bitmaps (kept in memory), then make the
    persistent ones read-only; BlockError(EINVAL) with QEMU's message."""
    try:
        store_dirty_bitmaps(s, False)
    except BitmapError as err:
        raise BlockError(errno.EINVAL, err.message, err.hint)
    for bm in getattr(s, "dirty_bitmaps", None) or ():
        if bm.persistent:
            bm.readonly = True
