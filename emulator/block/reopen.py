"""Reopening a node tree with new options (bdrv_reopen with keep_old_opts, block.c).

``prepare(node, options)`` splits the options over the node and its children
("backing.", "file." and blkdebug's "image." prefixes), checks every node in
QEMU's queue order (the node, its backing chain, its file) and returns the
qcow2 runtime option and raw offset/size changes to apply; it raises
BlockError with QEMU's message and changes nothing
(except what QEMU's prepare stage does itself: flushing caches, marking a
lazy-refcounts image clean). ``commit(changes)`` applies them.
"""
from __future__ import annotations

import errno

from emulator.block.node import BlockError, BlockNode
from emulator.block.options import BOOL, absorb, opt_text, subdict

#: bdrv_runtime_opts options that reopen consumes (the flags, discard, detect-zeroes)
_FLAG_BOOLS = {"read-only": BOOL, "cache.direct": BOOL, "cache.no-flush": BOOL,
               "auto-read-only": BOOL}


def _queue(node: BlockNode, options: dict) -> list[tuple[BlockNode, dict]]:
    """bdrv_reopen_queue_child: the node, then its backing chain, then its file.

    Only children opened with their parent (not a temporary snapshot's base)
    take the options under their prefix; others leave them to the parent.
    """
    queue = [(node, options)]
    if node.backing is not None and not getattr(node, "backing_attached", False):
        queue += _queue(node.backing, subdict(options, "backing."))
    file = node.file if node.file is not None and node.file is not node else None
    if file is not None:
        name = "image" if node.format_name == "blkdebug" else "file"
        queue += _queue(file, subdict(options, name + "."))
    return queue


def _old_options(node: BlockNode) -> dict:
    """The options of the open node that reopen compares unconsumed options with."""
    old = {"driver": node.format_name}
    if node.format_name == "file":
        old["filename"] = node.filename
    old.update(getattr(node, "own_options", None) or {})
    return old


def _generic(options: dict, unmap: bool) -> None:
    """The bdrv_runtime_opts part of bdrv_reopen_prepare (consumes what it checks)."""
    from emulator.cli.qobject import qdict_items
    for key, value in qdict_items(options):
        if key == "force-share" and opt_text(value) is not None:
            absorb({key: value}, {key: BOOL})  # validated, then compared below
    absorb(options, _FLAG_BOOLS)
    discard = options.pop("discard", None)
    if discard is not None:
        text = opt_text(discard)
        if text not in ("ignore", "off", "unmap", "on"):
            raise BlockError(errno.EINVAL, "Invalid discard option")
        unmap = text in ("unmap", "on")
    detect = options.pop("detect-zeroes", None)
    if detect is not None:
        text = opt_text(detect)
        if text not in ("off", "on", "unmap"):
            raise BlockError(errno.EINVAL, f"invalid parameter value: {text}")
        if text == "unmap" and not unmap:
            raise BlockError(errno.EINVAL, "setting detect-zeroes to unmap is not allowed "
                                           "without setting discard operation to unmap")


def _check_node(node: BlockNode, options: dict, changes: list) -> None:
    _generic(options, bool(getattr(node, "unmap", False)))
    if node.format_name == "qcow2":
        from emulator.qcow2 import runtime_opts
        new = {k: options.pop(k) for k in list(options)
               if k in runtime_opts.DESCS and opt_text(options[k]) is not None}
        merged = runtime_opts.join_options(new, node.runtime_options)
        changes.append((node, merged, runtime_opts.prepare(node, dict(merged),
                                                           node.discard_unmap)))
    elif node.format_name == "raw":
        from emulator.block.raw import window
        old = getattr(node, "own_options", None) or {}
        merged = {k: old[k] for k in ("offset", "size") if k in old}
        merged.update({k: options.pop(k) for k in ("offset", "size") if k in options})
        changes.append((node, merged, window(node.file, dict(merged))))
    for key in ("backing", "file"):
        ref = options.pop(key, None)
        if isinstance(ref, str):
            raise BlockError(errno.EINVAL, f"Cannot find device='' nor node-name='{ref}'")
    old = _old_options(node)
    from emulator.cli.qobject import qdict_items
    for key, value in qdict_items(options):
        if opt_text(value) != opt_text(old.get(key)):
            raise BlockError(errno.EINVAL, f"Cannot change the option '{key}'")


def prepare(node: BlockNode, options: dict) -> list:
    """Check the reopen of ``node`` with ``options``; the changes for :func:`commit`."""
    import os

    from emulator.block import io
    queue = _queue(node, dict(options))
    for member, _ in queue:  # bdrv_reopen_multiple flushes every node first
        try:
            io.flush(member)
        except BlockError as e:
            raise BlockError(e.errno, f"Error flushing drive: {os.strerror(e.errno)}") from None
    changes: list = []
    for member, opts in queue:
        _check_node(member, opts, changes)
    return changes


def commit(changes: list) -> None:
    """bdrv_reopen_commit: qcow2 nodes take their new runtime options, raw nodes their
    new window."""
    from emulator.qcow2 import runtime_opts
    for node, kept, r in changes:
        if node.format_name == "raw":
            node.offset, node.size, node.has_size = r
            node.own_options = {**(getattr(node, "own_options", None) or {}), **kept}
            continue
        node.runtime_options = kept
        runtime_opts.commit(node, r)
