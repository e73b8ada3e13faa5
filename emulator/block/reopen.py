"""Reopening a node tree with new options (bdrv_reopen with keep_old_opts, block.c).

``prepare(node, options, write_perm)`` splits the options over the node and its
children ("backing.", "file." and blkdebug's "image." prefixes) and runs QEMU's
two stages. The prepare stage checks every node in queue order (the node, its
backing chain, its file): generic options, copy-on-read against read-only,
drivers without reopen support (compress), the driver's runtime options, then
options that cannot change; a qcow2 node going read-only is flushed and marked
clean there already, as QEMU does even if the reopen fails later. The
permission stage walks down from the root: a read-only node with a writing
user fails, and a host file whose open flags change is opened again by name
(see :func:`refresh_file`). It returns a plan for ``commit(plan)``; a
BlockError carries QEMU's message and leaves the tree unchanged.

Host files model file-posix's ``open_flags`` bookkeeping (``posix_flags``):
QEMU opens the file again by name whenever the wanted flags differ from the
recorded ones, and a reopen that keeps the old descriptor records 0 (a QEMU
quirk: the reopen state's flags are never filled in). So every other reopen
of a writable image opens it again, which fails for a deleted -s overlay.
"""
from __future__ import annotations

import errno
import os

from emulator.block.node import BlockError, BlockNode
from emulator.block.options import BOOL, absorb, is_on, opt_text, subdict

#: bdrv_runtime_opts options that reopen consumes (the flags, discard, detect-zeroes)
_FLAG_BOOLS = {"read-only": BOOL, "cache.direct": BOOL, "cache.no-flush": BOOL,
               "auto-read-only": BOOL}
#: drivers without a bdrv_reopen_prepare callback
_NO_REOPEN = ("compress",)
#: formats whose file child holds metadata (written whenever the format node is writable)
_METADATA = ("qcow2", "luks")


class _Member:
    """One entry of the reopen queue (BlockReopenQueueEntry)."""

    __slots__ = ("node", "options", "parent", "role", "read_only", "explicit", "direct",
                 "needs_write", "new_fd", "flags")

    def __init__(self, node: BlockNode, options: dict, parent: _Member | None,
                 role: str) -> None:
        self.node, self.options, self.parent, self.role = node, options, parent, role
        self.read_only = self.explicit = self.direct = self.needs_write = False
        self.new_fd: int | None = None
        self.flags = 0


def _queue(node: BlockNode, options: dict, parent: _Member | None = None,
           role: str = "root") -> list[_Member]:
    """bdrv_reopen_queue_child: the node, then its backing chain, its data file, its file.

    Only children opened with their parent (not a temporary snapshot's base)
    take the options under their prefix; others leave them to the parent.
    """
    me = _Member(node, options, parent, role)
    queue = [me]
    if node.backing is not None and not getattr(node, "backing_attached", False):
        queue += _queue(node.backing, subdict(options, "backing."), me, "backing")
    data_file = getattr(node, "data_file", None)  # qcow2's external data file
    if data_file is not None and data_file is not node.file:
        queue += _queue(data_file, subdict(options, "data-file."), me, "data-file")
    file = node.file if node.file is not None and node.file is not node else None
    if file is not None:
        name = "image" if node.format_name == "blkdebug" else "file"
        queue += _queue(file, subdict(options, name + "."), me, "file")
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


def _explicit_read_only(node: BlockNode) -> bool | None:
    """The read-only option the node was last given explicitly (kept by keep_old_opts)."""
    if hasattr(node, "explicit_ro"):
        return node.explicit_ro
    text = opt_text((getattr(node, "own_options", None) or {}).get("read-only"))
    return None if text is None else text == "on"


