"""qemu-img commit (img_commit): copy an image's data into a backing file.

The block job is :mod:`emulator.cli.commit_mirror`; emptying the top image
afterwards (without -d/-b) is the driver's ``make_empty`` when it has one.
"""
from __future__ import annotations

import errno
import os
import sys

from emulator.cli.img_common import error_exit, img_getopt, parse_size_arg
from emulator.report import error_report

OPTION_OBJECT, OPTION_IMAGE_OPTS = 256, 257
CACHE_MODES = ("none", "off", "directsync", "writeback", "unsafe", "writethrough")


def img_commit(argv: list[str]) -> int:
    g = img_getopt(argv, ":f:ht:b:dpqr:", [("help", 0, "h"), ("object", 1, OPTION_OBJECT),
                                           ("image-opts", 0, OPTION_IMAGE_OPTS)])
    fmt = base = None
    cache = "writeback"
    progress = quiet = drop = image_opts = False
    for c in g:
        if c == "f":
            fmt = g.optarg
        elif c == "t":
            cache = g.optarg
        elif c == "b":
            base = g.optarg
            drop = True
        elif c == "d":
            drop = True
        elif c == "p":
            progress = True
        elif c == "q":
            quiet = True
        elif c == "r":
            if parse_size_arg("rate limit", g.optarg) < 0:
                return 1
        elif c == OPTION_IMAGE_OPTS:
            image_opts = True
    if g.optind != len(g.argv) - 1:
        error_exit("Expecting one image file name")
    filename = g.argv[g.optind]
    if cache not in CACHE_MODES:
        error_report(f"Invalid cache option: {cache}")
        return 1
    from emulator.cli.blockopts import cache_nocache
    from emulator.cli.imgopen import close, img_open
    top = img_open(image_opts, filename, fmt, read_only=False, unmap=True,
                   nocache=cache_nocache(cache))
    if top is None:
        return 1
    from emulator.cli.progress import Progress
    meter = Progress(progress and not quiet, 1.0)
    meter.print(0.0, 100)
    try:
        err = _commit(top, filename, base, drop, meter)
    finally:
        meter.end()
        close(top)
    if err is not None:
        from emulator.cli.errors import report_err
        report_err(*err)
        return 1
    if not quiet:
        sys.stdout.write("Image committed.\n")
    return 0


def _find_base(top, filename: str, base: str | None):
    """(base node, node right above it) or an error message."""
    if base is None:
        if top.backing is None:
            return "Image does not have a backing file"
        return top.backing, top
    from emulator.cli.img_rebase import find_backing_image
    from emulator.block.open import backing_full_path
    found = find_backing_image(top, backing_full_path(top.filename, base))
    if found is None:
        return f"Did not find '{base}' in the backing chain of '{filename}'"
    overlay = top
    while overlay.backing is not found:
        overlay = overlay.backing
    return found, overlay


def _commit(top, filename: str, base: str | None, drop: bool,
            meter) -> tuple[str, str] | None:
    """The job and the emptying; an error (message, hint), or None."""
    from emulator.block.node import BlockError
    from emulator.cli import commit_mirror
    found = _find_base(top, filename, base)
    if isinstance(found, str):
        return found, ""
    base_node, overlay = found
    from emulator.block.open import reopen_read_write
    try:
        reopen_read_write(base_node)
    except BlockError as e:
        return e.message, e.hint
    try:
        commit_mirror.run(top, base_node, overlay)
    except BlockError as e:
        return f"Block job failed: {os.strerror(e.errno)}", ""
    meter.print(100.0, 0)
    if not drop:
        try:
            make_empty = getattr(top, "make_empty", None)
            if make_empty is not None:  # formats without it cannot be emptied, which is fine
                make_empty()
        except BlockError as e:
            if e.errno != errno.ENOTSUP:  # a format that cannot be emptied is fine
                # bdrv_make_empty names the node by the filename it got from its file
                from emulator.block.filename import refresh_filename
                name = refresh_filename(top.file) if top.file is not None else top.filename
                return f"Failed to empty {name}: {os.strerror(e.errno)}", ""
    return None
