"""qemu-io's command table and commands (qemu-io-cmds.c plus open/close/quit).

A :class:`IoSession` holds the open image; :meth:`IoSession.command` runs one
command line and returns 0 or a negative errno like QEMU's qemuio_command().
"""
from __future__ import annotations

import errno
import os
import sys
import time

from emulator.cli.errors import report_err
from emulator.cli.io_fmt import cvtnum, err, out, print_cvtnum_err
from emulator.report import SignalRaised, error_report
from emulator.units import c_strtol

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

BDRV_REQ_FUA = 0x10
BDRV_REQ_MAY_UNMAP = 0x4
BDRV_REQ_NO_FALLBACK = 0x100

SECTOR = 512
NSIG = 65
#: signals qemu-io 7.2 lives through when it raises them: 0 and 65 (no signal),
#: handled (SIGBUS, SIGALRM, SIGIO), blocked (SIGUSR1), ignored (SIGPIPE, the
#: default-ignored ones, glibc's 32/33); the stop signals 19-22 would suspend it
SURVIVED_SIGNALS = frozenset((0, 7, 10, 13, 14, 17, 18, 19, 20, 21, 22, 23, 28, 29, 32, 33, 65))


class Cmd:
    """One cmdinfo_t: names, argument count limits, usage texts and flags.

    ``func`` is the implementation or "module:function" in emulator.cli,
    imported when the command is first run (keeps start-up lean).
    """

    __slots__ = ("name", "func", "altname", "argmin", "argmax", "args", "oneline",
                 "global_", "nofile_ok", "write")

    def __init__(self, name: str, func: str | Callable[["IoSession", list[str]], int],
                 altname: str | None = None, argmin: int = 0, argmax: int = 0,
                 args: str | None = None, oneline: str = "", global_: bool = False,
                 nofile_ok: bool = False, write: bool = False) -> None:
        self.name, self.func, self.altname = name, func, altname
        self.argmin, self.argmax, self.args, self.oneline = argmin, argmax, args, oneline
        self.global_, self.nofile_ok, self.write = global_, nofile_ok, write

    def resolve(self) -> Callable[["IoSession", list[str]], int]:
        if isinstance(self.func, str):
            import importlib
            module, name = self.func.split(":")
            return getattr(importlib.import_module("emulator.cli." + module), name)
        return self.func


def errstr(e: int) -> str:
    return os.strerror(e)


def now_ns() -> int:
    return time.monotonic_ns()


def elapsed_ns(t1: int) -> int:
    return max(now_ns() - t1, 1)