def _new_state(m: _Member, read_only: object, direct: object) -> None:
    """The member's read-only and cache.direct state after the reopen: its own option,
    else what it kept, else what its role inherits (backing files stay read-only)."""
    if read_only is not None:
        m.read_only = is_on(read_only)
    elif m.role != "root" and _explicit_read_only(m.node) is not None:
        m.read_only = bool(_explicit_read_only(m.node))
    else:
        m.read_only = True if m.role == "backing" else bool(m.parent and m.parent.read_only)
    if direct is not None:
        m.direct = is_on(direct)
    else:
        m.direct = bool(m.parent and m.parent.direct)


def _check_node(m: _Member, changes: list) -> None:
    node, options = m.node, m.options
    read_only, direct = options.get("read-only"), options.get("cache.direct")
    _generic(options, bool(getattr(node, "unmap", False)))
    m.explicit = read_only is not None
    _new_state(m, read_only, direct)
    if m.read_only and getattr(node, "copy_on_read", False):
        raise BlockError(errno.EINVAL, f"Can't set node '{node.node_name}' to r/o with "
                                       "copy-on-read enabled")
    if node.format_name in _NO_REOPEN:
        raise BlockError(errno.ENOTSUP, f"Block format '{node.format_name}' used by node "
                                        f"'{node.node_name}' does not support reopening files")
    if node.format_name == "qcow2":
        from emulator.qcow2 import runtime_opts
        new = {k: options.pop(k) for k in list(options)
               if k in runtime_opts.DESCS and opt_text(options[k]) is not None}
        merged = runtime_opts.join_options(new, node.runtime_options)
        changes.append((node, merged, runtime_opts.prepare(node, dict(merged),
                                                           node.discard_unmap)))
        if m.read_only and not node.read_only:
            _prepare_read_only(node)
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
        prev = old.get(key)  # qobject_is_equal: a typed JSON value never equals a string
        if type(value) is not type(prev) or opt_text(value) != opt_text(prev):
            raise BlockError(errno.EINVAL, f"Cannot change the option '{key}'")


def _prepare_read_only(node: BlockNode) -> None:
    """qcow2_reopen_prepare for a node going read-only: bitmaps, flush, mark clean."""
    from emulator.block import io
    if getattr(node, "nb_bitmaps", 0) or getattr(node, "dirty_bitmaps", None):
        from emulator.qcow2.bitmap_store import reopen_bitmaps_ro
        reopen_bitmaps_ro(node)
    io.flush(node)
    node.mark_clean()


def _is_host_file(node: BlockNode) -> bool:
    return node.format_name == "file" and getattr(node, "fd", -1) >= 0


def posix_flags(file: BlockNode) -> int:
    """file-posix's recorded open flags of a host file (O_RDWR, O_DIRECT bits)."""
    flags = getattr(file, "posix_flags", None)
    if flags is None:
        flags = (0 if file.read_only else os.O_RDWR) | \
            (os.O_DIRECT if getattr(file, "direct", False) else 0)
    return flags


def _open_again(file: BlockNode, flags: int) -> int:
    """qemu_open of the file by its name (raw_reconfigure_getfd's fallback)."""
    try:
        return os.open(file.filename, (flags & os.O_RDWR) | os.O_CLOEXEC)
    except OSError as e:
        raise BlockError(e.errno, f"Could not open '{file.filename}': "
                                  f"{os.strerror(e.errno)}") from None


def _swap_fd(file: BlockNode, fd: int, flags: int) -> None:
    """Give a host file its new descriptor, carrying the image locks over."""
    from emulator.block import locking
    old, file.fd = file.fd, fd
    locking.reapply(file)
    os.close(old)
    if getattr(file, "dfd", -1) >= 0:  # the O_DIRECT descriptor follows the new mode
        os.close(file.dfd)
        file.dfd = -1
    file.posix_flags = flags


def refresh_file(file: BlockNode) -> None:
    """A permission update outside reopen (raw_check_perm with the node's own flags):
    the file is opened again by name when its recorded flags differ."""
    if not _is_host_file(file):
        return
    wanted = (0 if file.read_only else os.O_RDWR) | (posix_flags(file) & os.O_DIRECT)
    if wanted != posix_flags(file):
        _swap_fd(file, _open_again(file, wanted), wanted)


