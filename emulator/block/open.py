"""Opening images: the node tree of QEMU's bdrv_open (block.c).

``open_image`` opens the file node, probes the format when none is given
(qcow2 by its magic, otherwise raw, with raw-format's warning on stderr for a
writable probed image), opens the format node and, through the callback it
hands to the qcow2 driver, the backing chain (read-only, backing names
resolved against the image's directory). The returned root node carries a
:class:`~emulator.block.backend.BlockBackend` in ``node.blk``.

Errors are ``BlockError`` whose message is QEMU's text, e.g.
"Could not open 'x': No such file or directory" or
"Could not open backing file: Could not open 'b': No such file or directory".
"""
from __future__ import annotations

import errno
import os
import sys
from typing import Optional

from emulator.block import io
from emulator.block.backend import BlockBackend
from emulator.block.node import BlockError, BlockNode

FORMATS = ("qcow2", "raw")

_RAW_PROBE_WARNING = (
    "WARNING: Image format was not specified for '{}' and probing guessed raw.\n"
    "         Automatically detecting the format is dangerous for raw images, "
    "write operations on block 0 will be restricted.\n"
    "         Specify the 'raw' format explicitly to remove the restrictions.\n")


def backing_full_path(image: str, backing: str) -> str:
    """Backing file name as QEMU resolves it: relative names are relative to the image."""
    if not backing or os.path.isabs(backing) or "/" not in image:
        return backing
    return image[:image.rindex("/") + 1] + backing


def _unmap_option(options: dict, default: bool) -> bool:
    """BDRV_O_UNMAP from the 'discard' option (left for the driver to see)."""
    value = options.setdefault("discard", "unmap" if default else "ignore")
    if value in ("unmap", "on"):
        return True
    if value in ("ignore", "off"):
        return False
    raise BlockError(errno.EINVAL, "Invalid discard option")


def probe_format(file: BlockNode, filename: str) -> str:
    """find_image_format: 'raw' for an empty file, else the best probe score."""
    if io.getlength(file) == 0:
        return "raw"
    from emulator.block.raw import probe_format as probe_buf
    return probe_buf(io.pread(file, 0, 512), filename)


def open_image(filename: str, fmt: Optional[str] = None, *, read_only: bool = False,
               options: Optional[dict] = None, no_backing: bool = False,
               force_share: bool = False, unmap: bool = False) -> BlockNode:
    """Open ``filename`` as a root node with a BlockBackend (qemu-img/qemu-io's blk_new_open).

    ``unmap`` is QEMU's BDRV_O_UNMAP (qemu-io always sets it; qemu-img only for
    commit and sparse convert); ``options['discard']`` overrides it.
    """
    node = _open_node(filename, fmt, read_only=read_only, options=dict(options or {}),
                      no_backing=no_backing, unmap=unmap)
    node.blk = BlockBackend(node)
    return node


def _open_node(filename: str, fmt: Optional[str], *, read_only: bool, options: dict,
               no_backing: bool, unmap: bool) -> BlockNode:
    from emulator.block.file import FileNode
    if fmt is not None and fmt not in FORMATS and fmt != "file":
        raise BlockError(errno.EINVAL, f"Unknown driver '{fmt}'")
    unmap = _unmap_option(options, unmap)
    file = FileNode(filename, read_only)
    file.unmap = True  # children default to discard=unmap (bdrv_inherited_options)
    io.refresh_total_sectors(file)
    if fmt == "file":
        return file
    probed = fmt is None
    try:
        if probed:
            fmt = probe_format(file, filename)
        if fmt == "raw":
            from emulator.block.raw import RawNode
            if probed and not read_only:
                sys.stderr.write(_RAW_PROBE_WARNING.format(filename))
                sys.stderr.flush()
            node: BlockNode = RawNode(file, options, read_only, probed)
        else:
            from emulator.qcow2.driver import Qcow2

            def open_backing(backing_file: str, backing_fmt: Optional[str]) -> Optional[BlockNode]:
                if no_backing:
                    return None
                path = backing_full_path(filename, backing_file)
                try:
                    return _open_node(path, backing_fmt, read_only=True, options={},
                                      no_backing=False, unmap=True)
                except BlockError as e:
                    raise BlockError(e.errno, "Could not open backing file: " + e.message) from None

            node = Qcow2.open(file, options, read_only, open_backing)
        node.unmap = unmap
        node.probed = probed
        io.refresh_total_sectors(node)
    except BaseException:
        file.drv_close()
        raise
    return node


def close_image(node: BlockNode) -> None:
    """bdrv_close: flush, the driver's close, then its file child and backing chain."""
    io.flush(node)
    node.drv_close()
    if node.file is not None and node.file is not node:
        node.file.drv_close()
    if node.backing is not None:
        close_image(node.backing)