class IoSession:
    """State of one qemu-io process: the open image and the quit flag."""

    def __init__(self, image_opts: bool = False) -> None:
        self.blk = None
        self.image_opts = image_opts
        #: the BlockBackend's write cache is off (qemu-io's default cache mode)
        self.writethrough = True
        self.quit = False
        #: the BlockBackend holds the write permission (opened writable, no reopen -r yet)
        self.write_perm = False
        from emulator.block import aio_context
        aio_context.reset()  # a new process: nothing in flight

    # -- writes through the BlockBackend ----------------------------------
    def write(self, offset: int, data: bytes, flags: int) -> None:
        """blk_pwrite: a write cache that is off turns the request into FUA (which
        the generic layer emulates by flushing the node)."""
        from emulator.block import io as bio
        bio.pwrite(self.blk, offset, data, flags | (BDRV_REQ_FUA if self.writethrough else 0))

    def write_zeroes(self, offset: int, length: int, flags: int) -> None:
        """blk_pwrite_zeroes, with the same FUA as :meth:`write`."""
        from emulator.block import io as bio
        bio.pwrite_zeroes(self.blk, offset, length,
                          flags | (BDRV_REQ_FUA if self.writethrough else 0))

    # -- asynchronous requests --------------------------------------------
    def defer(self, fn: Callable[[], int]) -> None:
        """blk_aio_prwv: the request runs at once in a coroutine of its own until
        it first yields (see :mod:`emulator.block.aio_context`). Its output is
        the completion callback's: printed when the request ends if it yielded
        before, else from a bottom half at the next poll."""
        import io
        from emulator.block import aio_context, coroutine
        buf = io.StringIO()
        returned = []

        def complete() -> None:
            aio_context.inflight -= 1
            co.main_out.write(buf.getvalue())

        def request() -> None:
            fn()
            if returned:
                complete()
        co = coroutine.Coroutine(request, buf)
        aio_context.inflight += 1
        coroutine.enter(co)
        returned.append(True)
        if co.done:
            aio_context.schedule_bh(complete)

    def drain(self) -> None:
        """bdrv_drain_all: poll until every aio request has completed."""
        from emulator.block import aio_context
        aio_context.drain()

    # -- opening ---------------------------------------------------------
    def openfile(self, name: str | None, read_only: bool, force_share: bool,
                 opts: dict | None, unmap: bool = True, snapshot: bool = False,
                 writethrough: bool = True, nocache: bool = False,
                 copy_on_read: bool = False, native_aio: bool = False,
                 no_flush: bool = False) -> int:
        """qemu-io's openfile(): 0 on success, 1 after reporting the error.

        ``native_aio`` is BDRV_O_NATIVE_AIO (-k, -i native).

        ``nocache`` is BDRV_O_NOCACHE (an explicit cache.direct option wins),
        ``copy_on_read`` BDRV_O_COPY_ON_READ, ``no_flush`` BDRV_O_NO_FLUSH (-t unsafe).
        """
        from emulator.block.node import BlockError
        from emulator.cli.imgopen import open_options, open_temp_snapshot
        if self.blk is not None:
            error_report("file open already, try 'help close'")
            return 1
        opts = dict(opts or {})
        if force_share:
            if opts.get("force-share", "on") != "on":
                error_report("-U conflicts with image options")
                return 1
            opts["force-share"] = "on"
        if nocache:
            opts.setdefault("cache.direct", "on")
        if no_flush:
            opts.setdefault("cache.no-flush", "on")
        if native_aio:
            from emulator.block.open import OPEN_FLAG
            opts["x-native-aio"] = OPEN_FLAG
        try:
            if snapshot:
                self.blk = open_temp_snapshot(name, opts, False, unmap, copy_on_read,
                                              read_only)
            else:
                self.blk = open_options(name, opts, read_only, False, unmap=unmap,
                                        copy_on_read=copy_on_read)
        except BlockError as e:
            where = f" device {name}" if name is not None else ""
            report_err(f"can't open{where}: {e.message}", e.hint)
            return 1
        self.writethrough = writethrough
        self.write_perm = not read_only
        return 0

    def abandon(self) -> None:
        """Process death: release the host files without flushing or closing drivers."""
        from emulator.cli.imgopen import release_files
        node, self.blk = self.blk, None
        release_files(node)

    def close(self) -> None:
        """blk_unref: close the image; a failure while closing is not reported."""
        from emulator.cli.imgopen import close
        self.drain()
        if self.blk is not None:
            node, self.blk = self.blk, None
            close(node)

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
        if ct.write and self.blk is not None:
            from emulator.block.reopen import write_blocked
            if self.blk.read_only or (not self.write_perm and write_blocked(self.blk)):
                error_report("Block node is read-only")
                return -errno.EPERM
            self.write_perm = True  # the command takes the write permission it needs
        func = ct.resolve()
        from emulator.block import aio_context
        aio_context.epoch += 1
        if ct.name == "reopen":
            self.drain()  # bdrv_reopen drains the node first
        if aio_context.busy() and ct.name not in EVENT_LOOP_COMMANDS:
            # a synchronous request with others in flight: a coroutine polled until done
            return aio_context.run(lambda: func(self, words))
        return func(self, words)


#: commands that issue aio requests or drive the event loop themselves; the
#: others run as a request polled until it completes (bdrv_poll_co)
EVENT_LOOP_COMMANDS = frozenset((
    "aio_read", "aio_write", "aio_flush", "break", "remove_break", "wait_break", "resume",
    "sleep", "close", "quit", "help", "abort", "sigraise", "open", "reopen",
    "map", "alloc"))  # these poll for each of their block-status queries


def usage(ct: Cmd) -> None:
    out(f"{ct.name} {ct.args} -- {ct.oneline}\n")


# ---------------------------------------------------------------- read

def _close(s: IoSession, argv: list[str]) -> int:
    s.close()
    return 0


def _quit(s: IoSession, argv: list[str]) -> int:
    s.quit = True
    return 0


def _sleep(s: IoSession, argv: list[str]) -> int:
    ms, end = c_strtol(argv[1], 0)
    if ms < 0 or end != len(argv[1]):
        out(f"{argv[1]} is not a valid number\n")
        return -errno.EINVAL
    time.sleep(ms / 1000.0)
    from emulator.block import aio_context
    aio_context.poll_while(aio_context.busy)
    return 0


