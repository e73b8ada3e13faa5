"""qemu-io's command table and commands (qemu-io-cmds.c plus open/close/quit).

A :class:`IoSession` holds the open image; :meth:`IoSession.command` runs one
command line and returns 0 or a negative errno like QEMU's qemuio_command().
"""
from __future__ import annotations

import errno
import os
import sys
import time
from typing import Callable, List, Optional

from emulator.cli import blockopts
from emulator.cli.getopt import Getopt
from emulator.cli.io_fmt import (
    INT_MAX, REQUEST_MAX_BYTES, cvtnum, dump_buffer, err, out, parse_pattern,
    print_cvtnum_err, print_report,
)
from emulator.cli.qemuopts import OptsError, QemuOpts
from emulator.report import error_report
from emulator.units import c_strtol, cvtstr

BDRV_REQ_FUA = 0x10
BDRV_REQ_MAY_UNMAP = 0x4
BDRV_REQ_NO_FALLBACK = 0x100

SECTOR = 512
NSIG = 65


class SignalRaised(Exception):
    """The process would die by this signal now; ``flushed``: stdout was flushed first."""

    def __init__(self, signum: int, flushed: bool) -> None:
        super().__init__(signum)
        self.signum = signum
        self.flushed = flushed


class Cmd:
    """One cmdinfo_t: names, argument count limits, usage texts and flags."""

    __slots__ = ("name", "func", "altname", "argmin", "argmax", "args", "oneline",
                 "global_", "nofile_ok", "write")

    def __init__(self, name: str, func: Callable[["IoSession", List[str]], int],
                 altname: Optional[str] = None, argmin: int = 0, argmax: int = 0,
                 args: Optional[str] = None, oneline: str = "", global_: bool = False,
                 nofile_ok: bool = False, write: bool = False) -> None:
        self.name, self.func, self.altname = name, func, altname
        self.argmin, self.argmax, self.args, self.oneline = argmin, argmax, args, oneline
        self.global_, self.nofile_ok, self.write = global_, nofile_ok, write


def _errstr(e: int) -> str:
    return os.strerror(e)


def _now() -> int:
    return time.monotonic_ns()


def _elapsed(t1: int) -> int:
    return max(_now() - t1, 1)


class IoSession:
    """State of one qemu-io process: the open image and the quit flag."""

    def __init__(self, image_opts: bool = False, misalign: bool = False) -> None:
        self.blk = None
        self.image_opts = image_opts
        self.misalign = misalign
        self.quit = False
        self.pending: List[str] = []

    # -- asynchronous requests --------------------------------------------
    def defer(self, fn: Callable[[], int]) -> None:
        """Run an aio request now; its completion output appears at the next poll."""
        import io
        saved = sys.stdout
        buf = io.StringIO()
        sys.stdout = buf
        try:
            fn()
        finally:
            sys.stdout = saved
        self.pending.append(buf.getvalue())

    def poll(self) -> None:
        """An event-loop iteration: print the completions of earlier aio requests."""
        pending, self.pending = self.pending, []
        for text in pending:
            out(text)

    # -- opening ---------------------------------------------------------
    def openfile(self, name: Optional[str], read_only: bool, force_share: bool,
                 opts: Optional[dict], unmap: bool = True) -> int:
        """qemu-io's openfile(): 0 on success, 1 after reporting the error."""
        from emulator.block.node import BlockError
        from emulator.cli.imgopen import open_options
        if self.blk is not None:
            error_report("file open already, try 'help close'")
            return 1
        opts = dict(opts or {})
        if force_share:
            if opts.get("force-share", "on") != "on":
                error_report("-U conflicts with image options")
                return 1
            opts["force-share"] = "on"
        try:
            self.blk = open_options(name, opts, read_only, False, unmap=unmap)
        except BlockError as e:
            where = f" device {name}" if name is not None else ""
            error_report(f"can't open{where}: {e.message}")
            return 1
        return 0

    def close(self) -> None:
        from emulator.block.open import close_image
        self.poll()
        if self.blk is not None:
            node, self.blk = self.blk, None
            close_image(node)

    # -- dispatch --------------------------------------------------------
    def command(self, line: str) -> int:
        words = [w for w in line.split(" ") if w]
        if not words:
            return 0
        ct = find_command(words[0])
        if ct is None:
            err(f'command "{words[0]}" not found\n')
            return -errno.EINVAL
        if not ct.global_ and not ct.nofile_ok and self.blk is None:
            err("no file open, try 'help open'\n")
            return -errno.EINVAL
        nargs = len(words) - 1
        if nargs < ct.argmin or (ct.argmax != -1 and nargs > ct.argmax):
            if ct.argmax == -1:
                err(f"bad argument count {nargs} to {words[0]}, expected at least "
                    f"{ct.argmin} arguments\n")
            elif ct.argmin == ct.argmax:
                err(f"bad argument count {nargs} to {words[0]}, expected {ct.argmin} arguments\n")
            else:
                err(f"bad argument count {nargs} to {words[0]}, expected between "
                    f"{ct.argmin} and {ct.argmax} arguments\n")
            return -errno.EINVAL
        if ct.write and self.blk is not None and self.blk.read_only:
            error_report("Block node is read-only")
            return -errno.EPERM
        return ct.func(self, words)


