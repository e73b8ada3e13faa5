"""qemu-img map (human and json)."""
from __future__ import annotations

import os
import sys

from emulator.cli.img_common import error_exit, img_getopt, output_format, parse_size_arg
from emulator.cli.imgopen import close, img_open
from emulator.report import error_report


class MapEntry:
    """One MapEntry of qemu-img map; offset/filename are None when absent."""

    def __init__(self, start: int = 0, length: int = 0, data: bool = False,
                 zero: bool = False, depth: int = 0, present: bool = False,
                 offset: int | None = None, filename: str | None = None) -> None:
        self.start, self.length, self.data, self.zero = start, length, data, zero
        self.depth, self.present, self.offset, self.filename = depth, present, offset, filename


def _hex(v: int) -> str:
    """printf's %#-16x: 0x prefix except for zero."""
    return ("%#x" % v if v else "0").ljust(16)


def get_block_status(node, offset: int, length: int) -> MapEntry:
    from emulator.block import io as bio
    from emulator.block.node import (BDRV_BLOCK_ALLOCATED, BDRV_BLOCK_DATA,
                                     BDRV_BLOCK_OFFSET_VALID, BDRV_BLOCK_ZERO)
    depth = 0
    while True:
        while getattr(node, "is_filter", False):  # bdrv_skip_filters
            node = node.file
        st = bio.block_status(node, offset, length)
        length = st.pnum
        if not length:  # e.g. the end of a raw window at an unaligned offset
            from emulator.report import assert_fail
            assert_fail("../../qemu-img.c:3101", "get_block_status", "bytes")
        flags = st.flags
        if flags & (BDRV_BLOCK_ZERO | BDRV_BLOCK_DATA):
            break
        node = node.backing
        if node is None:
            flags = 0
            break
        depth += 1
    has_offset = bool(flags & BDRV_BLOCK_OFFSET_VALID)
    filename = st.file.filename if st.file is not None and has_offset else None
    return MapEntry(offset, length, bool(flags & BDRV_BLOCK_DATA), bool(flags & BDRV_BLOCK_ZERO),
                    depth, bool(flags & BDRV_BLOCK_ALLOCATED),
                    st.offset if has_offset else None, filename)


def mergeable(curr: MapEntry, nxt: MapEntry) -> bool:
    if curr.length == 0:
        return False
    if (curr.zero, curr.data, curr.depth, curr.present) != \
            (nxt.zero, nxt.data, nxt.depth, nxt.present):
        return False
    if (curr.filename is None) != (nxt.filename is None) or \
            (curr.offset is None) != (nxt.offset is None):
        return False
    if curr.filename is not None and curr.filename != nxt.filename:
        return False
    if curr.offset is not None and curr.offset + curr.length != nxt.offset:
        return False
    return True


def dump_entry(json: bool, e: MapEntry, nxt: MapEntry | None) -> bool:
    """Print one entry; False after the compressed-cluster error of the human format."""
    out = sys.stdout
    if not json:
        if e.data and e.offset is None:
            error_report("File contains external, encrypted or compressed clusters.")
            return False
        if e.data and not e.zero:
            out.write(_hex(e.start) + _hex(e.length) + _hex(e.offset or 0)
                      + (e.filename or "") + "\n")
        if nxt is not None and (not nxt.data or nxt.zero):
            nxt.data = False
            nxt.zero = True
        return True
    tf = {True: "true", False: "false"}
    text = (f'{{ "start": {e.start}, "length": {e.length}, "depth": {e.depth}, '
            f'"present": {tf[e.present]}, "zero": {tf[e.zero]}, "data": {tf[e.data]}')
    if e.offset is not None:
        text += f', "offset": {e.offset}'
    text += "}"
    if nxt is not None:
        text += ",\n"
    out.write(text)
    return True


def img_map(argv: list[str]) -> int:
    from emulator.block.node import BlockError
    fmt = output = None
    image_opts = force_share = False
    start_offset = 0
    max_length = -1
    g = img_getopt(argv, ":f:s:l:hU", [
        ("help", 0, "h"), ("format", 1, "f"), ("output", 1, "output"),
        ("object", 1, "object"), ("image-opts", 0, "image-opts"), ("force-share", 0, "U"),
        ("start-offset", 1, "s"), ("max-length", 1, "l")])
    for c in g:
        if c == "f":
            fmt = g.optarg
        elif c == "U":
            force_share = True
        elif c == "output":
            output = g.optarg
        elif c == "s":
            start_offset = parse_size_arg("start offset", g.optarg)
            if start_offset < 0:
                return 1
        elif c == "l":
            max_length = parse_size_arg("max length", g.optarg)
            if max_length < 0:
                return 1
        elif c == "image-opts":
            image_opts = True
    if g.optind != len(g.argv) - 1:
        error_exit("Expecting one image file name")
    filename = g.argv[g.optind]
    json = output_format(output)
    if json < 0:
        return 1
    node = img_open(image_opts, filename, fmt, read_only=True, force_share=force_share)
    if node is None:
        return 1
    try:
        return _map(node, json == 1, start_offset, max_length)
    except BlockError as e:
        error_report(f"Could not read file metadata: {os.strerror(e.errno)}")
        return 1
    finally:
        close(node)


def _map(node, json: bool, start_offset: int, max_length: int) -> int:
    from emulator.block import io as bio
    out = sys.stdout
    if json:
        out.write("[")
    else:
        out.write("%-16s%-16s%-16s%s\n" % ("Offset", "Length", "Mapped to", "File"))
    length = bio.getlength(node)
    if max_length != -1:
        length = min(start_offset + max_length, length)
    curr = MapEntry(start=start_offset)
    while curr.start + curr.length < length:
        offset = curr.start + curr.length
        nxt = get_block_status(node, offset, length - offset)
        if mergeable(curr, nxt):
            curr.length += nxt.length
            continue
        if curr.length > 0 and not dump_entry(json, curr, nxt):
            return 1
        curr = nxt
    ok = dump_entry(json, curr, None)
    if json:
        out.write("]\n")
    return 0 if ok else 1
