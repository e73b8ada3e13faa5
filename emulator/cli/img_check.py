"""qemu-img check: human and json summaries, repair, exit codes 0/1/2/3/63."""
from __future__ import annotations

import os
import sys

from emulator.cli import blockopts
from emulator.cli.img_common import error_exit, img_getopt, output_format
from emulator.cli.errors import report_err
from emulator.cli.imgopen import close, img_open
from emulator.report import error_report

FIX_LEAKS = 1
FIX_ERRORS = 2


def _collect(node, filename: str, fix: int) -> dict:
    """collect_image_check(): ImageCheck fields in QAPI order (optional ones when non-zero)."""
    from emulator.qcow2.check import check
    res = check(node, fix)
    bfi = res.bfi
    fields = [("check-errors", res.check_errors, True),
              ("image-end-offset", res.image_end_offset, False),
              ("corruptions", res.corruptions, False), ("leaks", res.leaks, False),
              ("corruptions-fixed", res.corruptions_fixed, False),
              ("leaks-fixed", res.leaks_fixed, False),
              ("total-clusters", bfi.total_clusters, False),
              ("allocated-clusters", bfi.allocated_clusters, False),
              ("fragmented-clusters", bfi.fragmented_clusters, False),
              ("compressed-clusters", bfi.compressed_clusters, False)]
    info: dict = {"filename": filename, "format": node.format_name}
    for key, value, always in fields:
        if always or value:
            info[key] = value
    return info


def human(c: dict) -> str:
    get = lambda k: c.get(k, 0)  # noqa: E731
    lines = []
    if not (get("corruptions") or get("leaks") or get("check-errors")):
        lines.append("No errors were found on the image.\n")
    else:
        if get("corruptions"):
            lines.append(f"\n{get('corruptions')} errors were found on the image.\n"
                         "Data may be corrupted, or further writes to the image may corrupt it.\n")
        if get("leaks"):
            lines.append(f"\n{get('leaks')} leaked clusters were found on the image.\n"
                         "This means waste of disk space, but no harm to data.\n")
        if get("check-errors"):
            lines.append(f"\n{get('check-errors')} internal errors have occurred during the check.\n")
    total, alloc = get("total-clusters"), get("allocated-clusters")
    if total and alloc:
        lines.append("%d/%d = %0.2f%% allocated, %0.2f%% fragmented, %0.2f%% compressed clusters\n"
                     % (alloc, total, alloc * 100.0 / total,
                        get("fragmented-clusters") * 100.0 / alloc,
                        get("compressed-clusters") * 100.0 / alloc))
    if get("image-end-offset"):
        lines.append(f"Image end offset: {get('image-end-offset')}\n")
    return "".join(lines)


def img_check(argv: list[str]) -> int:
    fmt = output = None
    cache = "writeback"
    fix = 0
    quiet = image_opts = force_share = False
    g = img_getopt(argv, ":hf:r:T:qU", [
        ("help", 0, "h"), ("format", 1, "f"), ("repair", 1, "r"), ("output", 1, "output"),
        ("object", 1, "object"), ("image-opts", 0, "image-opts"), ("force-share", 0, "U")])
    for c in g:
        if c == "f":
            fmt = g.optarg
        elif c == "r":
            if g.optarg == "leaks":
                fix = FIX_LEAKS
            elif g.optarg == "all":
                fix = FIX_LEAKS | FIX_ERRORS
            else:
                error_exit("Unknown option value for -r (expecting 'leaks' or 'all'): "
                           + g.optarg)
        elif c == "output":
            output = g.optarg
        elif c == "T":
            cache = g.optarg
        elif c == "q":
            quiet = True
        elif c == "U":
            force_share = True
        elif c == "image-opts":
            image_opts = True
    if g.optind != len(g.argv) - 1:
        error_exit("Expecting one image file name")
    filename = g.argv[g.optind]
    json = output_format(output)
    if json < 0:
        return 1
    if cache not in blockopts.CACHE_MODES:
        error_report(f"Invalid source cache option: {cache}")
        return 1
    node = _open(image_opts, filename, fmt, fix, force_share, blockopts.cache_nocache(cache))
    if node is None:
        return 1
    try:
        return _run_check(node, filename, fix, json == 1, quiet)
    finally:
        close(node)


def _open(image_opts: bool, filename: str, fmt: str | None, fix: int, force_share: bool,
          nocache: bool):
    """img_open with BDRV_O_CHECK (and read-write when repairing)."""
    if image_opts:
        return img_open(True, filename, fmt, read_only=not fix, force_share=force_share,
                        nocache=nocache)
    from emulator.block.node import BlockError
    from emulator.block.open import OPEN_FLAG
    from emulator.cli.imgopen import open_options
    opts = {"x-check": OPEN_FLAG}
    if nocache:
        opts["cache.direct"] = "on"
    if fmt is not None:
        opts["driver"] = fmt
    try:
        return open_options(filename, opts, not fix, force_share)
    except BlockError as e:
        report_err(f"Could not open '{filename}': {e.message}", e.hint)
        return None


def _run_check(node, filename: str, fix: int, json: bool, quiet: bool) -> int:
    from emulator.block.node import BlockError
    from emulator.cli.qobject import to_json_pretty
    if node.format_name != "qcow2":
        error_report("This image format does not support checks")
        return 63
    ret = 0
    try:
        result = _collect(node, filename, fix)
        fixed = {k: result[k] for k in ("leaks-fixed", "corruptions-fixed") if k in result}
        if fixed:
            if not json and not quiet:
                sys.stdout.write(
                    "The following inconsistencies were found and repaired:\n\n"
                    f"    {fixed.get('leaks-fixed', 0)} leaked clusters\n"
                    f"    {fixed.get('corruptions-fixed', 0)} corruptions\n\n"
                    "Double checking the fixed image now...\n")
            result = _collect(node, filename, 0)
            result.update(fixed)
            result = _reorder(result)
    except BlockError as e:
        ret = -e.errno
        result = {}
    if not ret and not quiet:
        sys.stdout.write(to_json_pretty(result) + "\n" if json else human(result))
    if ret or result.get("check-errors"):
        error_report(f"Check failed: {os.strerror(-ret)}" if ret else "Check failed")
        return 1
    if result.get("corruptions"):
        return 2
    if result.get("leaks"):
        return 3
    return 0


_ORDER = ("filename", "format", "check-errors", "image-end-offset", "corruptions", "leaks",
          "corruptions-fixed", "leaks-fixed", "total-clusters", "allocated-clusters",
          "fragmented-clusters", "compressed-clusters")


def _reorder(d: dict) -> dict:
    return {k: d[k] for k in _ORDER if k in d}

