"""qemu-img amend (img_amend): change format options of an existing image."""
from __future__ import annotations

import sys

from emulator.cli import create_opts
from emulator.cli.img_common import error_exit, img_getopt
from emulator.cli.qemuopts import NUMBER, STRING, OptDesc, OptsError, QemuOpts, has_help_option
from emulator.report import error_report

OPTION_OBJECT, OPTION_IMAGE_OPTS, OPTION_FORCE = 256, 257, 258

#: qcow2_amend_opts: the LUKS keyslot options, then the options common with create
QCOW2_AMEND: list[OptDesc] = [
    OptDesc("encrypt.state", STRING, None,
            "Select new state of affected keyslots (active/inactive)"),
    OptDesc("encrypt.keyslot", NUMBER, None, "Select a single keyslot to modify explicitly"),
    OptDesc("encrypt.old-secret", STRING, None, "Select all keyslots that match this password"),
    OptDesc("encrypt.new-secret", STRING, None,
            "New secret to set in the matching keyslots. Empty string to erase"),
    OptDesc("encrypt.iter-time", NUMBER, None, "Time to spend in PBKDF in milliseconds"),
    *[d for d in create_opts.QCOW2 if d.name in (
        "size", "compat", "backing_file", "backing_fmt", "data_file", "data_file_raw",
        "lazy_refcounts", "refcount_bits")],
]

#: block_crypto_amend_opts_luks
LUKS_AMEND: list[OptDesc] = [
    OptDesc(d.name[len("encrypt."):], d.type, d.default, d.help) for d in QCOW2_AMEND[:5]]
AMEND_OPTS = {"qcow2": QCOW2_AMEND, "luks": LUKS_AMEND}


def _print_help(fmt: str) -> int:
    """print_amend_option_help()."""
    from emulator.cli.create_help import help_lines
    from emulator.cli.img_create import KNOWN_FORMATS
    if fmt not in KNOWN_FORMATS:
        error_report(f"Unknown file format '{fmt}'")
        return 1
    if fmt not in AMEND_OPTS:
        error_report(f"Format driver '{fmt}' does not support option amendment")
        return 1
    sys.stdout.write(f"Amend options for '{fmt}':\n")
    sys.stdout.write("".join(line + "\n" for line in help_lines(AMEND_OPTS[fmt])))
    return 0


def img_amend(argv: list[str]) -> int:
    from emulator.cli.img_create import accumulate
    g = img_getopt(argv, ":ho:f:t:pq",
                   [("help", 0, "h"), ("object", 1, OPTION_OBJECT),
                    ("image-opts", 0, OPTION_IMAGE_OPTS), ("force", 0, OPTION_FORCE)])
    options: str | None = None
    fmt: str | None = None
    cache = "writeback"
    quiet = progress = image_opts = force = False
    for c in g:
        if c == "o":
            options = accumulate(options, g.optarg)
        elif c == "f":
            fmt = g.optarg
        elif c == "t":
            cache = g.optarg
        elif c == "p":
            progress = True
        elif c == "q":
            quiet = True
        elif c == OPTION_IMAGE_OPTS:
            image_opts = True
        elif c == OPTION_FORCE:
            force = True
    if options is None:
        error_exit("Must specify options (-o)")
    from emulator.cli.progress import Progress
    meter = Progress(progress and not quiet, 1.0)
    try:
        return _amend(g.argv[g.optind:], options, fmt, cache, image_opts, force, meter)
    finally:
        meter.end()


def _amend(args: list[str], options: str, fmt: str | None, cache: str, image_opts: bool,
           force: bool, meter) -> int:
    if fmt is not None and has_help_option(options):
        return _print_help(fmt)
    if len(args) != 1:
        error_report("Expecting one image file name")
        return 1
    from emulator.cli.blockopts import CACHE_MODES, cache_nocache
    if cache not in CACHE_MODES:
        error_report(f"Invalid cache option: {cache}")
        return 1
    from emulator.cli.imgopen import close, img_open
    node = img_open(image_opts, args[0], fmt, read_only=False, nocache=cache_nocache(cache))
    if node is None:
        return 1
    try:
        return _run(node, options, force, meter)
    finally:
        close(node)


def _parse(options: str, fmt: str) -> QemuOpts | None:
    """The -o list against the amend options; None after QEMU's message (and hint)."""
    from emulator.cli.errors import report_err
    opts = QemuOpts(AMEND_OPTS[fmt])
    try:
        opts.parse(options)
        return opts
    except OptsError as e:
        err = e
    hint = ""
    try:
        QemuOpts(create_opts.append(AMEND_OPTS[fmt], create_opts.FORMATS[fmt])).parse(options)
        hint = "This option is only supported for image creation\n"
    except OptsError:
        pass
    report_err(err.message, err.hint + hint)
    return None


def _run(node, options: str, force: bool, meter) -> int:
    from emulator.block.node import BlockError
    from emulator.cli.errors import report_err
    from emulator.cli.progress import f32
    fmt = node.format_name
    if has_help_option(options):
        return _print_help(fmt)
    if fmt not in AMEND_OPTS:
        error_report(f"Format driver '{fmt}' does not support option amendment")
        return 1
    opts = _parse(options, fmt)
    if opts is None:
        return 1
    given = {o.name: o.value for o in opts.opts}
    meter.print(0.0, 0)
    try:
        if fmt == "luks":
            node.amend(given, force)
        else:
            from emulator.qcow2.amend import amend
            amend(node, given, force, lambda done, total: meter.print(
                f32(f32(100.0 * f32(done)) / total), 0))
    except BlockError as e:
        meter.print(100.0, 0)
        report_err(e.message, e.hint)
        return 1
    meter.print(100.0, 0)
    return 0
