"""The daemon's block graph: blockdev-add/del, block_resize, dirty bitmaps and
query-named-block-nodes on nodes that stay open between commands.

A node tree is opened by the emulator's block layer from the blockdev-add
arguments (given to it as a ``json:`` file name).  Every node of the tree is
an :class:`Entry`: the monitor's own (named by blockdev-add) or implicit
(a file child, a backing chain; automatic ``#blockNNN`` names unless the
options name them).  A format node may use a file node added earlier
(``"file": "NAME"``): the file is then reopened under the format node.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Optional

from emulator.qsd.protocol import QmpError

_TOP_ONLY = ("node-name", "read-only")


@dataclass
class Entry:
    """One named node of the graph."""

    name: str
    node: Any
    driver: str
    owned: bool                      # added by blockdev-add (blockdev-del may remove it)
    args: dict[str, Any] = field(default_factory=dict)
    implicit: list["Entry"] = field(default_factory=list)
    #: the nodes one blockdev-add made, in the order QEMU lists them
    group: list["Entry"] = field(default_factory=list)
    backing_ref: Optional["Entry"] = None   # a named node used as backing file
    backing_of: Optional[str] = None        # the overlay using this node as backing
    uses: Optional["Entry"] = None   # a monitor-owned file node this node sits on
    users: int = 0


def _not_found(device: str, node: str) -> QmpError:
    return QmpError(f"Cannot find device='{device}' nor node-name='{node}'")


def _json_name(options: dict[str, Any]) -> str:
    return "json:" + json.dumps(options)


class Graph:
    """Named nodes in creation order (the order query-named-block-nodes lists)."""

    def __init__(self) -> None:
        self.entries: dict[str, Entry] = {}
        self._auto = 0

    # --- lookup ---------------------------------------------------------------
    def lookup(self, device: Optional[str], node_name: Optional[str]) -> Entry:
        """bdrv_lookup_bs: a node by name (the daemon has no devices)."""
        entry = self.entries.get(node_name or "") if node_name is not None else None
        if entry is None and device is not None:
            entry = self.entries.get(device)
        if entry is None:
            raise _not_found(device or "", node_name or "")
        return entry

    def _auto_name(self) -> str:
        self._auto += 1
        return f"#block{self._auto:03d}"

    # --- blockdev-add / blockdev-del ----------------------------------------------
    def add(self, args: dict[str, Any]) -> dict[str, Any]:
        name = args.get("node-name")
        if name is None:
            raise QmpError("'node-name' must be specified for the root node")
        driver = args["driver"]
        ref = self.entries.get(args["file"]) if isinstance(args.get("file"), str) else None
        if isinstance(args.get("file"), str) and ref is None:
            raise _not_found(args["file"], args["file"])
        if isinstance(args.get("data-file"), str):
            raise QmpError("qcowlab does not model a node reference in 'data-file'")
        options = _open_options(args, ref)
        if name in self.entries:
            _check_file_exists(options)  # QEMU opens the file before it names the node
            raise QmpError(f"Duplicate nodes with node-name='{name}'")
        node = self._open(options, bool(args.get("read-only", False)), ref)
        entry = Entry(name, node, driver, True, dict(args), uses=ref)
        if isinstance(args.get("backing"), str):
            self._attach_backing(entry, args["backing"])
        if ref is not None:
            ref.node, ref.users = node.file, ref.users + 1
        elif driver != "file":
            file_name = (args.get("file") or {}).get("node-name") or self._auto_name()
            entry.implicit.append(Entry(file_name, node.file, "file", False))
        # QEMU lists a backing chain's nodes (deepest first) before their user;
        # a named backing node is listed as its own
        backing = node.backing if entry.backing_ref is None else None
        chain: list[Entry] = []
        while backing is not None:
            level = [Entry(self._auto_name(), backing, backing.format_name, False)]
            if backing.file is not None and backing.file is not backing:
                level.append(Entry(self._auto_name(), backing.file, "file", False))
            chain = level + chain
            backing = backing.backing
        entry.group = chain + [entry] + entry.implicit
        entry.implicit += chain
        for member in entry.group:
            member.node.node_name = member.name
            self.entries[member.name] = member
        return {}

    def _attach_backing(self, entry: Entry, name: str) -> None:
        """``"backing": NAME``: the overlay, opened without a backing file, reads
        through the named node, which stays as it was opened."""
        base = self.entries.get(name)
        if base is None:
            from emulator.cli.imgopen import close
            close(entry.node)
            raise QmpError(f"Could not open backing file: Cannot find device='{name}' "
                           f"nor node-name='{name}'")
        entry.node.backing = base.node
        entry.backing_ref = base
        base.users += 1
        base.backing_of = entry.name

    def _open(self, options: dict[str, Any], read_only: bool, ref: Optional[Entry]) -> Any:
        """Open a node tree; a file node it sits on is closed first (reopened on failure)."""
        from emulator.block.node import BlockError
        from emulator.cli.imgopen import open_options
        if ref is not None:
            if ref.users:
                raise QmpError(f"qcowlab does not model a second user of node '{ref.name}'")
            ref.node.drv_close()  # the format node's own file child takes its place
        try:
            return open_options(_json_name(options), {}, read_only, False)
        except BlockError as exc:
            if ref is not None:
                _reopen_file(ref)
            raise QmpError(exc.message) from None

    def delete(self, args: dict[str, Any]) -> dict[str, Any]:
        name = args["node-name"]
        entry = self.entries.get(name)
        if entry is None:
            raise QmpError(f"Failed to find node with node-name='{name}'")
        if not entry.owned:
            raise QmpError(f"Node {name} is not owned by the monitor")
        if entry.backing_of is not None:
            raise QmpError(f"Node '{name}' is busy: node is used as backing hd of "
                           f"'{entry.backing_of}'")
        if entry.users:
            raise QmpError(f"Block device {name} is in use")
        self._close(entry)
        return {}

    def _close(self, entry: Entry) -> None:
        from emulator.cli.imgopen import close
        from emulator.qcow2.bitmap_dirty import BitmapError
        base = entry.backing_ref
        if base is not None:  # the named backing node stays open
            entry.node.backing = None
            base.users -= 1
            base.backing_of = None
        try:
            close(entry.node)
        except BitmapError as exc:  # storing persistent bitmaps failed: QEMU reports it
            from emulator.report import error_report
            error_report(exc.args[0] if exc.args else str(exc))
        for child in entry.implicit:
            del self.entries[child.name]
        del self.entries[entry.name]
        if entry.uses is not None:  # the file node goes on, with a file node's locks
            entry.uses.users -= 1
            _reopen_file(entry.uses)

    def close_all(self) -> None:
        """Quit: close the users before the nodes they use."""
        while True:
            unused = [e for e in self.entries.values() if e.owned and not e.users]
            if not unused:
                break
            self._close(unused[0])
        for entry in [e for e in self.entries.values() if e.owned]:
            self._close(entry)  # still held by a job

    def released(self, entry: Entry) -> "_Released":
        """The file node's host file closed for a while (blockdev-create writes it)."""
        return _Released(entry)

    # --- block_resize ---------------------------------------------------------------
    def resize(self, args: dict[str, Any]) -> dict[str, Any]:
        from emulator.block import io
        from emulator.block.node import BlockError
        entry = self.lookup(args.get("device"), args.get("node-name"))
        size = args["size"]
        if size < 0:
            raise QmpError("Parameter 'size' expects a >0 size")
        if entry.node.read_only:
            raise QmpError("Image is read-only")
        try:
            io.truncate(entry.node, size, exact=False, prealloc="off")
        except BlockError as exc:
            raise QmpError(exc.message) from None
        return {}

    # --- blockdev-snapshot-internal-sync -------------------------------------------------
    def snapshot_internal(self, args: dict[str, Any]) -> dict[str, Any]:
        """An internal snapshot stamped with the wall clock (the daemon's virtual
        clock is the wall clock too) and no instruction count."""
        import time

        from emulator.block.node import BlockError
        from emulator.qcow2.snapshot import find_snapshot, snapshot_create
        device, name = args["device"], args["name"]
        entry = self.entries.get(device)
        if entry is None or not entry.owned:
            raise QmpError(f"Cannot find device='{device}' nor node-name='{device}'")
        node = entry.node
        if node.read_only:
            raise QmpError(f"Device '{device}' is read only")
        if node.format_name != "qcow2":
            raise QmpError(f"Block format '{node.format_name}' used by device '{device}' "
                           "does not support internal snapshots")
        if not name:
            raise QmpError("Name is empty")
        if find_snapshot(node, None, name) >= 0:
            raise QmpError(f"Snapshot with name '{name}' already exists on device '{device}'")
        now = time.time_ns()
        try:
            snapshot_create(node, name, now // 10**9, now // 1000 % 10**6 * 1000, now,
                            (1 << 64) - 1)
        except BlockError as exc:
            raise QmpError(f"Failed to create snapshot '{name}' on device '{device}': "
                           f"{exc.message}") from None
        return {}

    # --- dirty bitmaps ------------------------------------------------------------------
    def bitmap_add(self, args: dict[str, Any]) -> dict[str, Any]:
        from emulator.qcow2 import bitmap_dirty as bdm
        from emulator.qcow2 import bitmap_ops
        node = self.lookup(args["node"], args["node"]).node
        name, granularity = args["name"], args.get("granularity")
        try:
            if args.get("persistent"):
                bitmap_ops.add(node, name, granularity, bool(args.get("disabled")))
                return {}
            if not name:
                raise bdm.BitmapError("Bitmap name cannot be empty")
            if granularity is not None and (granularity < 512 or granularity & (granularity - 1)):
                raise bdm.BitmapError("Granularity must be power of 2 and at least 512")
            bm = bdm.create(node, granularity or bdm.default_granularity(node), name)
            bm.enabled = not args.get("disabled", False)
        except bdm.BitmapError as exc:
            raise QmpError(str(exc.args[0])) from None
        return {}

    def bitmap_remove(self, args: dict[str, Any]) -> dict[str, Any]:
        return self._bitmap_op("remove", args)

    def bitmap_clear(self, args: dict[str, Any]) -> dict[str, Any]:
        return self._bitmap_op("clear", args)

    def _bitmap_op(self, op: str, args: dict[str, Any]) -> dict[str, Any]:
        from emulator.qcow2 import bitmap_ops
        from emulator.qcow2.bitmap_dirty import BitmapError
        node = self.lookup(args["node"], args["node"]).node
        try:
            getattr(bitmap_ops, op)(node, args["name"])
        except BitmapError as exc:
            raise QmpError(str(exc.args[0])) from None
        return {}

    # --- query-named-block-nodes ----------------------------------------------------------
    def query_named_block_nodes(self, args: dict[str, Any]) -> list[dict[str, Any]]:
        from emulator.qsd.nodeinfo import block_device_info
        groups = [e.group for e in self.entries.values() if e.owned]
        return [block_device_info(e.name, e.node, flat=bool(args.get("flat")))
                for group in reversed(groups) for e in group]


