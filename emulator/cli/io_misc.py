"""qemu-io's other image commands: flush, truncate, length, info, alloc, map, open, reopen."""
from __future__ import annotations

import errno

from emulator.cli import blockopts
from emulator.cli.errors import report_err
from emulator.cli.getopt import Getopt
from emulator.cli.io_cmds import (
    OPEN, REOPEN, SECTOR, TRUNCATE, IoSession, errstr, usage,
)
from emulator.cli.io_fmt import cvtnum, out, print_cvtnum_err
from emulator.report import SignalRaised
from emulator.cli.qemuopts import OptsError, QemuOpts
from emulator.report import error_report
from emulator.units import cvtstr


def _flush(s: IoSession, argv: list[str]) -> int:
    from emulator.block import io as bio
    from emulator.block.node import BlockError
    try:
        bio.flush(s.blk)
    except BlockError as e:
        return -e.errno
    return 0


def _aio_flush(s: IoSession, argv: list[str]) -> int:
    s.drain()
    return 0


def _truncate(s: IoSession, argv: list[str]) -> int:
    from emulator.block import io as bio
    from emulator.block.node import BlockError
    prealloc = "off"
    g = Getopt(argv, "m:")
    for c in g:
        if c == "m":
            if g.optarg not in blockopts.PREALLOC_MODES:
                error_report(f"Invalid preallocation mode '{g.optarg}'")
                return -errno.EINVAL
            prealloc = g.optarg
        else:
            usage(TRUNCATE)
            return -errno.EINVAL
    argv = g.argv
    if g.optind >= len(argv):
        raise SignalRaised(11, flushed=False)  # QEMU 7.2 dereferences a NULL offset here
    offset = cvtnum(argv[g.optind])
    if offset < 0:
        print_cvtnum_err(offset, argv[1])
        return offset
    try:
        bio.truncate(s.blk, offset, exact=False, prealloc=prealloc)
    except BlockError as e:
        report_err(e.message, e.hint)
        return -e.errno
    return 0


def _length(s: IoSession, argv: list[str]) -> int:
    from emulator.block import io as bio
    from emulator.block.node import BlockError
    try:
        size = bio.getlength(s.blk)
    except BlockError as e:
        out(f"getlength: {errstr(e.errno)}\n")
        return -e.errno
    out(cvtstr(size) + "\n")
    return 0


def _info(s: IoSession, argv: list[str]) -> int:
    from emulator.cli.info import driver_info, specific_info
    from emulator.cli.qobject import human_dump
    node = s.blk
    if node.format_name:
        out(f"format name: {node.format_name}\n")
    protocol = getattr(node, "protocol_name", "file" if node.format_name == "file" else None)
    if protocol:
        out(f"format name: {protocol}\n")
    if getattr(node, "no_get_info", False):  # bdrv_get_info: -ENOTSUP, nothing printed
        return -errno.ENOTSUP
    cluster_size, vm_state_offset = driver_info(node)
    out(f"cluster size: {cvtstr(cluster_size)}\n")
    out(f"vm state offset: {cvtstr(vm_state_offset)}\n")
    spec = specific_info(node)
    if spec is not None:
        out("Format specific information:\n")
        out(human_dump(spec["data"]))
    return 0


def _alloc(s: IoSession, argv: list[str]) -> int:
    from emulator.block import io as bio
    from emulator.block.aio_context import poll_co
    from emulator.block.node import BlockError
    start = offset = cvtnum(argv[1])
    if offset < 0:
        print_cvtnum_err(offset, argv[1])
        return offset
    if len(argv) == 3:
        count = cvtnum(argv[2])
        if count < 0:
            print_cvtnum_err(count, argv[2])
            return count
    else:
        count = SECTOR
    remaining = count
    sum_alloc = 0
    while remaining:
        try:
            allocated, num = poll_co(lambda: bio.is_allocated(s.blk, offset, remaining))
        except BlockError as e:
            out(f"is_allocated failed: {errstr(e.errno)}\n")
            return -e.errno
        offset += num
        remaining -= num
        if allocated:
            sum_alloc += num
        if num == 0:
            count -= remaining
            remaining = 0
    out(f"{sum_alloc}/{count} bytes allocated at offset {cvtstr(start)}\n")
    return 0


def _map_is_allocated(node, offset: int, length: int):
    """map_is_allocated: only the first query's error counts; a later one just
    ends the run (reported by the next call)."""
    from emulator.block import io as bio
    from emulator.block.aio_context import poll_co
    from emulator.block.node import BlockError
    first, num = poll_co(lambda: bio.is_allocated(node, offset, length))
    pnum = num
    while length > 0:
        offset += num
        length -= num
        try:
            allocated, num = poll_co(lambda: bio.is_allocated(node, offset, length))
        except BlockError:
            break
        if allocated == first and num:
            pnum += num
        else:
            break
    return first, pnum


def _map(s: IoSession, argv: list[str]) -> int:
    from emulator.block import io as bio
    from emulator.block.node import BlockError
    try:
        length = bio.getlength(s.blk)
    except BlockError as e:
        error_report(f"Failed to query image length: {errstr(e.errno)}")
        return -e.errno
    offset = 0
    while length:
        try:
            allocated, num = _map_is_allocated(s.blk, offset, length)
        except BlockError as e:
            error_report(f"Failed to get allocation status: {errstr(e.errno)}")
            return -e.errno
        if not num:
            error_report("Unexpected end of image")
            return -errno.EIO
        state = "    allocated" if allocated else "not allocated"
        out(f"{cvtstr(num)} (0x{num:x}) bytes {state} at offset {cvtstr(offset)} (0x{offset:x})\n")
        offset += num
        length -= num
    return 0


# ---------------------------------------------------------------- session commands

