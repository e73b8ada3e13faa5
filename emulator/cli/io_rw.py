"""qemu-io's data commands: read, readv, write, writev, aio_read, aio_write, discard."""
from __future__ import annotations

import errno
import os

from emulator.cli.getopt import Getopt
from emulator.cli.io_cmds import (
    AIO_READ, AIO_WRITE, BDRV_REQ_FUA, BDRV_REQ_MAY_UNMAP, BDRV_REQ_NO_FALLBACK, DISCARD,
    READ, READV, SECTOR, WRITE, WRITEV, Cmd, IoSession, elapsed_ns, errstr, now_ns, usage,
)
from emulator.cli.io_fmt import (
    INT_MAX, REQUEST_MAX_BYTES, cvtnum, dump_buffer, err, out, parse_pattern,
    print_cvtnum_err, print_report,
)


def _offset_and_count(argv: list[str], i: int) -> "tuple[int, int] | int":
    """OFFSET and LENGTH from argv[i] and argv[i + 1]; on a bad number, QEMU's message and -errno."""
    offset = cvtnum(argv[i])
    if offset < 0:
        print_cvtnum_err(offset, argv[i])
        return offset
    count = cvtnum(argv[i + 1])
    if count < 0:
        print_cvtnum_err(count, argv[i + 1])
        return count
    return offset, count


def _read(s: IoSession, argv: list[str]) -> int:
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
    parsed = _offset_and_count(argv, g.optind)
    if isinstance(parsed, int):
        return parsed
    offset, count = parsed
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
    t1 = now_ns()
    try:
        if bflag:
            buf = _vmstate(s, "load", offset, count)
        elif count > INT_MAX:
            raise BlockError(errno.ERANGE)
        else:
            buf = bio.pread(s.blk, offset, count)
    except BlockError as e:
        out(f"read failed: {errstr(e.errno)}\n")
        return -e.errno
    ns = elapsed_ns(t1)
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

def _iovec_sizes(args: list[str]) -> list[int] | None:
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


def _readv(s: IoSession, argv: list[str]) -> int:
    return _vectored_read(s, argv, READV, "CP:qv", aio=False)


def _aio_read(s: IoSession, argv: list[str]) -> int:
    return _vectored_read(s, argv, AIO_READ, "CP:iqv", aio=True)


def _vectored_read(s: IoSession, argv: list[str], ct: Cmd, optstring: str, aio: bool) -> int:
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
    return _finish_readv(s, offset, size, pflag, pattern, qflag, vflag, cflag, False)


def _finish_readv(s: IoSession, offset: int, size: int, pflag: bool, pattern: int,
                  qflag: bool, vflag: bool, cflag: bool, aio: bool) -> int:
    from emulator.block import io as bio
    from emulator.block.node import BlockError
    t1 = now_ns()
    try:
        buf = bio.pread(s.blk, offset, size)
    except BlockError as e:
        out(f"readv failed: {errstr(e.errno)}\n")
        return 0 if aio else -e.errno
    ns = elapsed_ns(t1)
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

def _pattern_file(path: str, length: int) -> bytes | None:
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


def _write(s: IoSession, argv: list[str]) -> int:
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
    parsed = _offset_and_count(argv, g.optind)
    if isinstance(parsed, int):
        return parsed
    offset, count = parsed
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
    t1 = now_ns()
    try:
        if bflag:
            if count > INT_MAX:
                raise BlockError(errno.ERANGE)
            _vmstate(s, "save", offset, count, data)
            if s.writethrough:  # blk_save_vmstate flushes without a write cache
                bio.flush(s.blk)
        elif zflag:
            s.write_zeroes(offset, count, flags)
        elif compressed:
            if count > REQUEST_MAX_BYTES:
                raise BlockError(errno.ERANGE)
            bio.pwrite_compressed(s.blk, offset, data)
        else:
            if count > INT_MAX:
                raise BlockError(errno.ERANGE)
            s.write(offset, data, flags)
    except BlockError as e:
        out(f"write failed: {errstr(e.errno)}\n")
        return -e.errno
    ns = elapsed_ns(t1)
    if not qflag:
        print_report("wrote", ns, offset, count, count, 1, cflag)
    return 0


def _writev(s: IoSession, argv: list[str]) -> int:
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
    t1 = now_ns()
    try:
        s.write(offset, bytes([pattern]) * size, flags)
    except BlockError as e:
        out(f"writev failed: {errstr(e.errno)}\n")
        return -e.errno
    ns = elapsed_ns(t1)
    if not qflag:
        print_report("wrote", ns, offset, size, size, 1, cflag)
    return 0


def _aio_write(s: IoSession, argv: list[str]) -> int:
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
    from emulator.block.node import BlockError
    t1 = 0 if zflag else now_ns()  # qemu-io 7.2 never starts the clock of a zero write
    try:
        if zflag:
            s.write_zeroes(offset, count, flags)
        else:
            s.write(offset, bytes([pattern]) * count, flags)
    except BlockError as e:
        out(f"aio_write failed: {errstr(e.errno)}\n")
        return 0
    ns = elapsed_ns(t1)
    if not qflag:
        print_report("wrote", ns, offset, count, count, 1, cflag)
    return 0


# ---------------------------------------------------------------- other I/O

def _discard(s: IoSession, argv: list[str]) -> int:
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
    parsed = _offset_and_count(argv, g.optind)
    if isinstance(parsed, int):
        return parsed
    offset, count = parsed
    if count > REQUEST_MAX_BYTES:
        out(f"length cannot exceed {REQUEST_MAX_BYTES}, given {argv[g.optind + 1]}\n")
        return -errno.EINVAL
    t1 = now_ns()
    try:
        bio.pdiscard(s.blk, offset, count)
    except BlockError as e:
        out(f"discard failed: {errstr(e.errno)}\n")
        return -e.errno
    ns = elapsed_ns(t1)
    if not qflag:
        print_report("discard", ns, offset, count, count, 1, cflag)
    return 0