def usage(ct: Cmd) -> None:
    out(f"{ct.name} {ct.args} -- {ct.oneline}\n")


# ---------------------------------------------------------------- read

def _read(s: IoSession, argv: List[str]) -> int:
    from emulator.block import io as bio
    from emulator.block.node import BlockError
    cflag = qflag = vflag = pflag = sflag = lflag = bflag = False
    pattern = 0
    pat_off = pat_count = 0
    g = Getopt(argv, "bCl:pP:qs:v")
    for c in g:
        if c == "b":
            bflag = True
        elif c == "C":
            cflag = True
        elif c == "l":
            lflag = True
            pat_count = cvtnum(g.optarg)
            if pat_count < 0:
                print_cvtnum_err(pat_count, g.optarg)
                return pat_count
        elif c == "p":
            pass
        elif c == "P":
            pflag = True
            pattern = parse_pattern(g.optarg)
            if pattern < 0:
                return -errno.EINVAL
        elif c == "q":
            qflag = True
        elif c == "s":
            sflag = True
            pat_off = cvtnum(g.optarg)
            if pat_off < 0:
                print_cvtnum_err(pat_off, g.optarg)
                return pat_off
        elif c == "v":
            vflag = True
        else:
            usage(READ)
            return -errno.EINVAL
    argv = g.argv
    if g.optind != len(argv) - 2:
        usage(READ)
        return -errno.EINVAL
    offset = cvtnum(argv[g.optind])
    if offset < 0:
        print_cvtnum_err(offset, argv[g.optind])
        return offset
    count = cvtnum(argv[g.optind + 1])
    if count < 0:
        print_cvtnum_err(count, argv[g.optind + 1])
        return count
    if count > REQUEST_MAX_BYTES:
        out(f"length cannot exceed {REQUEST_MAX_BYTES}, given {argv[g.optind + 1]}\n")
        return -errno.EINVAL
    if not pflag and (lflag or sflag):
        usage(READ)
        return -errno.EINVAL
    if not lflag:
        pat_count = count - pat_off
    if pat_count < 0 or pat_count + pat_off > count:
        out("pattern verification range exceeds end of read data\n")
        return -errno.EINVAL
    if bflag:
        if offset % SECTOR:
            out(f"{offset} is not a sector-aligned value for 'offset'\n")
            return -errno.EINVAL
        if count % SECTOR:
            out(f"{count} is not a sector-aligned value for 'count'\n")
            return -errno.EINVAL
    s.poll()
    t1 = _now()
    try:
        if bflag:
            buf = _vmstate(s, "load", offset, count)
        elif count > INT_MAX:
            raise BlockError(errno.ERANGE)
        else:
            buf = bio.pread(s.blk, offset, count)
    except BlockError as e:
        out(f"read failed: {_errstr(e.errno)}\n")
        return -e.errno
    ns = _elapsed(t1)
    ret = 0
    if pflag and buf[pat_off:pat_off + pat_count] != bytes([pattern]) * pat_count:
        out(f"Pattern verification failed at offset {offset + pat_off}, {pat_count} bytes\n")
        ret = -errno.EINVAL
    if qflag:
        return ret
    if vflag:
        dump_buffer(buf, offset)
    print_report("read", ns, offset, count, count, 1, cflag)
    return ret


