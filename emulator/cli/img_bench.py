"""qemu-img bench (img_bench): timed streams of read or write requests.

QEMU keeps up to ``depth`` requests in flight; their offsets are assigned in
submission order. Reads change nothing, so they are issued one after the
other; writes with ``depth`` > 1 run as coroutines (emulator/block/aio_context.py)
and allocate in the order QEMU's requests reach their allocation. Flushes come
after every ``flush_interval`` completed requests. Only the elapsed time differs.
"""
from __future__ import annotations

import os
import sys
import time

from emulator.cli.img_common import error_exit, img_getopt, parse_size_arg
from emulator.report import error_report

OPTION_FLUSH_INTERVAL, OPTION_IMAGE_OPTS, OPTION_PATTERN, OPTION_NO_DRAIN = 256, 257, 258, 259
INT_MAX = (1 << 31) - 1
CACHE_MODES = ("none", "off", "directsync", "writeback", "unsafe", "writethrough")


def _strtoul(text: str, limit: int) -> int | None:
    """qemu_strtoul of the whole string, None when invalid or above ``limit``."""
    from emulator.units import U64, c_strtoul
    value, end, overflow = c_strtoul(text, 0, U64)
    if end == 0 or end != len(text) or overflow or value > limit:
        return None
    return value


class _Bench:
    """The options and BenchData of one run."""

    count = 75000
    depth = 64
    offset = 0
    bufsize = 4096
    step = 0
    pattern = 0
    flush_interval = 0
    drain_on_flush = True
    write = quiet = image_opts = force_share = native_aio = False
    direct = False
    fmt: str | None = None
    filename = ""


def _parse(argv: list[str]) -> _Bench | None:
    b = _Bench()
    g = img_getopt(argv, ":hc:d:f:ni:o:qs:S:t:wU",
                   [("help", 0, "h"), ("flush-interval", 1, OPTION_FLUSH_INTERVAL),
                    ("image-opts", 0, OPTION_IMAGE_OPTS), ("pattern", 1, OPTION_PATTERN),
                    ("no-drain", 0, OPTION_NO_DRAIN), ("force-share", 0, "U")])
    numbers = {"c": ("count", INT_MAX, "Invalid request count specified"),
               "d": ("depth", INT_MAX, "Invalid queue depth specified"),
               OPTION_PATTERN: ("pattern", 0xff, "Invalid pattern byte specified"),
               OPTION_FLUSH_INTERVAL: ("flush_interval", INT_MAX,
                                       "Invalid flush interval specified")}
    sizes = {"o": ("offset", "offset", 0, (1 << 63) - 1),
             "s": ("bufsize", "buffer size", 0, INT_MAX),
             "S": ("step", "step_size", 0, INT_MAX)}
    for c in g:
        if c in numbers:
            attr, limit, msg = numbers[c]
            value = _strtoul(g.optarg, limit)
            if value is None:
                error_report(msg)
                return None
            setattr(b, attr, value)
        elif c in sizes:
            attr, name, lo, hi = sizes[c]
            value = parse_size_arg(name, g.optarg, lo, hi)
            if value < 0:
                return None
            setattr(b, attr, value)
        elif c == "f":
            b.fmt = g.optarg
        elif c == "n":
            b.native_aio = True
        elif c == "i":
            if g.optarg not in ("threads", "native", "io_uring"):
                error_report(f"Invalid aio option: {g.optarg}")
                return None
            b.native_aio = b.native_aio or g.optarg == "native"
        elif c == "q":
            b.quiet = True
        elif c == "t":
            if g.optarg not in CACHE_MODES:
                error_report("Invalid cache mode")
                return None
            b.direct = g.optarg in ("none", "off", "directsync")
        elif c == "w":
            b.write = True
        elif c == "U":
            b.force_share = True
        elif c == OPTION_IMAGE_OPTS:
            b.image_opts = True
        elif c == OPTION_NO_DRAIN:
            b.drain_on_flush = False
    if g.optind != len(g.argv) - 1:
        error_exit("Expecting one image file name")
    b.filename = g.argv[-1]
    return b


