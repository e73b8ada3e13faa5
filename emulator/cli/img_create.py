"""qemu-img create (img_create + bdrv_img_create)."""
from __future__ import annotations

import errno
import sys

from emulator.cli import create_opts
from emulator.cli.errors import report_err
from emulator.cli.img_common import ImgExit, error_exit, img_getopt, parse_size_arg
from emulator.cli.qemuopts import OptsError, QemuOpts, has_help_option
from emulator.report import error_report

#: formats QEMU 7.2 knows (qemu-img --help); only FORMATS in create_opts are modelled
KNOWN_FORMATS = (
    "blkdebug blklogwrites blkverify bochs cloop compress copy-before-write copy-on-read "
    "dmg file ftp ftps gluster host_cdrom host_device http https iscsi iser luks nbd nfs "
    "null-aio null-co nvme parallels preallocate qcow qcow2 qed quorum raw rbd replication "
    "snapshot-access ssh throttle vdi vhdx vmdk vpc vvfat").split()
PROTOCOLS = ("file", "host_device", "host_cdrom", "nbd", "nbd+tcp", "nbd+unix", "http",
             "https", "ftp", "ftps", "ssh", "iscsi", "iser", "gluster", "nfs", "rbd",
             "null-co", "null-aio", "nvme", "blkdebug", "blkverify", "vvfat")