def _vmstate(s: IoSession, op: str, offset: int, count: int, data: bytes = b"") -> bytes:
    """VM state access (read -b / write -b) through the driver, if it has any."""
    from emulator.block.node import BlockError
    fn = getattr(s.blk, f"drv_{op}_vmstate", None)
    if fn is None:
        raise BlockError(errno.ENOTSUP)
    return fn(offset, count) if op == "load" else fn(offset, data)


# ---------------------------------------------------------------- vectored helpers

def _iovec_sizes(args: List[str]) -> Optional[List[int]]:
    sizes = []
    total = 0
    for arg in args:
        n = cvtnum(arg)
        if n < 0:
            print_cvtnum_err(n, arg)
            return None
        if n > REQUEST_MAX_BYTES:
            out(f"Argument '{arg}' exceeds maximum size {REQUEST_MAX_BYTES}\n")
            return None
        if total > REQUEST_MAX_BYTES - n:
            out(f"The total number of bytes exceed the maximum size {REQUEST_MAX_BYTES}\n")
            return None
        sizes.append(n)
        total += n
    return sizes


def _readv(s: IoSession, argv: List[str]) -> int:
    return _vectored_read(s, argv, READV, "CP:qv", aio=False)


def _aio_read(s: IoSession, argv: List[str]) -> int:
    return _vectored_read(s, argv, AIO_READ, "CP:iqv", aio=True)


def _vectored_read(s: IoSession, argv: List[str], ct: Cmd, optstring: str, aio: bool) -> int:
    cflag = qflag = vflag = pflag = False
    pattern = 0
    g = Getopt(argv, optstring)
    for c in g:
        if c == "C":
            cflag = True
        elif c == "P":
            pflag = True
            pattern = parse_pattern(g.optarg)
            if pattern < 0:
                return -errno.EINVAL
        elif c == "i":
            out("injecting invalid read request\n")
            return 0
        elif c == "q":
            qflag = True
        elif c == "v":
            vflag = True
        else:
            usage(ct)
            return -errno.EINVAL
    argv = g.argv
    if g.optind > len(argv) - 2:
        usage(ct)
        return -errno.EINVAL
    offset = cvtnum(argv[g.optind])
    if offset < 0:
        print_cvtnum_err(offset, argv[g.optind])
        return offset
    sizes = _iovec_sizes(argv[g.optind + 1:])
    if sizes is None:
        return -errno.EINVAL
    size = sum(sizes)
    if aio:
        s.defer(lambda: _finish_readv(s, offset, size, pflag, pattern, qflag, vflag, cflag, True))
        return 0
    s.poll()
    return _finish_readv(s, offset, size, pflag, pattern, qflag, vflag, cflag, False)


def _finish_readv(s: IoSession, offset: int, size: int, pflag: bool, pattern: int,
                  qflag: bool, vflag: bool, cflag: bool, aio: bool) -> int:
    from emulator.block import io as bio
    from emulator.block.node import BlockError
    t1 = _now()
    try:
        buf = bio.pread(s.blk, offset, size)
    except BlockError as e:
        out(f"readv failed: {_errstr(e.errno)}\n")
        return 0 if aio else -e.errno
    ns = _elapsed(t1)
    ret = 0
    if pflag and buf != bytes([pattern]) * size:
        out(f"Pattern verification failed at offset {offset}, {size} bytes\n")
        ret = 0 if aio else -errno.EINVAL
    if qflag:
        return ret
    if vflag:
        dump_buffer(buf, offset)
    print_report("read", ns, offset, size, size, 1, cflag)
    return ret


