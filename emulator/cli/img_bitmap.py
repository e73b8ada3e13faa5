"""qemu-img bitmap (img_bitmap): add, remove, clear, enable, disable and merge
persistent dirty bitmaps, through the block-dirty-bitmap-* QMP command logic."""
from __future__ import annotations

from emulator.cli.img_common import img_getopt
from emulator.report import error_report

(OPTION_OBJECT, OPTION_IMAGE_OPTS, OPTION_ADD, OPTION_REMOVE, OPTION_CLEAR, OPTION_ENABLE,
 OPTION_DISABLE, OPTION_MERGE) = range(256, 264)
_ACTS = {OPTION_ADD: "add", OPTION_REMOVE: "remove", OPTION_CLEAR: "clear",
         OPTION_ENABLE: "enable", OPTION_DISABLE: "disable", OPTION_MERGE: "merge"}


def img_bitmap(argv: list[str]) -> int:
    from emulator.cli.img_common import parse_size_arg
    g = img_getopt(argv, ":b:f:F:g:h",
                   [("help", 0, "h"), ("object", 1, OPTION_OBJECT),
                    ("image-opts", 0, OPTION_IMAGE_OPTS), ("add", 0, OPTION_ADD),
                    ("remove", 0, OPTION_REMOVE), ("clear", 0, OPTION_CLEAR),
                    ("enable", 0, OPTION_ENABLE), ("disable", 0, OPTION_DISABLE),
                    ("merge", 1, OPTION_MERGE), ("granularity", 1, "g"),
                    ("source-file", 1, "b"), ("source-format", 1, "F")])
    fmt = src_fmt = src_filename = None
    image_opts = False
    granularity = 0
    actions: list[tuple[str, str | None]] = []
    for c in g:
        if c == "b":
            src_filename = g.optarg
        elif c == "f":
            fmt = g.optarg
        elif c == "F":
            src_fmt = g.optarg
        elif c == "g":
            granularity = parse_size_arg("granularity", g.optarg)
            if granularity < 0:
                return 1
        elif c in _ACTS:
            actions.append((_ACTS[c], g.optarg if c == OPTION_MERGE else None))
        elif c == OPTION_IMAGE_OPTS:
            image_opts = True
    kinds = {a for a, _ in actions}
    for bad, msg in (
            (not actions, "Need at least one of --add, --remove, --clear, --enable, "
                          "--disable, or --merge"),
            (granularity and "add" not in kinds, "granularity only supported with --add"),
            (src_fmt is not None and src_filename is None, "-F only supported with -b"),
            (src_filename is not None and "merge" not in kinds,
             "Merge bitmap source file only supported with --merge"),
            (g.optind != len(g.argv) - 2, "Expecting filename and bitmap name")):
        if bad:
            error_report(msg)
            return 1
    filename, name = g.argv[g.optind], g.argv[g.optind + 1]
    from emulator.cli.imgopen import close, img_open
    node = img_open(image_opts, filename, fmt, read_only=False, no_backing=True)
    if node is None:
        return 1
    src = None
    try:
        if src_filename is not None:
            src = img_open(False, src_filename, src_fmt, no_backing=True)
            if src is None:
                return 1
        return _run(node, src if src is not None else node, name, actions, granularity)
    finally:
        if src is not None:
            close(src)
        close(node)


def _run(node, src, name: str, actions: list, granularity: int) -> int:
    from emulator.cli.errors import report_err
    from emulator.qcow2 import bitmap_ops as ops
    from emulator.qcow2.bitmap_dirty import BitmapError
    for act, source in actions:
        try:
            if act == "add":
                ops.add(node, name, granularity & 0xFFFFFFFF if granularity else None)
            elif act == "remove":
                ops.remove(node, name)
            elif act == "clear":
                ops.clear(node, name)
            elif act in ("enable", "disable"):
                ops.set_enabled(node, name, act == "enable")
            else:
                ops.merge(node, name, src, source)
        except BitmapError as e:
            report_err(f"Operation {act} on bitmap {name} failed: {e.message}", e.hint)
            return 1
    return 0


def convert_check_bitmaps(src, skip_broken: bool) -> bool:
    """convert_check_bitmaps: the source's bitmaps can be copied (else QEMU's message)."""
    import sys
    if not (src.format_name == "qcow2" and src.qcow_version >= 3):
        error_report("Source lacks bitmap support")
        return False
    for bm in getattr(src, "dirty_bitmaps", None) or ():
        if bm.persistent and bm.inconsistent and not skip_broken:
            error_report(f"Cannot copy inconsistent bitmap '{bm.name}'")
            sys.stderr.write("Try --skip-broken-bitmaps, or use 'qemu-img bitmap --remove' "
                             "to delete it\n")
            sys.stderr.flush()
            return False
    return True


def convert_copy_bitmaps(src, dst, skip_broken: bool) -> bool:
    """convert_copy_bitmaps: each persistent source bitmap added to the target and merged."""
    from emulator.cli.errors import report_err
    from emulator.qcow2 import bitmap_ops as ops
    from emulator.qcow2.bitmap_dirty import BitmapError
    from emulator.report import warn_report
    dst.no_flush = True  # convert opens its target with cache=unsafe
    for bm in list(getattr(src, "dirty_bitmaps", None) or ()):
        if not bm.persistent:
            continue
        if skip_broken and bm.inconsistent:
            warn_report(f"Skipping inconsistent bitmap '{bm.name}'")
            continue
        try:
            ops.add(dst, bm.name, bm.granularity, not bm.enabled)
        except BitmapError as e:
            report_err(f"Failed to create bitmap {bm.name}: {e.message}", e.hint)
            return False
        try:
            ops.merge(dst, bm.name, src, bm.name)
        except BitmapError as e:
            report_err(f"Failed to populate bitmap {bm.name}: {e.message}", e.hint)
            try:
                ops.remove(dst, bm.name)
            except BitmapError:
                pass
            return False
    return True
