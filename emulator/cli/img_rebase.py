"""qemu-img rebase (img_rebase): change an image's backing file, safely or with -u.

Safe mode copies into the image every range it does not allocate itself where
the old and the new backing files differ, then rewrites the header.
"""
from __future__ import annotations

import os

from emulator.cli.img_common import error_exit, img_getopt
from emulator.report import error_report

OPTION_OBJECT, OPTION_IMAGE_OPTS = 256, 257
IO_BUF_SIZE = 2 * 1024 * 1024
CACHE_MODES = ("none", "off", "directsync", "writeback", "unsafe", "writethrough")


class _Args:
    fmt: str | None = None
    cache = "writeback"
    src_cache = "writeback"
    out_baseimg: str | None = None
    out_basefmt: str | None = None
    unsafe = progress = quiet = image_opts = force_share = False


def img_rebase(argv: list[str]) -> int:
    a = _Args()
    g = img_getopt(argv, ":hf:F:b:upt:T:qU",
                   [("help", 0, "h"), ("object", 1, OPTION_OBJECT),
                    ("image-opts", 0, OPTION_IMAGE_OPTS), ("force-share", 0, "U")])
    strings = {"f": "fmt", "F": "out_basefmt", "b": "out_baseimg", "t": "cache",
               "T": "src_cache"}
    flags = {"u": "unsafe", "p": "progress", "q": "quiet", "U": "force_share",
             OPTION_IMAGE_OPTS: "image_opts"}
    for c in g:
        if c in strings:
            setattr(a, strings[c], g.optarg)
        elif c in flags:
            setattr(a, flags[c], True)
    if g.optind != len(g.argv) - 1:
        error_exit("Expecting one image file name")
    if not a.unsafe and a.out_baseimg is None:
        error_exit("Must specify backing file (-b) or use unsafe mode (-u)")
    filename = g.argv[g.optind]
    from emulator.cli.progress import Progress
    progress = Progress(a.progress and not a.quiet, 2.0)
    progress.print(0, 100)
    nodes: list = []
    try:
        ok = _rebase(a, filename, progress, nodes)
    finally:
        from emulator.cli.imgopen import close
        for node in reversed(nodes):
            close(node)
        progress.end()
    return 0 if ok else 1


def _rebase(a: _Args, filename: str, progress, nodes: list) -> bool:
    from emulator.cli.blockopts import cache_nocache
    from emulator.cli.imgopen import img_open
    if a.cache not in CACHE_MODES:
        error_report(f"Invalid cache option: {a.cache}")
        return False
    if a.src_cache not in CACHE_MODES:
        error_report(f"Invalid source cache option: {a.src_cache}")
        return False
    bs = img_open(a.image_opts, filename, a.fmt, read_only=False, no_backing=a.unsafe,
                  nocache=cache_nocache(a.cache))
    if bs is None:
        return False
    nodes.append(bs)
    if a.out_basefmt is not None:
        from emulator.cli.img_create import KNOWN_FORMATS
        if a.out_basefmt not in KNOWN_FORMATS:
            error_report(f"Invalid format name: '{a.out_basefmt}'")
            return False
    if not a.unsafe:
        new_backing, prefix = None, None
        if a.out_baseimg:
            found = _open_new_backing(a, bs)
            if found is None:
                return False
            new_backing, prefix, opened = found
            if opened:
                nodes.append(new_backing)
        if not _copy_differences(bs, new_backing, prefix, a.out_baseimg, progress):
            return False
    return _change_backing(bs, a.out_baseimg, a.out_basefmt, progress)


def _open_new_backing(a: _Args, bs):
    """(node, prefix chain node or None, opened by us) or None after an error."""
    from emulator.block.node import BlockError
    from emulator.block.open import backing_full_path, open_image
    real_path = backing_full_path(bs.filename, a.out_baseimg)
    prefix = find_backing_image(bs, real_path)
    if prefix is not None:
        return prefix, prefix, False
    try:
        node = open_image(real_path, a.out_basefmt, read_only=True,
                          force_share=a.force_share)
    except BlockError as e:
        from emulator.cli.errors import report_err
        report_err(f"Could not open new backing file '{a.out_baseimg}': {e.message}", e.hint)
        return None
    return node, None, True


