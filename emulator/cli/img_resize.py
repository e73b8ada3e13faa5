"""qemu-img resize (img_resize): grow or shrink an image through the block layer's truncate."""
from __future__ import annotations

import sys

from emulator.cli.img_common import error_exit, img_getopt
from emulator.report import error_report, warn_report

OPTION_OBJECT, OPTION_IMAGE_OPTS, OPTION_PREALLOCATION, OPTION_SHRINK = 256, 257, 258, 259
PREALLOC_MODES = ("off", "metadata", "falloc", "full")


def _int64(v: int) -> int:
    v &= (1 << 64) - 1
    return v - (1 << 64) if v >= (1 << 63) else v


def _parse_size(text: str) -> int:
    """The size operand through a one-option QemuOpts; -1 after QEMU's message."""
    from emulator.cli.qemuopts import SIZE, OptDesc, OptsError, QemuOpts
    opts = QemuOpts([OptDesc("size", SIZE)])
    try:
        opts.set("size", text)
    except OptsError as e:
        error_report(e.message)
        if e.hint:
            sys.stderr.write(e.hint)
            sys.stderr.flush()
        return -1
    return opts.get_size("size", 0)


def img_resize(argv: list[str]) -> int:
    if len(argv) < 3:
        error_exit("Not enough arguments")
    size = argv[-1]
    g = img_getopt(argv[:-1], ":f:hq",
                   [("help", 0, "h"), ("object", 1, OPTION_OBJECT),
                    ("image-opts", 0, OPTION_IMAGE_OPTS),
                    ("preallocation", 1, OPTION_PREALLOCATION), ("shrink", 0, OPTION_SHRINK)])
    fmt = None
    quiet = image_opts = shrink = False
    prealloc = "off"
    for c in g:
        if c == "f":
            fmt = g.optarg
        elif c == "q":
            quiet = True
        elif c == OPTION_IMAGE_OPTS:
            image_opts = True
        elif c == OPTION_PREALLOCATION:
            if g.optarg not in PREALLOC_MODES:
                error_report(f"Invalid preallocation mode '{g.optarg}'")
                return 1
            prealloc = g.optarg
        elif c == OPTION_SHRINK:
            shrink = True
    if g.optind != len(g.argv) - 1:
        error_exit("Expecting image file name and size")
    filename = g.argv[g.optind]
    relative = {"+": 1, "-": -1}.get(size[:1], 0)
    if relative:
        size = size[1:]
    n = _parse_size(size)
    if n < 0:
        return 1
    from emulator.cli.imgopen import close, img_open
    node = img_open(image_opts, filename, fmt, read_only=False)
    if node is None:
        return 1
    try:
        return _resize(node, _int64(n), relative, prealloc, shrink, quiet)
    finally:
        close(node)


def _resize(node, n: int, relative: int, prealloc: str, shrink: bool, quiet: bool) -> int:
    from emulator.block import io
    from emulator.block.node import BlockError
    current = io.getlength(node)
    total = _int64(current + n * relative) if relative else n
    if total <= 0:
        error_report("New image size must be positive")
        return 1
    if total <= current and prealloc != "off":
        error_report("Preallocation can only be used for growing images")
        return 1
    if total < current and not shrink:
        error_report("Use the --shrink option to perform a shrink operation.")
        warn_report("Shrinking an image will delete all data beyond the shrunken image's end. "
                    "Before performing such an operation, make sure there is no important "
                    "data there.")
        return 1
    try:
        io.truncate(node, total, exact=True, prealloc=prealloc)
    except BlockError as e:
        from emulator.cli.errors import report_err
        report_err(e.message, e.hint)
        return 1
    if not quiet:
        sys.stdout.write("Image resized.\n")
    return 0
