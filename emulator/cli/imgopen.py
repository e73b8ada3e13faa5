"""Opening images the way qemu-img's img_open() does, with its error texts."""
from __future__ import annotations

import errno
import sys
from typing import Optional

from emulator.cli.qemuopts import OptsError, QemuOpts
from emulator.report import error_report


def parse_image_opts(text: str, implied: Optional[str] = "file") -> Optional[dict]:
    """--image-opts string to an options dict (noisy: reports errors, returns None)."""
    opts = QemuOpts()
    try:
        opts.parse(text, firstname=implied, warn_on_flag=True)
    except OptsError as e:
        error_report(e.message)
        if e.hint:
            sys.stderr.write(e.hint)
        return None
    return opts.to_dict()


def open_options(name: Optional[str], options: dict, read_only: bool, force_share: bool,
                 no_backing: bool = False, unmap: bool = False):
    """blk_new_open(name, options): the root node; raises BlockError with QEMU's text."""
    from emulator.block.node import BlockError
    from emulator.block.open import open_image
    opts = dict(options)
    fmt = opts.pop("driver", None)
    share = str(opts.pop("force-share", "off")) in ("on", "True", "true")
    if (share or force_share) and not read_only:
        raise BlockError(errno.EINVAL, "force-share=on can only be used with read-only images")
    filename = name
    if filename is None:
        if "file" in opts:
            ref = opts["file"]
            raise BlockError(errno.EINVAL, f"Cannot find device='{ref}' nor node-name='{ref}'")
        filename = opts.pop("file.filename", None)
        if opts.get("file.driver") == "file":
            opts.pop("file.driver")
        if filename is None:
            if fmt is None:
                raise BlockError(errno.EINVAL, "Must specify either driver or file")
            raise BlockError(errno.EINVAL, 'A block device must be specified for "file"')
    return open_image(filename, fmt, read_only=read_only, options=opts or None,
                      no_backing=no_backing, force_share=share or force_share, unmap=unmap)


def img_open(image_opts: bool, filename: str, fmt: Optional[str], *, read_only: bool = True,
             force_share: bool = False, no_backing: bool = False, unmap: bool = False):
    """img_open(): the node, or None after printing QEMU's message."""
    from emulator.block.node import BlockError
    if image_opts:
        if fmt is not None:
            error_report("--image-opts and --format are mutually exclusive")
            return None
        options = parse_image_opts(filename)
        if options is None:
            return None
        if force_share:
            if "force-share" in options and options["force-share"] != "on":
                error_report("--force-share/-U conflicts with image options")
                return None
            options["force-share"] = "on"
        name = None
    else:
        options = {"driver": fmt} if fmt is not None else {}
        name = filename
    try:
        return open_options(name, options, read_only, force_share, no_backing, unmap)
    except BlockError as e:
        error_report(f"Could not open '{filename}': {e.message}")
        return None


def close(node) -> None:
    from emulator.block.open import close_image
    close_image(node)
