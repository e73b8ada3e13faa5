"""qemu-img's -l option (measure, convert): loading an internal snapshot read-only.

qcowlab models images without internal snapshots only, so loading one always
fails; the messages are QEMU's for each case.
"""
from __future__ import annotations

from typing import Optional

from emulator.report import error_report

SNAPSHOT_OPT_BASE = "snapshot."


def parse_snapshot_arg(arg: str) -> Optional[str]:
    """Validate a ``snapshot.id=...,snapshot.name=...`` argument; None after an error."""
    if not arg.startswith(SNAPSHOT_OPT_BASE):
        return arg
    from emulator.cli.qemuopts import OptDesc, OptsError, QemuOpts
    opts = QemuOpts([OptDesc("snapshot.id"), OptDesc("snapshot.name")])
    try:
        opts.parse(arg)
    except OptsError as e:
        error_report(e.message)
        error_report(f"Failed in parsing snapshot param '{arg}'")
        return None
    return arg


def load_tmp_snapshot(node) -> bool:
    """bdrv_snapshot_load_tmp on ``node``: always False after QEMU's message."""
    if node.format_name != "qcow2":
        error_report(f"Failed to load snapshot: Block format '{node.format_name}' used by "
                     "device '' does not support temporarily loading internal snapshots")
    elif node.nb_snapshots:
        error_report("Failed to load snapshot: qcowlab does not model internal snapshots")
    else:
        error_report("Failed to load snapshot: Can't find snapshot")
    return False
