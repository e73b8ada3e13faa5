"""BlockDeviceInfo of a node, as query-named-block-nodes reports it."""
from __future__ import annotations

from typing import Any


def _bitmaps(node: Any) -> list[dict[str, Any]]:
    """BlockDirtyInfo of each bitmap, newest first; ``count`` is in bytes."""
    out = []
    for bm in getattr(node, "dirty_bitmaps", None) or ():
        info: dict[str, Any] = {"name": bm.name, "recording": bm.enabled,
                                "persistent": bm.persistent, "busy": False,
                                "count": int.from_bytes(bm.data, "little").bit_count()
                                << bm.granularity_bits,
                                "granularity": bm.granularity}
        if bm.inconsistent:
            info["inconsistent"] = True
        out.append(info)
    return out


def _image_info(node: Any) -> dict[str, Any]:
    from emulator.cli.img_info import query_image_info
    if node.format_name == "file":
        from emulator.block import io
        from emulator.cli.img_info import allocated_file_size
        info: dict[str, Any] = {"filename": node.filename, "format": "file",
                                "dirty-flag": False}
        actual = allocated_file_size(node)
        if actual is not None:
            info["actual-size"] = actual
        info["virtual-size"] = io.getlength(node)
        return info
    return query_image_info(node, node.file.filename if node.file is not None
                            else node.filename)


def block_device_info(name: str, node: Any, flat: bool) -> dict[str, Any]:
    """bdrv_block_device_info for a node without a BlockBackend."""
    filename = node.file.filename if node.format_name != "file" and node.file is not None \
        else node.filename
    info: dict[str, Any] = {
        "file": filename, "node-name": name, "ro": bool(node.read_only),
        "drv": node.format_name, "encrypted": bool(getattr(node, "encrypted", False)),
        "cache": {"writeback": True,
                  "direct": getattr(node, "request_alignment", 1) > 1
                  or bool(getattr(node, "cache_direct", False)),
                  "no-flush": False}}
    if node.backing is not None:
        backing = node.backing
        info["backing_file"] = backing.file.filename if backing.file is not None \
            else backing.filename
    bitmaps = _bitmaps(node)
    if bitmaps:
        info["dirty-bitmaps"] = bitmaps
    info["detect_zeroes"] = getattr(node, "detect_zeroes", "off") or "off"
    for key in ("bps", "bps_rd", "bps_wr", "iops", "iops_rd", "iops_wr"):
        info[key] = 0
    info["write_threshold"] = 0
    depth, image = 0, _image_info(node)
    info["image"] = image
    cur = node
    while not flat and cur.backing is not None:
        depth += 1
        cur = cur.backing
        image["backing-image"] = _image_info(cur)
        image = image["backing-image"]
    info["backing_file_depth"] = depth
    return info