def _sigraise(s: IoSession, argv: list[str]) -> int:
    sig = cvtnum(argv[1])
    if sig < 0:
        print_cvtnum_err(sig, argv[1])
        return sig
    if sig > NSIG:
        out(f"signal argument '{argv[1]}' is too large to be a valid signal\n")
        return -errno.EINVAL
    sys.stdout.flush()
    if sig in SURVIVED_SIGNALS:
        return 0
    raise SignalRaised(sig, flushed=True)


def _abort(s: IoSession, argv: list[str]) -> int:
    raise SignalRaised(6, flushed=False)


def _help(s: IoSession, argv: list[str]) -> int:
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


READ = Cmd("read", "io_rw:_read", "r", 2, -1,
           "[-abCqv] [-P pattern [-s off] [-l len]] off len",
           "reads a number of bytes at a specified offset")
READV = Cmd("readv", "io_rw:_readv", None, 2, -1, "[-Cqv] [-P pattern] off len [len..]",
            "reads a number of bytes at a specified offset")
WRITE = Cmd("write", "io_rw:_write", "w", 2, -1,
            "[-bcCfnquz] [-P pattern | -s source_file] off len",
            "writes a number of bytes at a specified offset", write=True)
WRITEV = Cmd("writev", "io_rw:_writev", None, 2, -1, "[-Cfq] [-P pattern] off len [len..]",
             "writes a number of bytes at a specified offset", write=True)
AIO_READ = Cmd("aio_read", "io_rw:_aio_read", None, 2, -1,
               "[-Ciqv] [-P pattern] off len [len..]",
               "asynchronously reads a number of bytes")
AIO_WRITE = Cmd("aio_write", "io_rw:_aio_write", None, 2, -1,
                "[-Cfiquz] [-P pattern] off len [len..]",
                "asynchronously writes a number of bytes", write=True)
DISCARD = Cmd("discard", "io_rw:_discard", "d", 2, -1, "[-Cq] off len",
              "discards a number of bytes at a specified offset", write=True)
TRUNCATE = Cmd("truncate", "io_misc:_truncate", "t", 1, 3, "[-m prealloc_mode] off",
               "truncates the current file at the given offset", write=True)
REOPEN = Cmd("reopen", "io_misc:_reopen", None, 0, -1, "[(-r|-w)] [-c cache] [-o options]",
             "reopens an image with new options")
OPEN = Cmd("open", "io_misc:_open", "o", 1, -1,
           "[-rsCnkU] [-t cache] [-d discard] [-o options] [path]",
           "open the file specified by path", nofile_ok=True)

COMMANDS = sorted([
    READ, READV, WRITE, WRITEV, AIO_READ, AIO_WRITE, DISCARD, TRUNCATE, OPEN, REOPEN,
    Cmd("help", _help, "?", 0, 1, "[command]", "help for one or all commands", global_=True),
    Cmd("aio_flush", "io_misc:_aio_flush", oneline="completes all outstanding aio requests"),
    Cmd("flush", "io_misc:_flush", "f", oneline="flush all in-core file state to disk"),
    Cmd("length", "io_misc:_length", "l", oneline="gets the length of the current file"),
    Cmd("info", "io_misc:_info", "i", oneline="prints information about the current file"),
    Cmd("alloc", "io_misc:_alloc", "a", 1, 2, "offset [count]",
        "checks if offset is allocated in the file"),
    Cmd("map", "io_misc:_map", None, 0, 0, "", "prints the allocated areas of a file"),
    Cmd("break", "io_break:_break", None, 2, 2, "event tag",
        "sets a breakpoint on event and tags the stopped request as tag"),
    Cmd("remove_break", "io_break:_remove_break", None, 1, 1, "tag", "remove a breakpoint by tag"),
    Cmd("wait_break", "io_break:_wait_break", None, 1, 1, "tag", "waits for the suspension of a request"),
    Cmd("resume", "io_break:_resume", None, 1, 1, "tag", "resumes the request tagged as tag"),
    Cmd("abort", _abort, oneline="simulate a program crash using abort(3)", nofile_ok=True),
    Cmd("sleep", _sleep, None, 1, 1, oneline="waits for the given value in milliseconds",
        nofile_ok=True),
    Cmd("sigraise", _sigraise, None, 1, 1, "signal", "raises a signal", nofile_ok=True),
    Cmd("close", _close, "c", oneline="close the current open file"),
    Cmd("quit", _quit, "q", -1, -1, oneline="exit the program", global_=True),
], key=lambda c: c.name.encode())


def find_command(name: str) -> Cmd | None:
    for ct in COMMANDS:
        if ct.name == name or ct.altname == name:
            return ct
    return None