# ---------------------------------------------------------------- write

def _pattern_file(path: str, length: int) -> Optional[bytes]:
    try:
        with open(path, "rb") as f:
            data = f.read(length)
    except OSError as e:
        err(f"{path}: {os.strerror(e.errno or errno.EIO)}\n")
        return None
    if not data:
        err(f"{path}: file is empty\n")
        return None
    reps = -(-length // len(data))
    return (data * reps)[:length]


def _write(s: IoSession, argv: List[str]) -> int:
    from emulator.block import io as bio
    from emulator.block.node import BlockError
    cflag = qflag = bflag = pflag = zflag = compressed = sflag = False
    flags = 0
    pattern = 0xCD
    file_name = ""
    g = Getopt(argv, "bcCfnpP:qs:uz")
    for c in g:
        if c == "b":
            bflag = True
        elif c == "c":
            compressed = True
        elif c == "C":
            cflag = True
        elif c == "f":
            flags |= BDRV_REQ_FUA
        elif c == "n":
            flags |= BDRV_REQ_NO_FALLBACK
        elif c == "p":
            pass
        elif c == "P":
            pflag = True
            pattern = parse_pattern(g.optarg)
            if pattern < 0:
                return -errno.EINVAL
        elif c == "q":
            qflag = True
        elif c == "s":
            sflag = True
            file_name = g.optarg
        elif c == "u":
            flags |= BDRV_REQ_MAY_UNMAP
        elif c == "z":
            zflag = True
        else:
            usage(WRITE)
            return -errno.EINVAL
    argv = g.argv
    if g.optind != len(argv) - 2:
        usage(WRITE)
        return -errno.EINVAL
    if bflag and zflag:
        out("-b and -z cannot be specified at the same time\n")
        return -errno.EINVAL
    if flags & BDRV_REQ_FUA and (bflag or compressed):
        out("-f and -b or -c cannot be specified at the same time\n")
        return -errno.EINVAL
    if flags & BDRV_REQ_NO_FALLBACK and not zflag:
        out("-n requires -z to be specified\n")
        return -errno.EINVAL
    if flags & BDRV_REQ_MAY_UNMAP and not zflag:
        out("-u requires -z to be specified\n")
        return -errno.EINVAL
    if zflag + pflag + sflag > 1:
        out("Only one of -z, -P, and -s can be specified at the same time\n")
        return -errno.EINVAL
    offset = cvtnum(argv[g.optind])
    if offset < 0:
        print_cvtnum_err(offset, argv[g.optind])
        return offset
    count = cvtnum(argv[g.optind + 1])
    if count < 0:
        print_cvtnum_err(count, argv[g.optind + 1])
        return count
    if count > REQUEST_MAX_BYTES and not flags & BDRV_REQ_NO_FALLBACK:
        out(f"length cannot exceed {REQUEST_MAX_BYTES} without -n, given {argv[g.optind + 1]}\n")
        return -errno.EINVAL
    if bflag or compressed:
        if offset % SECTOR:
            out(f"{offset} is not a sector-aligned value for 'offset'\n")
            return -errno.EINVAL
        if count % SECTOR:
            out(f"{count} is not a sector-aligned value for 'count'\n")
            return -errno.EINVAL
    data = b""
    if not zflag:
        if sflag:
            loaded = _pattern_file(file_name, count)
            if loaded is None:
                return -errno.EINVAL
            data = loaded
        else:
            data = bytes([pattern]) * count
    s.poll()
    t1 = _now()
    try:
        if bflag:
            if count > INT_MAX:
                raise BlockError(errno.ERANGE)
            _vmstate(s, "save", offset, count, data)
        elif zflag:
            bio.pwrite_zeroes(s.blk, offset, count, flags)
        elif compressed:
            if count > REQUEST_MAX_BYTES:
                raise BlockError(errno.ERANGE)
            bio.pwrite_compressed(s.blk, offset, data)
        else:
            if count > INT_MAX:
                raise BlockError(errno.ERANGE)
            bio.pwrite(s.blk, offset, data, flags)
    except BlockError as e:
        out(f"write failed: {_errstr(e.errno)}\n")
        return -e.errno
    ns = _elapsed(t1)
    if not qflag:
        print_report("wrote", ns, offset, count, count, 1, cflag)
    return 0


def _writev(s: IoSession, argv: List[str]) -> int:
    from emulator.block import io as bio
    from emulator.block.node import BlockError
    cflag = qflag = False
    flags = 0
    pattern = 0xCD
    g = Getopt(argv, "CfqP:")
    for c in g:
        if c == "C":
            cflag = True
        elif c == "f":
            flags |= BDRV_REQ_FUA
        elif c == "q":
            qflag = True
        elif c == "P":
            pattern = parse_pattern(g.optarg)
            if pattern < 0:
                return -errno.EINVAL
        else:
            usage(WRITEV)
            return -errno.EINVAL
    argv = g.argv
    if g.optind > len(argv) - 2:
        usage(WRITEV)
        return -errno.EINVAL
    offset = cvtnum(argv[g.optind])
    if offset < 0:
        print_cvtnum_err(offset, argv[g.optind])
        return offset
    sizes = _iovec_sizes(argv[g.optind + 1:])
    if sizes is None:
        return -errno.EINVAL
    size = sum(sizes)
    s.poll()
    t1 = _now()
    try:
        bio.pwrite(s.blk, offset, bytes([pattern]) * size, flags)
    except BlockError as e:
        out(f"writev failed: {_errstr(e.errno)}\n")
        return -e.errno
    ns = _elapsed(t1)
    if not qflag:
        print_report("wrote", ns, offset, size, size, 1, cflag)
    return 0


def _aio_write(s: IoSession, argv: List[str]) -> int:
    cflag = qflag = zflag = pflag = False
    flags = 0
    pattern = 0xCD
    g = Getopt(argv, "CfiqP:uz")
    for c in g:
        if c == "C":
            cflag = True
        elif c == "f":
            flags |= BDRV_REQ_FUA
        elif c == "q":
            qflag = True
        elif c == "u":
            flags |= BDRV_REQ_MAY_UNMAP
        elif c == "P":
            pattern = parse_pattern(g.optarg)
            if pattern < 0:
                return -errno.EINVAL
        elif c == "i":
            out("injecting invalid write request\n")
            return 0
        elif c == "z":
            zflag = True
        else:
            usage(AIO_WRITE)
            return -errno.EINVAL
    argv = g.argv
    if g.optind > len(argv) - 2:
        usage(AIO_WRITE)
        return -errno.EINVAL
    if zflag and g.optind != len(argv) - 2:
        out("-z supports only a single length parameter\n")
        return -errno.EINVAL
    if flags & BDRV_REQ_MAY_UNMAP and not zflag:
        out("-u requires -z to be specified\n")
        return -errno.EINVAL
    if zflag and pflag:
        out("-z and -P cannot be specified at the same time\n")
        return -errno.EINVAL
    offset = cvtnum(argv[g.optind])
    if offset < 0:
        print_cvtnum_err(offset, argv[g.optind])
        return offset
    if zflag:
        count = cvtnum(argv[g.optind + 1])
        if count < 0:
            print_cvtnum_err(count, argv[g.optind + 1])
            return count
    else:
        sizes = _iovec_sizes(argv[g.optind + 1:])
        if sizes is None:
            return -errno.EINVAL
        count = sum(sizes)
    s.defer(lambda: _finish_aio_write(s, offset, count, zflag, pattern, flags, qflag, cflag))
    return 0


def _finish_aio_write(s: IoSession, offset: int, count: int, zflag: bool, pattern: int,
                      flags: int, qflag: bool, cflag: bool) -> int:
    from emulator.block import io as bio
    from emulator.block.node import BlockError
    t1 = _now()
    try:
        if zflag:
            bio.pwrite_zeroes(s.blk, offset, count, flags)
        else:
            bio.pwrite(s.blk, offset, bytes([pattern]) * count, flags)
    except BlockError as e:
        out(f"aio_write failed: {_errstr(e.errno)}\n")
        return 0
    ns = _elapsed(t1)
    if not qflag:
        print_report("wrote", ns, offset, count, count, 1, cflag)
    return 0


# ---------------------------------------------------------------- other I/O

def _discard(s: IoSession, argv: List[str]) -> int:
    from emulator.block import io as bio
    from emulator.block.node import BlockError
    cflag = qflag = False
    g = Getopt(argv, "Cq")
    for c in g:
        if c == "C":
            cflag = True
        elif c == "q":
            qflag = True
        else:
            usage(DISCARD)
            return -errno.EINVAL
    argv = g.argv
    if g.optind != len(argv) - 2:
        usage(DISCARD)
        return -errno.EINVAL
    offset = cvtnum(argv[g.optind])
    if offset < 0:
        print_cvtnum_err(offset, argv[g.optind])
        return offset
    count = cvtnum(argv[g.optind + 1])
    if count < 0:
        print_cvtnum_err(count, argv[g.optind + 1])
        return count
    if count > REQUEST_MAX_BYTES:
        out(f"length cannot exceed {REQUEST_MAX_BYTES}, given {argv[g.optind + 1]}\n")
        return -errno.EINVAL
    s.poll()
    t1 = _now()
    try:
        bio.pdiscard(s.blk, offset, count)
    except BlockError as e:
        out(f"discard failed: {_errstr(e.errno)}\n")
        return -e.errno
    ns = _elapsed(t1)
    if not qflag:
        print_report("discard", ns, offset, count, count, 1, cflag)
    return 0


def _flush(s: IoSession, argv: List[str]) -> int:
    from emulator.block import io as bio
    from emulator.block.node import BlockError
    s.poll()
    try:
        bio.flush(s.blk)
    except BlockError as e:
        return -e.errno
    return 0


def _aio_flush(s: IoSession, argv: List[str]) -> int:
    s.poll()
    return 0


def _truncate(s: IoSession, argv: List[str]) -> int:
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
    s.poll()
    try:
        bio.truncate(s.blk, offset, exact=False, prealloc=prealloc)
    except BlockError as e:
        error_report(e.message)
        return -e.errno
    return 0


def _length(s: IoSession, argv: List[str]) -> int:
    from emulator.block import io as bio
    from emulator.block.node import BlockError
    try:
        size = bio.getlength(s.blk)
    except BlockError as e:
        out(f"getlength: {_errstr(e.errno)}\n")
        return -e.errno
    out(cvtstr(size) + "\n")
    return 0


def _info(s: IoSession, argv: List[str]) -> int:
    from emulator.cli.info import driver_info, specific_info
    from emulator.cli.qobject import human_dump
    node = s.blk
    if node.format_name:
        out(f"format name: {node.format_name}\n")
    cluster_size, vm_state_offset = driver_info(node)
    out(f"cluster size: {cvtstr(cluster_size)}\n")
    out(f"vm state offset: {cvtstr(vm_state_offset)}\n")
    spec = specific_info(node)
    if spec is not None:
        out("Format specific information:\n")
        out(human_dump(spec["data"]))
    return 0


def _alloc(s: IoSession, argv: List[str]) -> int:
    from emulator.block import io as bio
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
    s.poll()
    while remaining:
        try:
            allocated, num = bio.is_allocated(s.blk, offset, remaining)
        except BlockError as e:
            out(f"is_allocated failed: {_errstr(e.errno)}\n")
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
    from emulator.block import io as bio
    first, num = bio.is_allocated(node, offset, length)
    pnum = num
    while length > 0:
        offset += num
        length -= num
        allocated, num = bio.is_allocated(node, offset, length)
        if allocated == first and num:
            pnum += num
        else:
            break
    return first, pnum


def _map(s: IoSession, argv: List[str]) -> int:
    from emulator.block import io as bio
    from emulator.block.node import BlockError
    try:
        length = bio.getlength(s.blk)
    except BlockError as e:
        error_report(f"Failed to query image length: {_errstr(e.errno)}")
        return -e.errno
    offset = 0
    s.poll()
    while length:
        try:
            allocated, num = _map_is_allocated(s.blk, offset, length)
        except BlockError as e:
            error_report(f"Failed to get allocation status: {_errstr(e.errno)}")
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
        error_report(e.message)
        if e.hint:
            err(e.hint)
        return False
    return True


def _open(s: IoSession, argv: List[str]) -> int:
    read_only = False
    force_share = False
    unmap = True
    opts = QemuOpts()
    g = Getopt(argv, "snCro:ki:t:d:U")
    for c in g:
        if c in ("s", "n", "C", "k"):
            pass
        elif c == "r":
            read_only = True
        elif c == "t":
            if g.optarg not in blockopts.CACHE_MODES:
                error_report(f"Invalid cache option: {g.optarg}")
                return -errno.EINVAL
        elif c == "d":
            if g.optarg not in blockopts.DISCARD_MODES:
                error_report(f"Invalid discard option: {g.optarg}")
                return -errno.EINVAL
            unmap = g.optarg in ("on", "unmap")
        elif c == "i":
            if g.optarg not in blockopts.AIO_MODES:
                error_report(f"Invalid aio option: {g.optarg}")
                return -errno.EINVAL
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
        ret = s.openfile(argv[optind], read_only, force_share, dict_opts, unmap)
    elif optind == len(argv):
        ret = s.openfile(None, read_only, force_share, dict_opts, unmap)
    else:
        usage(OPEN)
        return -errno.EINVAL
    return -errno.EINVAL if ret else 0


def _close(s: IoSession, argv: List[str]) -> int:
    s.close()
    return 0


def _quit(s: IoSession, argv: List[str]) -> int:
    s.quit = True
    return 0


def _sleep(s: IoSession, argv: List[str]) -> int:
    ms, end = c_strtol(argv[1], 0)
    if ms < 0 or end != len(argv[1]):
        out(f"{argv[1]} is not a valid number\n")
        return -errno.EINVAL
    time.sleep(ms / 1000.0)
    s.poll()
    return 0


def _sigraise(s: IoSession, argv: List[str]) -> int:
    sig = cvtnum(argv[1])
    if sig < 0:
        print_cvtnum_err(sig, argv[1])
        return sig
    if sig > NSIG:
        out(f"signal argument '{argv[1]}' is too large to be a valid signal\n")
        return -errno.EINVAL
    sys.stdout.flush()
    raise SignalRaised(sig, flushed=True)


def _abort(s: IoSession, argv: List[str]) -> int:
    raise SignalRaised(6, flushed=False)


def _break(s: IoSession, argv: List[str]) -> int:
    out(f"Could not set breakpoint: {_errstr(errno.ENOTSUP)}\n")
    return -errno.ENOTSUP


def _remove_break(s: IoSession, argv: List[str]) -> int:
    out(f"Could not remove breakpoint {argv[1]}: {_errstr(errno.ENOTSUP)}\n")
    return -errno.ENOTSUP


def _resume(s: IoSession, argv: List[str]) -> int:
    out(f"Could not resume request: {_errstr(errno.ENOTSUP)}\n")
    return -errno.ENOTSUP


def _unsupported(s: IoSession, argv: List[str]) -> int:
    error_report(f"{argv[0]}: not supported by qcowlab")
    return -errno.ENOTSUP


def _help(s: IoSession, argv: List[str]) -> int:
    from emulator.cli.io_help import HELP
    if len(argv) < 2:
        for ct in COMMANDS:
            _help_oneline(ct.name, ct)
        out("\nUse 'help commandname' for extended help.\n")
        return 0
    ct = find_command(argv[1])
    if ct is None:
        out(f"command {argv[1]} not found\n")
        return -errno.EINVAL
    _help_oneline(argv[1], ct)
    out(HELP.get(ct.name, ""))
    return 0


def _help_oneline(name: str, ct: Cmd) -> None:
    args = f"{ct.args} " if ct.args is not None else ""
    out(f"{name} {args}-- {ct.oneline}\n")


READ = Cmd("read", _read, "r", 2, -1, "[-abCqv] [-P pattern [-s off] [-l len]] off len",
           "reads a number of bytes at a specified offset")
READV = Cmd("readv", _readv, None, 2, -1, "[-Cqv] [-P pattern] off len [len..]",
            "reads a number of bytes at a specified offset")
WRITE = Cmd("write", _write, "w", 2, -1, "[-bcCfnquz] [-P pattern | -s source_file] off len",
            "writes a number of bytes at a specified offset", write=True)
WRITEV = Cmd("writev", _writev, None, 2, -1, "[-Cfq] [-P pattern] off len [len..]",
             "writes a number of bytes at a specified offset", write=True)
AIO_READ = Cmd("aio_read", _aio_read, None, 2, -1, "[-Ciqv] [-P pattern] off len [len..]",
               "asynchronously reads a number of bytes")
AIO_WRITE = Cmd("aio_write", _aio_write, None, 2, -1, "[-Cfiquz] [-P pattern] off len [len..]",
                "asynchronously writes a number of bytes", write=True)
DISCARD = Cmd("discard", _discard, "d", 2, -1, "[-Cq] off len",
              "discards a number of bytes at a specified offset", write=True)
TRUNCATE = Cmd("truncate", _truncate, "t", 1, 3, "[-m prealloc_mode] off",
               "truncates the current file at the given offset", write=True)
OPEN = Cmd("open", _open, "o", 1, -1, "[-rsCnkU] [-t cache] [-d discard] [-o options] [path]",
           "open the file specified by path", nofile_ok=True)

COMMANDS = sorted([
    READ, READV, WRITE, WRITEV, AIO_READ, AIO_WRITE, DISCARD, TRUNCATE, OPEN,
    Cmd("help", _help, "?", 0, 1, "[command]", "help for one or all commands", global_=True),
    Cmd("aio_flush", _aio_flush, oneline="completes all outstanding aio requests"),
    Cmd("flush", _flush, "f", oneline="flush all in-core file state to disk"),
    Cmd("length", _length, "l", oneline="gets the length of the current file"),
    Cmd("info", _info, "i", oneline="prints information about the current file"),
    Cmd("alloc", _alloc, "a", 1, 2, "offset [count]", "checks if offset is allocated in the file"),
    Cmd("map", _map, None, 0, 0, "", "prints the allocated areas of a file"),
    Cmd("break", _break, None, 2, 2, "event tag",
        "sets a breakpoint on event and tags the stopped request as tag"),
    Cmd("remove_break", _remove_break, None, 1, 1, "tag", "remove a breakpoint by tag"),
    Cmd("reopen", _unsupported, None, 0, -1, "[(-r|-w)] [-c cache] [-o options]",
        "reopens an image with new options"),
    Cmd("wait_break", _unsupported, None, 1, 1, "tag", "waits for the suspension of a request"),
    Cmd("resume", _resume, None, 1, 1, "tag", "resumes the request tagged as tag"),
    Cmd("abort", _abort, oneline="simulate a program crash using abort(3)", nofile_ok=True),
    Cmd("sleep", _sleep, None, 1, 1, oneline="waits for the given value in milliseconds",
        nofile_ok=True),
    Cmd("sigraise", _sigraise, None, 1, 1, "signal", "raises a signal", nofile_ok=True),
    Cmd("close", _close, "c", oneline="close the current open file"),
    Cmd("quit", _quit, "q", -1, -1, oneline="exit the program", global_=True),
], key=lambda c: c.name.encode())


def find_command(name: str) -> Optional[Cmd]:
    for ct in COMMANDS:
        if ct.name == name or ct.altname == name:
            return ct
    return None