class CreateError(Exception):
    """An Error of bdrv_img_create: message plus optional hint."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


def valid_option_list(text: str) -> bool:
    """is_valid_option_list(): not empty, no leading comma, no odd trailing commas."""
    if not text or text.startswith(","):
        return False
    trailing = len(text) - len(text.rstrip(","))
    return trailing % 2 == 0


def accumulate(options: str | None, arg: str) -> str:
    if not valid_option_list(arg):
        error_report(f"Invalid option list: {arg}")
        raise ImgExit(1)
    return arg if options is None else f"{options},{arg}"


def img_create(argv: list[str]) -> int:
    fmt = "raw"
    base_fmt = base_filename = options = None
    quiet = no_backing = False
    g = img_getopt(argv, ":F:b:f:ho:qu", [("help", 0, "h"), ("object", 1, "object")])
    for c in g:
        if c == "F":
            base_fmt = g.optarg
        elif c == "b":
            base_filename = g.optarg
        elif c == "f":
            fmt = g.optarg
        elif c == "o":
            options = accumulate(options, g.optarg)
        elif c == "q":
            quiet = True
        elif c == "u":
            no_backing = True
    args = g.argv[g.optind:]
    filename = args[0] if args else None
    if options is not None and has_help_option(options):
        return print_option_help(filename, fmt)
    if not args:
        error_exit("Expecting image file name")
    img_size = -1
    if len(args) > 1:
        size = parse_size_arg("image size", args[1])
        if size < 0:
            return 1
        img_size = size
    if len(args) > 2:
        error_exit(f"Unexpected argument: {args[2]}")
    try:
        bdrv_img_create(filename, fmt, base_filename, base_fmt, options, img_size,
                        no_backing, quiet)
    except CreateError as e:
        report_err(f"{filename}: {e.message}", e.hint)
        return 1
    return 0


def _protocol_of(filename: str) -> str:
    colon = filename.find(":")
    slash = filename.find("/")
    if colon < 0 or (0 <= slash < colon):
        return "file"
    prefix = filename[:colon]
    if prefix not in PROTOCOLS:
        raise CreateError(f"Unknown protocol '{prefix}'")
    return prefix


def _opts_list(fmt: str, filename: str):
    if fmt not in KNOWN_FORMATS:
        raise CreateError(f"Unknown file format '{fmt}'")
    proto = _protocol_of(filename)
    if fmt not in create_opts.FORMATS or proto != "file":
        which = fmt if fmt not in create_opts.FORMATS else proto
        raise CreateError(f"Driver '{which}' is not modelled by qcowlab")
    return create_opts.append(create_opts.FORMATS[fmt], create_opts.FILE)


def bdrv_img_create(filename: str, fmt: str, base_filename: str | None,
                    base_fmt: str | None, options: str | None, img_size: int,
                    no_backing: bool, quiet: bool) -> None:
    """Validate, print the Formatting line and create; raises CreateError."""
    opts = QemuOpts(_opts_list(fmt, filename))
    try:
        if options:
            opts.parse(options)
        if opts.find("size") is None:
            opts.set_number("size", img_size)
        elif img_size != -1:
            raise CreateError("The image size must be specified only once")
    except OptsError as e:
        raise CreateError(e.message, e.hint) from None
    for name, value, what in (("backing_file", base_filename, "Backing file"),
                              ("backing_fmt", base_fmt, "Backing file format")):
        if value is None:
            continue
        try:
            opts.set(name, value)
        except OptsError:
            raise CreateError(f"{what} not supported for file format '{fmt}'") from None
    backing_file = opts.get("backing_file")
    if backing_file is not None:
        if backing_file == filename:
            raise CreateError("Error: Trying to create an image with the same filename "
                              "as the backing file")
        if backing_file == "":
            raise CreateError("Expected backing file name, got empty string")
    backing_fmt = opts.get("backing_fmt")
    size = _signed(opts.get_size("size", img_size))
    if backing_file is not None and not no_backing:
        size = _probe_backing(filename, backing_file, backing_fmt, size, opts)
    elif backing_file is not None and backing_fmt is None:
        raise CreateError("Backing file specified without backing format")
    if size == -1:
        raise CreateError("Image creation needs a size parameter")
    if not quiet:
        sys.stdout.write(f"Formatting '{filename}', fmt={fmt} {opts.print_str(' ')}\n")
        sys.stdout.flush()
    _create(fmt, filename, opts)


def _signed(v: int) -> int:
    return v - (1 << 64) if v >= (1 << 63) else v


def _probe_backing(filename: str, backing_file: str, backing_fmt: str | None, size: int,
                   opts: QemuOpts) -> int:
    from emulator.block import io as bio
    from emulator.block.node import BlockError
    from emulator.block.open import OPEN_FLAG, backing_full_path
    from emulator.cli.imgopen import close, open_options
    has_protocol = ":" in backing_file.split("/", 1)[0]
    full = backing_file if has_protocol else backing_full_path(filename, backing_file)
    options = {"driver": backing_fmt} if backing_fmt is not None else {}
    options["x-no-io"] = OPEN_FLAG  # BDRV_O_NO_IO: an encrypted backing file needs no key
    try:
        node = open_options(full, options, True, True)
    except BlockError as e:
        raise CreateError(e.message, e.hint + "Could not open backing image.\n") from None
    try:
        if backing_fmt is None:
            raise CreateError("Backing file specified without backing format",
                              f"Detected format of {node.format_name}.")
        if size == -1:
            try:
                size = bio.getlength(node)
            except BlockError as e:
                raise CreateError(f"Could not get size of '{backing_file}': "
                                  f"{e.message}", e.hint) from None
            opts.set_number("size", size)
    finally:
        close(node)
    return size


def driver_create(fmt: str, filename: str, opts: QemuOpts) -> None:
    """bdrv_create: hand the set options (last one wins) to the format's create; raises BlockError."""
    values = {}
    for opt in opts.opts:
        values.pop(opt.name, None)
        values[opt.name] = opt.value
    if fmt == "qcow2":
        from emulator.qcow2.create import create
    elif fmt == "luks":
        from emulator.block.luks import create
    else:
        from emulator.block.raw import create
    create(filename[5:] if filename.startswith("file:") else filename, values)


def _create(fmt: str, filename: str, opts: QemuOpts) -> None:
    from emulator.block.node import BlockError
    try:
        driver_create(fmt, filename, opts)
    except BlockError as e:
        if e.errno == errno.EFBIG:
            hint = " (try using a larger cluster size)" if opts.get_size("cluster_size", 0) else ""
            raise CreateError(f"The image size is too large for file format '{fmt}'{hint}") \
                from None
        raise CreateError(e.message, e.hint) from None


def print_option_help(filename: str | None, fmt: str) -> int:
    """qemu-img create -o help: the creation options of the format (and protocol)."""
    from emulator.cli.create_help import print_help
    return print_help(filename, fmt)