def find_backing_image(bs, path: str):
    """bdrv_find_backing_image: the node of bs's chain whose file is ``path``."""
    from emulator.block.open import backing_full_path
    wanted = os.path.realpath(path) if os.path.exists(path) else None
    cur = bs
    while cur is not None and cur.backing is not None:
        if wanted is not None:
            name = backing_full_path(cur.filename, cur.backing_file or "")
            if os.path.exists(name) and os.path.realpath(name) == wanted:
                return cur.backing
        cur = cur.backing
    return None


def _copy_differences(bs, new_backing, prefix, out_baseimg: str, progress) -> bool:
    """The safe-mode loop: keep the guest view while the backing file changes."""
    from emulator.block import io
    from emulator.block.node import BlockError
    from emulator.cli.progress import f32
    old_backing = bs.backing
    size = io.getlength(bs)
    old_size = io.getlength(old_backing) if old_backing is not None else 0
    new_size = io.getlength(new_backing) if new_backing is not None else 0
    step = f32(100.0 / (size // min(size, IO_BUF_SIZE))) if size else 0.0
    offset = 0
    while offset < size:
        n = min(IO_BUF_SIZE, size - offset)
        try:
            allocated, n = io.is_allocated(bs, offset, n)
            if not allocated and prefix is not None:
                nbytes = n
                depth, n = io.is_allocated_above(old_backing, prefix, False, offset, n)
                if not depth and n:
                    offset += n
                    continue
                if not n:
                    n = nbytes
        except BlockError as e:
            error_report(f"error while reading image metadata: {os.strerror(e.errno)}")
            return False
        if allocated:
            offset += n
            continue
        old_is_zero = offset >= old_size
        if old_is_zero:
            buf_old = bytes(n)
        else:
            n = min(n, old_size - offset)
            try:
                buf_old = io.pread(old_backing, offset, n)
            except BlockError:
                error_report("error while reading from old backing file")
                return False
        if offset >= new_size or new_backing is None:
            buf_new = bytes(n)
        else:
            n = min(n, new_size - offset)
            try:
                buf_new = io.pread(new_backing, offset, n)
            except BlockError:
                error_report("error while reading from new backing file")
                return False
        if not _write_differences(bs, offset, buf_old[:n], buf_new[:n], old_is_zero):
            return False
        progress.print(step, 100)
        offset += n
    return True


def _write_differences(bs, offset: int, old: bytes, new: bytes, old_is_zero: bool) -> bool:
    """Write the 512-byte-run-wise differing parts of ``old`` into the image."""
    from emulator.block import io
    from emulator.block.node import BlockError
    written = 0
    n = len(old)
    while written < n:
        i = min(n - written, 512)
        differs = old[written:written + i] != new[written:written + i]
        while written + i < n:
            length = min(n - written - i, 512)
            a, b = written + i, written + i + length
            if (old[a:b] != new[a:b]) != differs:
                break
            i += length
        if differs:
            try:
                if old_is_zero:
                    io.pwrite_zeroes(bs, offset + written, i, 0)
                else:
                    io.pwrite(bs, offset + written, old[written:written + i])
            except BlockError as e:
                error_report(f"Error while writing to COW image: {os.strerror(e.errno)}")
                return False
        written += i
    return True


def _change_backing(bs, out_baseimg: str | None, out_basefmt: str | None,
                    progress) -> bool:
    """bdrv_change_backing_file with qemu-img rebase's error texts."""
    import errno
    from emulator.block.node import BlockError
    err = 0
    if out_baseimg and out_basefmt is None:
        err = errno.EINVAL
    elif bs.format_name != "qcow2":
        err = errno.ENOTSUP
    else:
        try:
            if out_baseimg:
                bs.change_backing_file(out_baseimg, out_basefmt)
            else:
                bs.change_backing_file(None, None)
        except BlockError as e:
            err = e.errno
    if err == errno.ENOSPC:
        error_report(f"Could not change the backing file to '{out_baseimg}': No space left "
                     "in the file header")
    elif err == errno.EINVAL and out_baseimg and not out_basefmt:
        error_report(f"Could not change the backing file to '{out_baseimg}': backing format "
                     "must be specified")
    elif err:
        error_report(f"Could not change the backing file to '{_c_str(out_baseimg)}': "
                     f"{os.strerror(err)}")
    progress.print(100, 0)
    return err == 0


def _c_str(s: str | None) -> str:
    """printf's rendering of a possibly NULL %s."""
    return "(null)" if s is None else s
