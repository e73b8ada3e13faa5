"""qemu-img convert (img_convert): option checks, sources, target creation and opening.

The copy itself is :mod:`emulator.cli.convert_copy`; --bitmaps is
:mod:`emulator.cli.img_bitmap`'s convert helpers.
"""
from __future__ import annotations


from emulator.cli.img_common import img_getopt, parse_size_arg
from emulator.report import error_report

(OPTION_OBJECT, OPTION_IMAGE_OPTS, OPTION_TARGET_IMAGE_OPTS, OPTION_SALVAGE,
 OPTION_TARGET_IS_ZERO, OPTION_BITMAPS, OPTION_SKIP_BROKEN) = range(256, 263)
MAX_BUF_SECTORS = 32768
MAX_COROUTINES = 16
CACHE_MODES = ("none", "off", "directsync", "writeback", "unsafe", "writethrough")


class _Args:
    """The parsed command line."""

    fmt: str | None = None
    out_fmt: str | None = None
    cache = "unsafe"
    src_cache = "writeback"
    out_baseimg: str | None = None
    backing_fmt: str | None = None
    options: str | None = None
    snapshot: str | None = None
    image_opts = tgt_image_opts = skip_create = progress = force_share = False
    compressed = copy_range = quiet = salvage = has_zero_init = bitmaps = False
    skip_broken = explicit_min_sparse = False
    min_sparse = 8
    num_coroutines = 8
    args: list[str] = []


def _parse(argv: list[str]) -> _Args | None:
    """The getopt loop; None after an error message."""
    from emulator.cli.img_create import accumulate
    a = _Args()
    g = img_getopt(argv, ":hf:O:B:CcF:o:l:S:pt:T:qnm:WUr:",
                   [("help", 0, "h"), ("object", 1, OPTION_OBJECT),
                    ("image-opts", 0, OPTION_IMAGE_OPTS), ("force-share", 0, "U"),
                    ("target-image-opts", 0, OPTION_TARGET_IMAGE_OPTS),
                    ("salvage", 0, OPTION_SALVAGE), ("target-is-zero", 0, OPTION_TARGET_IS_ZERO),
                    ("bitmaps", 0, OPTION_BITMAPS), ("skip-broken-bitmaps", 0, OPTION_SKIP_BROKEN)])
    flags = {"C": "copy_range", "c": "compressed", "p": "progress", "q": "quiet",
             "n": "skip_create", "U": "force_share", OPTION_IMAGE_OPTS: "image_opts",
             OPTION_SALVAGE: "salvage", OPTION_TARGET_IMAGE_OPTS: "tgt_image_opts",
             OPTION_TARGET_IS_ZERO: "has_zero_init", OPTION_BITMAPS: "bitmaps",
             OPTION_SKIP_BROKEN: "skip_broken"}
    strings = {"f": "fmt", "O": "out_fmt", "B": "out_baseimg", "F": "backing_fmt",
               "t": "cache", "T": "src_cache"}
    for c in g:
        if c in flags:
            setattr(a, flags[c], True)
        elif c in strings:
            setattr(a, strings[c], g.optarg)
        elif c == "o":
            a.options = accumulate(a.options, g.optarg)
        elif c == "l":
            from emulator.cli.img_snapshot_load import parse_snapshot_arg
            a.snapshot = parse_snapshot_arg(g.optarg)
            if a.snapshot is None:
                return None
        elif c == "S":
            sval = parse_size_arg("buffer size for sparse output", g.optarg)
            if sval < 0:
                return None
            if sval % 512 or sval // 512 > MAX_BUF_SECTORS:
                error_report("Invalid buffer size for sparse output specified. Valid sizes are "
                             f"multiples of 512 up to {MAX_BUF_SECTORS * 512}. Select 0 to "
                             "disable sparse detection (fully allocates output).")
                return None
            a.min_sparse = sval // 512
            a.explicit_min_sparse = True
        elif c == "m":
            from emulator.units import c_strtol
            value, end = c_strtol(g.optarg, 0)
            if not g.optarg or end != len(g.optarg) or not 1 <= value <= MAX_COROUTINES:
                error_report("Invalid number of coroutines. Allowed number of coroutines is "
                             f"between 1 and {MAX_COROUTINES}")
                return None
            a.num_coroutines = value
        elif c == "r":
            if parse_size_arg("rate limit", g.optarg) < 0:
                return None
    a.args = g.argv[g.optind:]
    return a


def _check_combinations(a: _Args) -> bool:
    """The option conflicts QEMU rejects before opening anything."""
    if a.out_fmt is None and not a.tgt_image_opts:
        a.out_fmt = "raw"
    conflicts = (
        (a.skip_broken and not a.bitmaps, "Use of --skip-broken-bitmaps requires --bitmaps"),
        (a.compressed and a.copy_range, "Cannot enable copy offloading when -c is used"),
        (a.explicit_min_sparse and a.copy_range, "Cannot enable copy offloading when -S is used"),
        (a.copy_range and a.salvage, "Cannot use copy offloading in salvaging mode"),
        (a.tgt_image_opts and not a.skip_create, "--target-image-opts requires use of -n flag"),
        (a.skip_create and a.options is not None,
         "-o has no effect when skipping image creation"),
        (a.has_zero_init and not a.skip_create, "--target-is-zero requires use of -n flag"),
    )
    for bad, msg in conflicts:
        if bad:
            error_report(msg)
            return False
    return True


def img_convert(argv: list[str]) -> int:
    a = _parse(argv)
    if a is None or not _check_combinations(a):
        return 1
    src_num = len(a.args) - 1
    out_filename = a.args[-1] if src_num >= 1 else None
    from emulator.cli.qemuopts import has_help_option
    if a.options is not None and has_help_option(a.options):
        if a.out_fmt is None:
            error_report("Option help requires a format be specified")
            return 1
        from emulator.cli.create_help import print_help
        return print_help(out_filename, a.out_fmt)
    if src_num < 1:
        error_report("Must specify image file name")
        return 1
    if a.src_cache not in CACHE_MODES:
        error_report(f"Invalid source cache option: {a.src_cache}")
        return 1
    from emulator.cli.progress import Progress
    progress = Progress(a.progress and not a.quiet, 1.0)
    progress.print(0, 100)
    from emulator.cli.convert_run import Run
    run = Run(a, src_num, out_filename, progress)
    try:
        ok = run.execute()
    finally:
        run.close()
    if ok:
        progress.print(100, 0)
    progress.end()
    return 0 if ok else 1
