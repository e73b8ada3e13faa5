"""Creating the output image of qemu-img convert/dd (bdrv_create with a format's options)."""
from __future__ import annotations


from emulator.report import error_report


def target_opts(fmt: str, filename: str, unknown_format: str):
    """A QemuOpts over ``fmt``'s and the file protocol's creation options.

    None after QEMU's message; ``unknown_format`` is the caller's text for an
    unknown format (convert names the format, dd does not).
    """
    from emulator.cli import create_opts
    from emulator.cli.img_create import KNOWN_FORMATS, CreateError, _protocol_of
    from emulator.cli.qemuopts import QemuOpts
    if fmt not in KNOWN_FORMATS:
        error_report(unknown_format)
        return None
    try:
        proto = _protocol_of(filename)
    except CreateError as e:
        error_report(e.message)
        return None
    if fmt not in create_opts.FORMATS or proto != "file":
        which = fmt if fmt not in create_opts.FORMATS else proto
        error_report(f"Driver '{which}' is not modelled by qcowlab")
        return None
    return QemuOpts(create_opts.append(create_opts.FORMATS[fmt], create_opts.FILE))


def create_image(fmt: str, filename: str, opts) -> tuple[str, str] | None:
    """bdrv_create: make the image; the driver's (message, hint), or None on success."""
    from emulator.block.node import BlockError
    from emulator.cli.img_create import driver_create
    try:
        driver_create(fmt, filename, opts)
    except BlockError as e:
        return e.message, e.hint
    return None
