"""qemu-img dd (img_dd): copy an image block by block into a newly created one."""
from __future__ import annotations

import os

from emulator.cli.img_common import img_getopt, parse_size_arg
from emulator.report import error_report

OPTION_OBJECT, OPTION_IMAGE_OPTS = 256, 257
INT_MAX = (1 << 31) - 1
INT64_MAX = (1 << 63) - 1


class _Dd:
    """The operands: block size, count, skip, input and output names."""

    bsz = 512
    count = 0
    skip = 0
    infile: str | None = None
    outfile: str | None = None

    def __init__(self) -> None:
        self.given: set = set()

    def set(self, name: str, value: str) -> bool:
        """One ``name=value`` operand; False after QEMU's message."""
        if name == "bs":
            res = parse_size_arg("bs", value, 1, INT_MAX)
            if res < 0:
                return False
            self.bsz = res
        elif name in ("count", "skip"):
            res = parse_size_arg(name, value)
            if res < 0:
                return False
            setattr(self, name, res)
        elif name == "if":
            self.infile = value
        else:
            self.outfile = value
        self.given.add(name)
        return True


def img_dd(argv: list[str]) -> int:
    g = img_getopt(argv, ":hf:O:U", [("help", 0, "h"), ("object", 1, OPTION_OBJECT),
                                     ("image-opts", 0, OPTION_IMAGE_OPTS),
                                     ("force-share", 0, "U")])
    out_fmt = "raw"
    fmt = None
    image_opts = force_share = False
    for c in g:
        if c == "O":
            out_fmt = g.optarg
        elif c == "f":
            fmt = g.optarg
        elif c == "U":
            force_share = True
        elif c == OPTION_IMAGE_OPTS:
            image_opts = True
    dd = _Dd()
    for arg in g.argv[g.optind:]:
        name, sep, value = arg.partition("=")
        if not sep or name not in ("bs", "count", "if", "of", "skip"):
            error_report(f"unrecognized operand {name}")
            return 1
        if not dd.set(name, value):
            return 1
    if not {"if", "of"} <= dd.given:
        error_report("Must specify both input and output files")
        return 1
    from emulator.cli.imgopen import close, img_open
    src = img_open(image_opts, dd.infile, fmt, read_only=True, force_share=force_share)
    if src is None:
        return 1
    target = None
    try:
        ok, target = _dd(dd, src, out_fmt)
    finally:
        for node in (target, src):
            if node is not None:
                close(node)
    return 0 if ok else 1


def _dd(dd: _Dd, src, out_fmt: str):
    """Create and open the output, then copy; (success, opened target or None)."""
    from emulator.block import io
    from emulator.block.node import BlockError
    from emulator.cli.img_target import create_image, target_opts
    from emulator.cli.imgopen import img_open
    opts = target_opts(out_fmt, dd.outfile, "Unknown file format")
    if opts is None:
        return False, None
    size = io.getlength(src)
    if "count" in dd.given and dd.count <= INT64_MAX // dd.bsz and dd.count * dd.bsz < size:
        size = dd.count * dd.bsz
    beyond = "skip" in dd.given and (dd.skip > INT64_MAX // dd.bsz or size < dd.bsz * dd.skip)
    opts.set_number("size", 0 if beyond else size - dd.bsz * dd.skip)
    failure = create_image(out_fmt, dd.outfile, opts)
    if failure is not None:
        from emulator.cli.errors import report_err
        report_err(f"{dd.outfile}: error while creating output image: {failure[0]}", failure[1])
        return False, None
    target = img_open(False, dd.outfile, out_fmt, read_only=False)
    if target is None:
        return False, None
    if beyond:
        error_report(f"{dd.infile}: cannot skip to specified offset")
        in_pos = size
    else:
        in_pos = dd.skip * dd.bsz
    out_pos = 0
    while in_pos < size:
        n = min(dd.bsz, size - in_pos)
        try:
            buf = io.pread(src, in_pos, n)
        except BlockError as e:
            error_report(f"error while reading from input image file: {os.strerror(e.errno)}")
            return False, target
        in_pos += n
        try:
            io.pwrite(target, out_pos, buf)
        except BlockError as e:
            error_report(f"error while writing to output image file: {os.strerror(e.errno)}")
            return False, target
        out_pos += n
    return True, target
