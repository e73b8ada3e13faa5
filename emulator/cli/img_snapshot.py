"""qemu-img snapshot (img_snapshot): list, create, apply and delete internal snapshots."""
from __future__ import annotations

import errno
import sys
import time

from emulator.cli.img_common import error_exit, img_getopt
from emulator.report import error_report

OPTION_OBJECT, OPTION_IMAGE_OPTS = 256, 257
_MIX = "Cannot mix '-l', '-a', '-c', '-d'"


def img_snapshot(argv: list[str]) -> int:
    g = img_getopt(argv, ":la:c:d:hqU",
                   [("help", 0, "h"), ("object", 1, OPTION_OBJECT),
                    ("image-opts", 0, OPTION_IMAGE_OPTS), ("force-share", 0, "U")])
    action: str | None = None
    name = ""
    image_opts = force_share = False
    for c in g:
        if c in ("l", "a", "c", "d"):
            if action:
                error_exit(_MIX)
            action = c
            if c != "l":
                name = g.optarg
        elif c == "U":
            force_share = True
        elif c == OPTION_IMAGE_OPTS:
            image_opts = True
    if g.optind != len(g.argv) - 1:
        error_exit("Expecting one image file name")
    from emulator.cli.imgopen import close, img_open
    node = img_open(image_opts, g.argv[g.optind], None, read_only=action == "l",
                    force_share=force_share)
    if node is None:
        return 1
    try:
        return _act(node, action, name)
    finally:
        close(node)


def _qcow2(node) -> bool:
    from emulator.qcow2.driver import Qcow2
    return isinstance(node, Qcow2)


def _act(node, action: str | None, name: str) -> int:
    from emulator.block.node import BlockError, errno_message
    if action == "l":
        from emulator.cli.snapshot_info import dump_lines, snapshot_infos
        sys.stdout.write(dump_lines(snapshot_infos(node)))
        return 0
    if action == "c":
        rc = _create(node, name)
        if rc:
            error_report(f"Could not create snapshot '{name}': {rc} ({errno_message(-rc)})")
        return 1 if rc else 0
    if action == "a":
        try:
            _apply(node, name)
        except BlockError as e:
            error_report(f"Could not apply snapshot '{name}': {e.message}")
            return 1
        return 0
    if action == "d":
        from emulator.qcow2.snapshot import find_snapshot
        index = find_snapshot(node, None, name) if _qcow2(node) else -1
        if index < 0:
            error_report(f"Could not delete snapshot '{name}': snapshot not found")
            return 1
        from emulator.qcow2.snapshot import snapshot_delete
        sn = node.snapshots[index]
        try:
            snapshot_delete(node, sn.id_str, sn.name)
        except BlockError as e:
            error_report(f"Could not delete snapshot '{name}': {e.message}")
            return 1
    return 0




def _create(node, name: str) -> int:
    """bdrv_snapshot_create with qemu-img's QEMUSnapshotInfo; 0 or -errno."""
    from emulator.block.node import BlockError
    from emulator.qcow2.snapshot import snapshot_create
    if not _qcow2(node):
        return -errno.ENOTSUP
    now = time.time_ns() // 1000
    try:
        snapshot_create(node, name.encode()[:255].decode("utf-8", "ignore"),
                        now // 1000000, now % 1000000 * 1000, 0, 0)
    except BlockError as e:
        return -e.errno
    return 0


def _apply(node, name: str) -> None:
    """bdrv_snapshot_goto; raises BlockError with QEMU's message."""
    from emulator.block.node import BlockError, errno_message
    if not _qcow2(node):
        if getattr(node, "probed", False):
            from emulator.block.open import _RAW_PROBE_WARNING
            sys.stderr.write(_RAW_PROBE_WARNING.format(node.file.filename))
            sys.stderr.flush()
        raise BlockError(errno.ENOTSUP, "Block driver does not support snapshots")
    if getattr(node, "nb_bitmaps", 0):
        raise BlockError(errno.EBUSY, "Device has active dirty bitmaps")
    from emulator.qcow2.snapshot import snapshot_goto
    try:
        snapshot_goto(node, name)
    except BlockError as e:
        raise BlockError(e.errno, f"Failed to load snapshot: {errno_message(e.errno)}")