def img_bench(argv: list[str]) -> int:
    b = _parse(argv)
    if b is None:
        return 1
    if not b.write and b.flush_interval:
        error_report("--flush-interval is only available in write tests")
        return 1
    if b.flush_interval and b.flush_interval < b.depth:
        error_report("Flush interval can't be smaller than depth")
        return 1
    if b.native_aio and not b.direct:
        error_report(f"Could not open '{b.filename}': aio=native was specified, but it "
                     "requires cache.direct=on, which was not specified.")
        return 1
    from emulator.cli.imgopen import close, img_open
    if b.force_share and b.write:
        error_report(f"Could not open '{b.filename}': force-share=on can only be used with "
                     "read-only images")
        return 1
    node = img_open(b.image_opts, b.filename, b.fmt, read_only=not b.write,
                    force_share=b.force_share, nocache=b.direct)
    if node is None:
        return 1
    from emulator.block import io
    size = io.getlength(node)
    step = b.step or b.bufsize
    sys.stdout.write(f"Sending {b.count} {'write' if b.write else 'read'} requests, "
                     f"{b.bufsize} bytes each, {b.depth} in parallel (starting at offset "
                     f"{b.offset}, step size {step})\n")
    if b.flush_interval:
        sys.stdout.write(f"Sending flush every {b.flush_interval} requests\n")
    if b.count and b.depth and size == 0:
        sys.stdout.discard()  # QEMU dies of SIGFPE (offset modulo a zero size)
        return 128 + 8
    start = time.time()
    if not _run(node, b, size, step):
        return 1
    elapsed = time.time() - start
    close(node)
    sys.stdout.write("Run completed in %3.3f seconds.\n" % elapsed)
    return 0


def _run(node, b: _Bench, size: int, step: int) -> bool:
    """Every request in submission order; False after a failed one (exit without close)."""
    from emulator.block import io
    from emulator.block.node import BlockError
    if b.count and not b.depth:
        while True:  # QEMU never submits anything and waits forever
            time.sleep(3600)
    data = bytes([b.pattern]) * b.bufsize
    if b.write and b.depth > 1:
        return _run_parallel(node, b, size, step, data)
    offset = b.offset
    for done in range(1, b.count + 1):
        try:
            if b.write:
                io.pwrite(node, offset, data)
            else:
                io.pread(node, offset, b.bufsize)
        except BlockError as e:
            error_report(f"Failed request: {os.strerror(e.errno)}")
            _abandon(node)
            return False
        offset = (offset + step) % size
        if b.flush_interval and (b.count - done) % b.flush_interval == 0:
            io.flush(node)
    return True


class _Failed(Exception):
    """A request or flush failed: qemu-img exits at once."""


def _run_parallel(node, b: _Bench, size: int, step: int, data: bytes) -> bool:
    """Writes with up to ``depth`` in flight, each a coroutine (bench_cb): every
    completion submits the next requests from inside the finished coroutine,
    where they wait to run until it ends (QEMU enters them depth-first)."""
    from emulator.block import aio_context, coroutine, io
    from emulator.block.node import BlockError
    st = {"n": b.count, "in_flight": 0, "offset": b.offset, "in_flush": False}

    def submit(request) -> None:
        """blk_aio_*: run ``request`` in a coroutine; its callback ``bench_cb``."""
        returned = []

        def body() -> None:
            try:
                request()
                error = None
            except BlockError as e:
                error = e
            if returned:
                bench_cb(error)
            else:
                pending.append(error)
        pending: list = []
        co = coroutine.Coroutine(body)
        coroutine.wake(co)
        returned.append(True)
        if co.done:
            aio_context.schedule_bh(lambda: bench_cb(pending[0]))

    def bench_cb(error) -> None:
        if error is not None:
            what = "Failed flush request" if st["in_flush"] else "Failed request"
            error_report(f"{what}: {os.strerror(error.errno)}")
            raise _Failed()
        if st["in_flush"]:
            st["in_flush"] = False
        elif st["in_flight"] > 0:
            remaining = st["n"] - st["in_flight"]
            st["n"] -= 1
            st["in_flight"] -= 1
            if b.flush_interval and remaining % b.flush_interval == 0:
                if not st["in_flight"] or not b.drain_on_flush:
                    st["in_flush"] = b.drain_on_flush
                    submit(lambda: io.flush(node))
                if b.drain_on_flush:
                    return
        while st["n"] > st["in_flight"] and st["in_flight"] < b.depth:
            offset = st["offset"]
            st["in_flight"] += 1
            st["offset"] = (offset + step) % size
            submit(lambda off=offset: io.pwrite(node, off, data))

    try:
        bench_cb(None)
        aio_context.poll_while(lambda: st["n"] > 0)
    except _Failed:
        _abandon(node)
        return False
    return True


def _abandon(node) -> None:
    """exit() without closing the image: metadata still cached is never written."""
    while node is not None:
        if node.file is not None and node.file is not node:
            node.file.drv_close()
        node = node.backing
