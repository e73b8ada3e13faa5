"""qemu-img check's part for the snapshot table (qcow2-snapshot.c).

``check_read_snapshot_table(s, res, fix)`` re-reads the table pointer from the
header and the table itself (dropping what ``-r all`` may drop), counting
incomplete entries; ``check_fix_snapshot_table(s, res, fix)`` rewrites the
table when ``-r all`` repaired something in it. Both raise BlockError where
QEMU's functions return an error, after printing QEMU's messages.
"""
from __future__ import annotations

import errno
import os
import struct
import sys
from typing import Optional

from emulator.block import io
from emulator.block.node import BlockError
from emulator.qcow2.check_result import FIX_ERRORS, CheckResult


def _eprint(msg: str) -> None:
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def _strerror(err: int) -> str:
    return os.strerror(err)


def _table_error(s, offset: int, entries: int) -> Optional[BlockError]:
    """qcow2_validate_table for the snapshot table."""
    from emulator.qcow2.snapshot_table import ENTRY_HEADER_SIZE, MAX_SNAPSHOTS
    if entries > MAX_SNAPSHOTS:
        return BlockError(errno.EFBIG, "snapshot table too large")
    if (1 << 63) - 1 - entries * ENTRY_HEADER_SIZE < offset or offset & (s.cluster_size - 1):
        return BlockError(errno.EINVAL, "snapshot table offset invalid")
    return None


def _report_err(prefix: str, e: BlockError) -> None:
    """error_reportf_err: 'PROG: PREFIXmessage' then the hint, if any."""
    from emulator.report import error_report
    error_report(prefix + e.message)
    if e.hint:
        sys.stderr.write(e.hint)
        sys.stderr.flush()


def check_read_snapshot_table(s, res: CheckResult, fix: int) -> None:
    """qcow2_check_read_snapshot_table: (re)read the table, noting broken entries."""
    from emulator.qcow2.snapshot_table import MAX_SNAPSHOTS, read_snapshots
    try:
        nb, offset = struct.unpack(">IQ", io.pread(s.file, 60, 12))
    except BlockError as e:
        res.check_errors += 1
        _eprint("ERROR failed to read the snapshot table pointer from the image header: "
                f"{_strerror(e.errno)}")
        raise
    s.snapshots_offset, s.nb_snapshots = offset, nb
    reduced = 0
    if nb > MAX_SNAPSHOTS and fix & FIX_ERRORS:
        _eprint(f"Discarding {nb - MAX_SNAPSHOTS} overhanging snapshots")
        reduced += nb - MAX_SNAPSHOTS
        s.nb_snapshots = MAX_SNAPSHOTS
    err = _table_error(s, s.snapshots_offset, s.nb_snapshots)
    if err is not None:
        res.check_errors += 1
        _report_err("ERROR ", err)
        if s.nb_snapshots > MAX_SNAPSHOTS:
            sys.stderr.write(f"You can force-remove all {s.nb_snapshots - MAX_SNAPSHOTS} "
                             "overhanging snapshots with qemu-img check -r all\n")
        s.snapshots_offset = s.nb_snapshots = 0
        s.snapshots, s.snapshots_size = [], 0
        raise err
    try:
        table = read_snapshots(s, bool(fix & FIX_ERRORS))
    except BlockError as e:
        res.check_errors += 1
        _report_err("ERROR failed to read the snapshot table: ", e)
        s.snapshots_offset = s.nb_snapshots = 0
        s.snapshots, s.snapshots_size = [], 0
        raise
    s.snapshots, s.snapshots_size = table.snapshots, table.size
    s.nb_snapshots = len(table.snapshots)
    reduced += table.nb_clusters_reduced
    res.corruptions += reduced + table.extra_data_dropped
    if reduced:
        try:
            io.pwrite(s.file, 60, struct.pack(">I", s.nb_snapshots))
            io.flush(s.file)
        except BlockError as e:
            res.check_errors += 1
            _eprint(f"ERROR failed to update the snapshot count in the image header: "
                    f"{_strerror(e.errno)}")
            raise
        res.corruptions_fixed += reduced
        res.corruptions -= reduced
    if s.qcow_version >= 3:
        for i, sn in enumerate(s.snapshots):
            if sn.extra_data_size < 16:
                res.corruptions += 1
                _eprint(f"{'Repairing' if fix & FIX_ERRORS else 'ERROR'} snapshot table "
                        f"entry {i} is incomplete")


def check_fix_snapshot_table(s, res: CheckResult, fix: int) -> None:
    """qcow2_check_fix_snapshot_table: rewrite the table when it had to be repaired."""
    from emulator.qcow2.snapshot_table import write_snapshots
    if res.corruptions and fix & FIX_ERRORS:
        try:
            write_snapshots(s, s.snapshots)
        except BlockError as e:
            res.check_errors += 1
            _eprint(f"ERROR failed to update snapshot table: {_strerror(e.errno)}")
            raise
        res.corruptions_fixed += res.corruptions
        res.corruptions = 0
