"""The block-dirty-bitmap-* commands on a node (block/monitor/bitmap-qmp-cmds.c),
as qemu-img bitmap and convert --bitmaps run them; errors are BitmapError."""
from __future__ import annotations

from emulator.qcow2 import bitmap_dirty as bdm
from emulator.qcow2.bitmap_dirty import BitmapError


def _is_qcow2(node) -> bool:
    return node.format_name == "qcow2"


def lookup(node, name: str) -> "bdm.DirtyBitmap":
    """block_dirty_bitmap_lookup."""
    bm = bdm.find(node, name)
    if bm is None:
        raise BitmapError(f"Dirty bitmap '{name}' not found")
    return bm


def add(node, name: str, granularity: int | None, disabled: bool = False) -> None:
    """qmp_block_dirty_bitmap_add with persistent=true; ``granularity`` None: the default."""
    from emulator.qcow2.bitmap_store import can_store_new, node_name
    if not name:
        raise BitmapError("Bitmap name cannot be empty")
    if granularity is not None:
        if granularity < 512 or granularity & (granularity - 1):
            raise BitmapError("Granularity must be power of 2 and at least 512")
    else:
        granularity = bdm.default_granularity(node)
    if not _is_qcow2(node):
        raise BitmapError(f"Can't store persistent bitmaps to {node_name(node)}: "
                          f"Operation not supported")
    can_store_new(node, node_name(node), name, granularity)
    bm = bdm.create(node, granularity, name)
    if disabled:
        bm.enabled = False
    bm.persistent = True


def remove(node, name: str) -> None:
    """qmp_block_dirty_bitmap_remove: from the image first, then from memory."""
    from emulator.qcow2.bitmap_store import remove_persistent
    bm = lookup(node, name)
    bm.check(bdm.BITMAP_BUSY | bdm.BITMAP_RO)
    if bm.persistent:
        remove_persistent(node, name)
    bdm.release(node, bm)


def clear(node, name: str) -> None:
    """qmp_block_dirty_bitmap_clear."""
    bm = lookup(node, name)
    bm.check(bdm.BITMAP_DEFAULT)
    bm.clear()


def set_enabled(node, name: str, enabled: bool) -> None:
    """qmp_block_dirty_bitmap_enable / _disable."""
    bm = lookup(node, name)
    bm.check(bdm.BITMAP_ALLOW_RO)
    bm.enabled = enabled


def merge(node, target: str, src_node, source: str) -> None:
    """do_dirty_bitmap_merge: bitmap ``source`` of ``src_node`` into ``target``."""
    dst = lookup(node, target)
    src = lookup(src_node, source)
    dst.check(bdm.BITMAP_DEFAULT)
    src.check(bdm.BITMAP_ALLOW_RO)
    if src.size != dst.size:
        raise BitmapError(f"Bitmaps are of different sizes (destination size is {dst.size}, "
                          f"source size is {src.size}) and can't be merged")
    dst.merge_from(src)