def _open_options(args: dict[str, Any], ref: Optional[Entry]) -> dict[str, Any]:
    """blockdev-add's arguments as the block layer's options (a ``json:`` file name):
    a referenced file node's own options."""
    options = {k: v for k, v in args.items() if k not in _TOP_ONLY}
    if ref is not None:
        options["file"] = {"driver": "file", **_file_options(ref)}
    if isinstance(options.get("file"), dict):
        options["file"] = {k: v for k, v in options["file"].items() if k != "node-name"}
    if isinstance(options.get("backing"), str):
        options["backing"] = None  # attached once open
    return options


def _check_file_exists(options: dict[str, Any]) -> None:
    filename = options.get("filename") or (options.get("file") or {}).get("filename")
    if filename and not os.path.exists(filename):
        raise QmpError(f"Could not open '{filename}': No such file or directory")


def _file_options(entry: Entry) -> dict[str, Any]:
    return {k: v for k, v in entry.args.items() if k not in _TOP_ONLY}


def _reopen_file(entry: Entry) -> None:
    """Open a file node again from its blockdev-add arguments."""
    from emulator.cli.imgopen import open_options
    entry.node = open_options(_json_name(_file_options(entry)), {},
                              bool(entry.args.get("read-only", False)), False)
    entry.node.node_name = entry.name


class _Released:
    """Context manager: close a file entry's host file, reopen it afterwards."""

    def __init__(self, entry: Entry) -> None:
        self.entry = entry

    def __enter__(self) -> str:
        if self.entry.driver != "file" or self.entry.users:
            raise QmpError("qcowlab models blockdev-create only on an unused file node")
        self.entry.node.drv_close()
        return self.entry.node.filename

    def __exit__(self, *exc: object) -> None:
        _reopen_file(self.entry)
