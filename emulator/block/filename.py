"""The name QEMU gives an opened node tree (bdrv_refresh_filename, block.c).

``refresh_filename(node)`` is a node's filename after bdrv_refresh_filename:
a plain name ("img.qcow2", "blkdebug::img.qcow2", "null-co://") when the
tree can be reopened from one, else "json:{...}" holding the node's strong
runtime options and those of its children, in QDict order. Nodes carry the
options they were opened with in ``own_options`` (emulator/block/open.py).
A backing file that was overridden at open is not modelled (qemu-img info
opens without I/O, where QEMU ignores it too).
"""
from __future__ import annotations

#: strong_runtime_opts of the drivers (prefixes end in ".")
_STRONG = {
    "raw": ("offset", "size"),
    "qcow2": ("encrypt.key-secret",),
    "null-co": ("size", "read-zeroes"), "null-aio": ("size", "read-zeroes"),
    "blkdebug": ("config", "inject-error.", "set-state.", "align", "max-transfer",
                 "opt-write-zero", "max-write-zero", "opt-discard", "max-discard"),
}
_PROTOCOLS = ("file", "null-co", "null-aio", "blkdebug")


def _children(node) -> list[tuple[str, object]]:
    """The children in QEMU's list order (last attached first), backing left out."""
    out = []
    data_file = getattr(node, "data_file", None)
    if data_file is not None and data_file is not node.file:
        out.append(("data-file", data_file))
    if node.file is not None and node.file is not node:
        out.append(("image" if node.format_name == "blkdebug" else "file", node.file))
    return out


def _refresh(node) -> tuple[str, dict]:
    """(exact_filename, full_open_options) of ``node``."""
    from emulator.cli.qobject import qdict_items
    drv = node.format_name
    own = getattr(node, "own_options", None) or {"driver": drv}
    opts: dict = {}
    found_any = False
    for name in ("driver", "filename", *_STRONG.get(drv, ())):
        keys = [k for k, _ in qdict_items(own) if k.startswith(name)] if name.endswith(".") \
            else [name] if name in own else []
        for key in keys:
            opts[key] = own[key]
        if keys and name not in ("driver", "filename"):
            found_any = True
    opts.setdefault("driver", drv)
    children = [(name, child, _refresh(child)) for name, child in _children(node)]
    for name, _, (_, child_opts) in children:
        opts[name] = child_opts
    if drv == "file":
        return str(own.get("filename", node.filename)), opts
    if drv in ("null-co", "null-aio"):
        plain = all(k in ("filename", "driver", "latency-ns") for k in opts)
        return (f"{drv}://" if plain else ""), opts
    if drv == "blkdebug":
        image_exact = children[0][2][0] if children else ""
        plain = image_exact and all(k in ("config", "image", "x-image", "driver") for k in opts)
        return (f"blkdebug:{own.get('config') or ''}:{image_exact}" if plain else ""), opts
    primary = next((c for c in children if c[0] == "file"), None)
    if primary is not None and primary[2][0] and primary[1].format_name in _PROTOCOLS \
            and not getattr(node, "is_filter", False) and not found_any:
        return primary[2][0], opts
    return "", opts


def _json(value: object) -> str:
    """qobject_to_json, compact."""
    from emulator.cli.qobject import _scalar, qdict_items
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_scalar(k)}: {_json(v)}" for k, v in qdict_items(value)) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_json(v) for v in value) + "]"
    return _scalar(value)


def refresh_filename(node) -> str:
    """bs->filename after bdrv_refresh_filename."""
    exact, opts = _refresh(node)
    return exact or "json:" + _json(opts)
