"""qemu-io's blkdebug commands: break, remove_break, wait_break, resume."""
from __future__ import annotations

import errno

from emulator.cli.io_cmds import IoSession, errstr
from emulator.cli.io_fmt import out


def debug_node(node):
    """bdrv_find_debug_node: the first node down the primary children that is blkdebug."""
    while node is not None:
        if hasattr(node, "breakpoint"):
            return node
        node = node.file if node.file is not node else None
    return None


def _break(s: IoSession, argv: list[str]) -> int:
    node = debug_node(s.blk)
    ret = node.breakpoint(argv[1], argv[2]) if node is not None else -errno.ENOTSUP
    if ret < 0:
        out(f"Could not set breakpoint: {errstr(-ret)}\n")
    return ret


def _remove_break(s: IoSession, argv: list[str]) -> int:
    node = debug_node(s.blk)
    ret = node.remove_breakpoint(argv[1]) if node is not None else -errno.ENOTSUP
    if ret < 0:
        out(f"Could not remove breakpoint {argv[1]}: {errstr(-ret)}\n")
    return ret


def _resume(s: IoSession, argv: list[str]) -> int:
    node = debug_node(s.blk)
    ret = node.resume(argv[1]) if node is not None else -errno.ENOTSUP
    if ret < 0:
        out(f"Could not resume request: {errstr(-ret)}\n")
    return ret


def _wait_break(s: IoSession, argv: list[str]) -> int:
    """Poll until a request is held as TAG; when none can be, QEMU would wait
    for ever and this returns."""
    from emulator.block import aio_context
    node = debug_node(s.blk)
    if node is not None:
        aio_context.poll_while(lambda: not any(r.tag == argv[1] for r in node.suspended))
    return 0
