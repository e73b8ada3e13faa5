"""What bdrv_get_info() and bdrv_get_specific_info() report for a node."""
from __future__ import annotations



def driver_info(node) -> tuple[int, int]:
    """(cluster size, vm state offset) as BlockDriverInfo; raw and filters report
    their child's (zeros for a host file)."""
    while getattr(node, "is_filter", False) or node.format_name == "raw":
        node = node.file
    cluster_size = int(getattr(node, "cluster_size", 0) or 0)
    if not cluster_size:
        return 0, 0
    vm_state = getattr(node, "vm_state_offset", None)
    if callable(vm_state):
        return cluster_size, int(vm_state())
    if vm_state is not None:
        return cluster_size, int(vm_state)
    from emulator.block import io as bio
    entry = 16 if getattr(node, "extended_l2", False) else 8
    span = cluster_size * (cluster_size // entry)
    return cluster_size, -(-bio.getlength(node) // span) * span


def specific_info(node) -> dict | None:
    """ImageInfoSpecific as a dict {"type": fmt, "data": {...}}, or None."""
    get = getattr(node, "get_specific_info", None)
    if get is None:
        return None
    data = get()
    if data is None:
        return None
    return {"type": node.format_name, "data": data}
