"""qemu-img measure (img_measure, bdrv_measure, raw_measure)."""
from __future__ import annotations

import sys

from emulator.cli.img_common import show_help
from emulator.report import error_report

OPTION_IMAGE_OPTS, OPTION_OBJECT, OPTION_OUTPUT, OPTION_SIZE = 256, 257, 258, 259


def img_measure(argv: list[str]) -> int:
    from emulator.cli.getopt import Getopt, LongOpt
    from emulator.cli.img_common import parse_size_arg
    from emulator.cli.img_create import accumulate
    longopts = [LongOpt("help", 0, "h"), LongOpt("image-opts", 0, OPTION_IMAGE_OPTS),
                LongOpt("object", 1, OPTION_OBJECT), LongOpt("output", 1, OPTION_OUTPUT),
                LongOpt("size", 1, OPTION_SIZE), LongOpt("force-share", 0, "U")]
    g = Getopt(argv, "hf:O:o:l:U", longopts)
    fmt = options = snapshot = None
    out_fmt = "raw"
    json = image_opts = force_share = False
    img_size: int | None = None
    for c in g:
        if c in ("?", "h"):
            show_help()
        elif c == "f":
            fmt = g.optarg
        elif c == "O":
            out_fmt = g.optarg
        elif c == "o":
            options = accumulate(options, g.optarg)
        elif c == "l":
            from emulator.cli.img_snapshot_load import parse_snapshot_arg
            snapshot = parse_snapshot_arg(g.optarg)
            if snapshot is None:
                return 1
        elif c == "U":
            force_share = True
        elif c == OPTION_IMAGE_OPTS:
            image_opts = True
        elif c == OPTION_OBJECT:
            from emulator.cli.objects import process_object
            rc = process_object(g.optarg)
            if rc is not None:
                return rc
        elif c == OPTION_OUTPUT:
            if g.optarg not in ("json", "human"):
                error_report("--output must be used with human or json as argument.")
                return 1
            json = g.optarg == "json"
        elif c == OPTION_SIZE:
            img_size = parse_size_arg("image size", g.optarg)
            if img_size < 0:
                return 1
    args = g.argv[g.optind:]
    if len(args) > 1:
        error_report("At most one filename argument is allowed.")
        return 1
    filename = args[0] if args else None
    if filename is None and (image_opts or fmt is not None or snapshot is not None):
        error_report("--image-opts, -f, and -l require a filename argument.")
        return 1
    if filename is not None and img_size is not None:
        error_report("--size N cannot be used together with a filename.")
        return 1
    if filename is None and img_size is None:
        error_report("Either --size N or one filename must be specified.")
        return 1
    node = None
    try:
        if filename is not None:
            from emulator.cli.imgopen import img_open
            node = img_open(image_opts, filename, fmt, read_only=True, force_share=force_share)
            if node is None:
                return 1
            if snapshot is not None:
                from emulator.cli.img_snapshot_load import load_tmp_snapshot
                if not load_tmp_snapshot(node, snapshot):
                    return 1
        info = _measure(out_fmt, options, img_size, node)
        if info is None:
            return 1
    finally:
        if node is not None:
            from emulator.cli.imgopen import close
            close(node)
    _print(info, json)
    return 0


#: formats whose drivers have creation options but no size measurement
_NO_MEASURE = ("file", "gluster", "host_cdrom", "host_device", "iscsi", "iser", "nbd", "nfs",
               "nvme", "parallels", "qcow", "qed", "rbd", "ssh", "vdi", "vhdx", "vmdk", "vpc")


def _measure(out_fmt: str, options: str | None, img_size: int | None, node):
    """Validate -O/-o and run the target driver's measure; None after an error."""
    from emulator.block.node import BlockError
    from emulator.cli import create_opts
    from emulator.cli.img_create import KNOWN_FORMATS
    from emulator.cli.qemuopts import OptsError, QemuOpts
    if out_fmt not in KNOWN_FORMATS:
        error_report(f"Unknown file format '{out_fmt}'")
        return None
    if out_fmt not in create_opts.FORMATS and out_fmt not in _NO_MEASURE + ("luks",):
        error_report(f"Format driver '{out_fmt}' does not support image creation")
        return None
    if out_fmt not in create_opts.FORMATS:
        if options is None and out_fmt != "luks":
            error_report(f"Block driver '{out_fmt}' does not support size measurement")
        else:
            error_report(f"Driver '{out_fmt}' is not modelled by qcowlab")
        return None
    opts = QemuOpts(create_opts.append(create_opts.FORMATS[out_fmt], create_opts.FILE))
    if options:
        try:
            opts.parse(options)
        except OptsError as e:
            error_report(e.message)
            if e.hint:
                sys.stderr.write(e.hint)
            error_report(f"Invalid options for file format '{out_fmt}'")
            return None
    if img_size is not None:
        opts.set_number("size", img_size)
    if out_fmt == "file":
        error_report("Block driver 'file' does not support size measurement")
        return None
    values = {o.name: o.value for o in opts.opts}
    try:
        if out_fmt == "qcow2":
            from emulator.qcow2.measure import measure
            return measure(values, node)
        return _raw_measure(values, node)
    except BlockError as e:
        error_report(e.message)
        return None


def _raw_measure(values: dict, node):
    """raw_measure: the virtual size (rounded to sectors), allocated or not."""
    from emulator.qcow2.measure import MeasureInfo
    if node is not None:
        from emulator.block import io
        required = io.getlength(node)
    else:
        required = -(-values.get("size", 0) // 512) * 512
    return MeasureInfo(required, required)


def _print(info, json: bool) -> None:
    if json:
        from emulator.cli.qobject import to_json_pretty
        d = {"required": info.required, "fully-allocated": info.fully_allocated}
        if info.bitmaps is not None:
            d["bitmaps"] = info.bitmaps
        sys.stdout.write(to_json_pretty(d) + "\n")
        return
    out = f"required size: {info.required}\nfully allocated size: {info.fully_allocated}\n"
    if info.bitmaps is not None:
        out += f"bitmaps size: {info.bitmaps}\n"
    sys.stdout.write(out)

