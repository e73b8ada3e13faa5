"""qemu-img's -l option (measure, convert): loading an internal snapshot read-only
(bdrv_snapshot_load_tmp, bdrv_snapshot_load_tmp_by_id_or_name)."""
from __future__ import annotations

import errno

from emulator.report import error_report

SNAPSHOT_OPT_BASE = "snapshot."


def _snapshot_opts(arg: str):
    """The QemuOpts of a ``snapshot.id=...,snapshot.name=...`` argument (may raise OptsError)."""
    from emulator.cli.qemuopts import OptDesc, QemuOpts
    opts = QemuOpts([OptDesc("snapshot.id"), OptDesc("snapshot.name")])
    opts.parse(arg)
    return opts


def parse_snapshot_arg(arg: str) -> str | None:
    """Validate a ``snapshot.id=...,snapshot.name=...`` argument; None after an error."""
    if not arg.startswith(SNAPSHOT_OPT_BASE):
        return arg
    from emulator.cli.qemuopts import OptsError
    try:
        _snapshot_opts(arg)
    except OptsError as e:
        error_report(e.message)
        error_report(f"Failed in parsing snapshot param '{arg}'")
        return None
    return arg


def _load_tmp(node, snapshot_id: str | None, name: str | None) -> None:
    """bdrv_snapshot_load_tmp; raises BlockError."""
    from emulator.block.node import BlockError
    if snapshot_id is None and name is None:
        raise BlockError(errno.EINVAL, "snapshot_id and name are both NULL")
    if not node.read_only:
        raise BlockError(errno.EINVAL, "Device is not readonly")
    if node.format_name != "qcow2":
        raise BlockError(errno.ENOTSUP, f"Block format '{node.format_name}' used by device '' "
                                        "does not support temporarily loading internal snapshots")
    from emulator.qcow2.snapshot import snapshot_load_tmp
    snapshot_load_tmp(node, snapshot_id, name)


def load_tmp_snapshot(node, arg: str) -> bool:
    """Load the snapshot ``arg`` (-l) into ``node``; False after QEMU's message."""
    from emulator.block.node import BlockError
    from emulator.cli.errors import report_err
    try:
        if arg.startswith(SNAPSHOT_OPT_BASE):
            opts = _snapshot_opts(arg)
            _load_tmp(node, opts.get("snapshot.id"), opts.get("snapshot.name"))
        else:
            try:
                _load_tmp(node, arg, None)
            except BlockError as e:
                if e.errno not in (errno.ENOENT, errno.EINVAL):
                    raise
                _load_tmp(node, None, arg)
    except BlockError as e:
        report_err(f"Failed to load snapshot: {e.message}", e.hint)
        return False
    return True