def _topological(m: _Member, queue: list[_Member]) -> list[_Member]:
    """bdrv_topological_dfs: a node, then its children's subtrees, the children taken
    in the reverse of their list order (file, data file, backing)."""
    order = [m]
    for child in reversed([c for c in queue if c.parent is m]):
        order += _topological(child, queue)
    return order


def _permissions(queue: list[_Member], write_perm: bool) -> None:
    """bdrv_list_refresh_perms over the reopened tree, parents first."""
    for m in queue:
        if m.parent is None:
            m.needs_write = write_perm
        elif m.role == "backing":
            m.needs_write = False
        elif m.parent.node.format_name in _METADATA and m.role == "file":
            m.needs_write = not m.parent.read_only
        else:
            m.needs_write = m.parent.needs_write
    order = _topological(queue[0], queue)
    try:
        for m in order:
            node = m.node
            if m.needs_write and m.read_only:
                if node.read_only:
                    raise BlockError(errno.EPERM, "Block node is read-only")
                raise BlockError(errno.EPERM, f"Read-only block node '{node.node_name}' "
                                              "cannot support read-write users")
            if _is_host_file(node):
                m.flags = (0 if m.read_only else os.O_RDWR) | (os.O_DIRECT if m.direct else 0)
                if m.flags != posix_flags(node):
                    m.new_fd = _open_again(node, m.flags)
                if node.read_only and not m.read_only:
                    from emulator.block import locking
                    locking.check_write(node)
    except BlockError:
        for m in queue:
            if m.new_fd is not None:
                os.close(m.new_fd)
        raise


def write_blocked(node: BlockNode) -> bool:
    """Whether a user taking the write permission on ``node`` finds a read-only node on
    the way down (the format's file, its data file, a filter's child)."""
    if node.read_only:
        return True
    children = [getattr(node, "data_file", None), node.file]
    return any(write_blocked(c) for c in children if c is not None and c is not node)


def prepare(node: BlockNode, options: dict, write_perm: bool) -> list:
    """Check the reopen of ``node`` with ``options`` (which carry the root's
    read-only and cache options); the plan for :func:`commit`.

    ``write_perm`` tells whether the BlockBackend holds the write permission.
    """
    from emulator.block import io
    queue = _queue(node, dict(options))
    for m in queue:  # bdrv_reopen_multiple flushes every node first
        try:
            io.flush(m.node)
        except BlockError as e:
            raise BlockError(e.errno, f"Error flushing drive: {os.strerror(e.errno)}") from None
    changes: list = []
    for m in queue:
        _check_node(m, changes)
    _permissions(queue, write_perm)
    return [queue, changes]


def commit(plan: list) -> None:
    """bdrv_reopen_commit: runtime options, raw windows, read-only states, descriptors."""
    from emulator.qcow2 import runtime_opts
    queue, changes = plan
    for node, kept, r in changes:
        if node.format_name == "raw":
            node.offset, node.size, node.has_size = r
            node.own_options = {**(getattr(node, "own_options", None) or {}), **kept}
            continue
        node.runtime_options = kept
        runtime_opts.commit(node, r)
    writable_bitmaps = []
    for m in queue:
        node = m.node
        if m.role != "root" and m.explicit:
            node.explicit_ro = m.read_only
        going_rw = node.read_only and not m.read_only
        if _is_host_file(node):
            if m.new_fd is not None:
                _swap_fd(node, m.new_fd, m.flags)
            else:
                node.posix_flags = 0
            if node.read_only != m.read_only:
                from emulator.block import locking
                locking.set_writable(node, not m.read_only)
        node.read_only = m.read_only
        if going_rw and getattr(node, "nb_bitmaps", 0):
            writable_bitmaps.append(node)
    for node in writable_bitmaps:  # qcow2_reopen_commit_post, once the files are writable
        from emulator.qcow2.bitmap_store import reopen_bitmaps_rw
        reopen_bitmaps_rw(node)
