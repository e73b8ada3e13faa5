"""qemu-img compare: exit 0 identical, 1 different, 2 open error, 3/4 I/O errors."""
from __future__ import annotations

import os
import sys

from emulator.cli import blockopts
from emulator.cli.img_common import error_exit, img_getopt
from emulator.cli.imgopen import close, img_open
from emulator.cli.progress import Progress, f32
from emulator.report import error_report

IO_BUF_SIZE = 2 * 1024 * 1024
SECTOR = 512


class _Done(Exception):
    """Leave the comparison with this exit status."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def find_nonzero(buf: bytes) -> int:
    """Offset of the first 512-byte block holding a non-zero byte, or -1."""
    n = len(buf)
    end = n // SECTOR * SECTOR
    for i in range(0, end, SECTOR):
        if buf[i:i + SECTOR].count(0) != SECTOR:
            return i
    if end < n and buf[end:].count(0) != n - end:
        return end
    return -1


def compare_buffers(a: bytes, b: bytes) -> tuple[bool, int]:
    """(first sector differs, bytes with that same state from the start)."""
    n = len(a)
    i = min(n, SECTOR)
    res = a[:i] != b[:i]
    if not res and a == b:
        return False, n
    while i < n:
        ln = min(n - i, SECTOR)
        if (a[i:i + ln] != b[i:i + ln]) != res:
            break
        i += ln
    return res, i


class _Compare:
    def __init__(self, quiet: bool, progress: Progress) -> None:
        self.quiet = quiet
        self.progress = progress

    def say(self, text: str) -> None:
        if not self.quiet:
            sys.stdout.write(text)

    def read(self, node, offset: int, length: int, filename: str) -> bytes:
        from emulator.block import io as bio
        from emulator.block.node import BlockError
        try:
            return bio.pread(node, offset, length)
        except BlockError as e:
            error_report(f"Error while reading offset {offset} of {filename}: "
                         f"{os.strerror(e.errno)}")
            raise _Done(4) from None

    def status(self, node, offset: int, length: int, filename: str):
        from emulator.block import io as bio
        from emulator.block.node import BlockError
        try:
            return bio.block_status_above(node, None, offset, length)[0]
        except BlockError:
            error_report(f"Sector allocation test failed for {filename}")
            raise _Done(3) from None

    def check_empty(self, node, offset: int, length: int, filename: str) -> None:
        idx = find_nonzero(self.read(node, offset, length, filename))
        if idx >= 0:
            self.say(f"Content mismatch at offset {offset + idx}!\n")
            raise _Done(1)

    def run(self, n1, n2, f1: str, f2: str, strict: bool) -> int:
        from emulator.block import io as bio
        from emulator.block.node import BDRV_BLOCK_ALLOCATED, BDRV_BLOCK_ZERO
        size1, size2 = bio.getlength(n1), bio.getlength(n2)
        total = min(size1, size2)
        base = max(size1, size2)
        self.progress.print(0, 100)
        if strict and size1 != size2:
            self.say("Strict mode: Image size mismatch!\n")
            return 1
        offset = 0
        while offset < total:
            st1 = self.status(n1, offset, size1 - offset, f1)
            st2 = self.status(n2, offset, size2 - offset, f2)
            alloc1, alloc2 = st1.flags & BDRV_BLOCK_ALLOCATED, st2.flags & BDRV_BLOCK_ALLOCATED
            chunk = min(st1.pnum, st2.pnum)
            if strict and st1.flags != st2.flags:
                self.say(f"Strict mode: Offset {offset} block status mismatch!\n")
                return 1
            if st1.flags & BDRV_BLOCK_ZERO and st2.flags & BDRV_BLOCK_ZERO:
                pass
            elif alloc1 == alloc2:
                if alloc1:
                    chunk = min(chunk, IO_BUF_SIZE)
                    b1 = self.read(n1, offset, chunk, f1)
                    b2 = self.read(n2, offset, chunk, f2)
                    differ, pnum = compare_buffers(b1, b2)
                    if differ or pnum != chunk:
                        self.say(f"Content mismatch at offset {offset + (0 if differ else pnum)}!\n")
                        return 1
            else:
                chunk = min(chunk, IO_BUF_SIZE)
                if alloc1:
                    self.check_empty(n1, offset, chunk, f1)
                else:
                    self.check_empty(n2, offset, chunk, f2)
            offset += chunk
            self.progress.print(f32(f32(f32(chunk) / f32(base)) * 100), 100)
        if size1 != size2:
            self.say("Warning: Image size mismatch!\n")
            over, fname = (n1, f1) if size1 > size2 else (n2, f2)
            while offset < base:
                st = self.status(over, offset, base - offset, fname)
                chunk = st.pnum
                if st.flags & BDRV_BLOCK_ALLOCATED and not st.flags & BDRV_BLOCK_ZERO:
                    chunk = min(chunk, IO_BUF_SIZE)
                    self.check_empty(over, offset, chunk, fname)
                offset += chunk
                self.progress.print(f32(f32(f32(chunk) / f32(base)) * 100), 100)
        self.say("Images are identical.\n")
        return 0


def img_compare(argv: list[str]) -> int:
    fmt1 = fmt2 = None
    cache = "writeback"
    progress = quiet = strict = image_opts = force_share = False
    g = img_getopt(argv, ":hf:F:T:pqsU", [
        ("help", 0, "h"), ("object", 1, "object"), ("image-opts", 0, "image-opts"),
        ("force-share", 0, "U")])
    for c in g:
        if c == "f":
            fmt1 = g.optarg
        elif c == "F":
            fmt2 = g.optarg
        elif c == "T":
            cache = g.optarg
        elif c == "p":
            progress = True
        elif c == "q":
            quiet = True
        elif c == "s":
            strict = True
        elif c == "U":
            force_share = True
        elif c == "image-opts":
            image_opts = True
    if quiet:
        progress = False
    if g.optind != len(g.argv) - 2:
        error_exit("Expecting two image file names")
    f1, f2 = g.argv[g.optind], g.argv[g.optind + 1]
    meter = Progress(progress, 2.0)
    try:
        return _compare(image_opts, f1, f2, fmt1, fmt2, cache, force_share, quiet, strict, meter)
    finally:
        meter.end()


def _compare(image_opts: bool, f1: str, f2: str, fmt1, fmt2, cache: str, force_share: bool,
             quiet: bool, strict: bool, meter: Progress) -> int:
    if cache not in blockopts.CACHE_MODES:
        error_report(f"Invalid source cache option: {cache}")
        return 2
    n1 = img_open(image_opts, f1, fmt1, read_only=True, force_share=force_share)
    if n1 is None:
        return 2
    try:
        n2 = img_open(image_opts, f2, fmt2, read_only=True, force_share=force_share)
        if n2 is None:
            return 2
        try:
            return _Compare(quiet, meter).run(n1, n2, f1, f2, strict)
        except _Done as d:
            return d.code
        finally:
            close(n2)
    finally:
        close(n1)