def _parse_opts_noisily(opts: QemuOpts, text: str) -> bool:
    """qemu_opts_parse_noisily() on an accept-anything list."""
    try:
        opts.parse(text, warn_on_flag=True)
    except OptsError as e:
        report_err(e.message, e.hint)
        return False
    return True


def _open(s: IoSession, argv: list[str]) -> int:
    read_only = snapshot = nocache = copy_on_read = native_aio = False
    writethrough = True
    force_share = False
    unmap = True
    opts = QemuOpts()
    g = Getopt(argv, "snCro:ki:t:d:U")
    for c in g:
        if c == "k":
            native_aio = True
        elif c == "n":
            nocache, writethrough = True, False
        elif c == "C":
            copy_on_read = True
        elif c == "s":
            snapshot = True
        elif c == "r":
            read_only = True
        elif c == "t":
            if g.optarg not in blockopts.CACHE_MODES:
                error_report(f"Invalid cache option: {g.optarg}")
                return -errno.EINVAL
            nocache = blockopts.cache_nocache(g.optarg)
            writethrough = blockopts.cache_writethrough(g.optarg)
        elif c == "d":
            if g.optarg not in blockopts.DISCARD_MODES:
                error_report(f"Invalid discard option: {g.optarg}")
                return -errno.EINVAL
            unmap = g.optarg in ("on", "unmap")
        elif c == "i":
            if g.optarg not in blockopts.AIO_MODES:
                error_report(f"Invalid aio option: {g.optarg}")
                return -errno.EINVAL
            native_aio = native_aio or g.optarg == "native"
        elif c == "o":
            if s.image_opts:
                out("--image-opts and 'open -o' are mutually exclusive\n")
                return -errno.EINVAL
            if not _parse_opts_noisily(opts, g.optarg):
                return -errno.EINVAL
        elif c == "U":
            force_share = True
        else:
            usage(OPEN)
            return -errno.EINVAL
    argv = g.argv
    optind = g.optind
    if s.image_opts and optind == len(argv) - 1:
        if not _parse_opts_noisily(opts, argv[optind]):
            return -errno.EINVAL
        optind += 1
    dict_opts = opts.to_dict() if opts.opts else None
    if optind == len(argv) - 1:
        ret = s.openfile(argv[optind], read_only, force_share, dict_opts, unmap, snapshot,
                         writethrough, nocache, copy_on_read, native_aio)
    elif optind == len(argv):
        ret = s.openfile(None, read_only, force_share, dict_opts, unmap, snapshot,
                         writethrough, nocache, copy_on_read, native_aio)
    else:
        usage(OPEN)
        return -errno.EINVAL
    return -errno.EINVAL if ret else 0


def _reopen(s: IoSession, argv: list[str]) -> int:
    """reopen [-r|-w] [-c cache] [-o options]: the read-only state and the runtime options."""
    rw: bool | None = None
    cache_given = False
    writethrough = s.writethrough
    opts = QemuOpts()
    g = Getopt(argv, "c:o:rw")
    for c in g:
        if c == "c":
            if g.optarg not in blockopts.CACHE_MODES:
                error_report(f"Invalid cache option: {g.optarg}")
                return -errno.EINVAL
            cache_given = True
            cache_mode = g.optarg
            writethrough = blockopts.cache_writethrough(g.optarg)
        elif c == "o":
            if not _parse_opts_noisily(opts, g.optarg):
                return -errno.EINVAL
        elif c in ("r", "w"):
            if rw is not None:
                error_report("Only one -r/-w option may be given")
                return -errno.EINVAL
            rw = c == "w"
        else:
            usage(REOPEN)
            return -errno.EINVAL
    if g.optind != len(g.argv):
        usage(REOPEN)
        return -errno.EINVAL
    values = opts.to_dict()
    read_only = s.blk.read_only if rw is None else not rw
    nocache = _nocache(s.blk)
    if cache_given:
        nocache = blockopts.cache_nocache(cache_mode)
    if read_only:  # qemu-io drops the BlockBackend's write permission first
        _drop_write_perm(s)
    if "read-only" in values:
        if rw is not None:
            error_report("Cannot set both -r/-w and 'read-only'")
            return -errno.EINVAL
    else:
        values["read-only"] = "on" if read_only else "off"
    if "cache.direct" in values or "cache.no-flush" in values:
        if cache_given:
            error_report("Cannot set both -c and the cache options")
            return -errno.EINVAL
    else:
        values["cache.direct"] = "on" if nocache else "off"
    from emulator.block import reopen
    from emulator.block.node import BlockError
    from emulator.block.options import is_on, opt_text
    try:
        plan = reopen.prepare(s.blk, values, s.write_perm)
    except BlockError as e:
        report_err(e.message, e.hint)
        return -errno.EINVAL
    reopen.commit(plan)
    if opt_text(values.get("cache.direct")) is not None:
        s.blk.nocache = is_on(values["cache.direct"])
    s.writethrough = writethrough
    return 0


def _nocache(node) -> bool:
    """BDRV_O_NOCACHE of the root node: cache.direct as opened or last reopened."""
    if hasattr(node, "nocache"):
        return node.nocache
    while node.file is not None and node.file is not node:
        node = node.file
    return bool(getattr(node, "direct", False))


def _drop_write_perm(s: IoSession) -> None:
    """blk_set_perm without write: the host file's permission update may open it again
    by name; QEMU hides a failure there (the permission then stays)."""
    from emulator.block import reopen
    from emulator.block.node import BlockError
    if not s.write_perm:
        return
    file = s.blk
    while file.file is not None and file.file is not file:
        file = file.file
    try:
        reopen.refresh_file(file)
    except BlockError:
        return
    s.write_perm = False
