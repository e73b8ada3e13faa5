"""The raw format (QEMU's block/raw-format.c): a window onto the file node.

``RawNode(file, options, read_only, probed)`` takes the ``offset`` and ``size``
runtime options; a probed raw image protects its first sector from writes
that would make it probe as another format, and is read and written with
512-byte alignment. ``create(filename, opts)`` creates the file like
``qemu-img create -f raw``.
"""
from __future__ import annotations

import errno

from emulator.block import io
from emulator.block.node import (
    BDRV_BLOCK_OFFSET_VALID, BDRV_BLOCK_RAW, BDRV_REQ_FUA, BDRV_REQ_MAY_UNMAP,
    BDRV_REQ_NO_FALLBACK, BDRV_REQ_ZERO_WRITE, BlockError, BlockNode, BlockStatus,
)

PROBE_BUF_SIZE = 512
SECTOR_SIZE = 512


def probe(buf: bytes, filename: str | None) -> int:
    """Lowest positive score: raw wins only when no other format claims the image."""
    return 1


def probe_format(buf: bytes, filename: str | None) -> str:
    """bdrv_probe_all over the formats known here: 'qcow2', 'qcow' or 'raw'."""
    from emulator.block import qcow1
    from emulator.qcow2.driver import probe as qcow2_probe
    if qcow2_probe(buf, filename) > 1:
        return "qcow2"
    if qcow1.probe(buf) > 1:
        return "qcow"
    from emulator.block.luks import probe as luks_probe
    return "luks" if luks_probe(buf) > 1 else "raw"


def _parse_size(name: str, value: object) -> int:
    """A size option given as a number or as option text ('1M', JSON true is "on")."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    from emulator.block.options import SIZE, absorb  # lazy: only for options
    return int(absorb({name: value}, {name: SIZE}).get(name, 0))


def window(file: BlockNode, options: dict) -> tuple[int, int, bool]:
    """raw_read_options + raw_apply_options: (offset, size, size given) of the
    ``offset``/``size`` options (consumed) over ``file``, checked as QEMU does."""
    offset = _parse_size("offset", options.pop("offset", 0))
    has_size = "size" in options
    size = _parse_size("size", options.pop("size", 0))
    real_size = io.getlength(file)
    if offset > real_size:
        raise BlockError(errno.EINVAL, f"Offset ({offset}) cannot be greater than "
                         f"size of the containing file ({real_size})")
    if has_size and real_size - offset < size:
        raise BlockError(errno.EINVAL, f"The sum of offset ({offset}) and size "
                         f"({size}) has to be smaller or equal to the  actual size of "
                         f"the containing file ({real_size})")
    if has_size and size % SECTOR_SIZE:
        raise BlockError(errno.EINVAL, f"Specified size is not multiple of {SECTOR_SIZE}")
    return offset, size if has_size else real_size - offset, has_size


class RawNode(BlockNode):
    """A raw image: guest offset + ``offset`` option = file offset."""

    format_name = "raw"
    has_variable_length = True

    def __init__(self, file: BlockNode, options: dict | None = None,
                 read_only: bool = False, probed: bool = False) -> None:
        options = dict(options or {})
        self.file = file
        self.read_only = read_only
        self.probed = probed
        self.filename = file.filename
        self.offset, self.size, self.has_size = window(file, options)
        self.supports_zero_flags = (BDRV_REQ_FUA | BDRV_REQ_MAY_UNMAP | BDRV_REQ_NO_FALLBACK) \
            & file.supports_zero_flags
        self.supported_truncate_flags = getattr(file, "supported_truncate_flags", 0) \
            & BDRV_REQ_ZERO_WRITE
        if probed:
            self.request_alignment = SECTOR_SIZE

    def _adjust_offset(self, offset: int, length: int, is_write: bool) -> int:
        if self.has_size and (offset > self.size or length > self.size - offset):
            raise BlockError(errno.ENOSPC if is_write else errno.EINVAL)
        return offset + self.offset

    def drv_getlength(self) -> int:
        length = io.getlength(self.file)
        if length < self.offset:
            self.size = 0
        elif self.has_size:
            self.size = min(self.size, length - self.offset)
        else:
            self.size = length - self.offset
        return self.size

    def drv_preadv(self, offset: int, length: int) -> bytes:
        return io.pread(self.file, self._adjust_offset(offset, length, False), length)

    def drv_pwritev(self, offset: int, data: bytes, flags: int = 0) -> None:
        if self.probed and offset < PROBE_BUF_SIZE and data:
            if probe_format(data[:PROBE_BUF_SIZE], None) != "raw":
                raise BlockError(errno.EPERM)
        io.pwrite(self.file, self._adjust_offset(offset, len(data), True), data, flags)

    def drv_pwrite_zeroes(self, offset: int, length: int, flags: int) -> None:
        io.pwrite_zeroes(self.file, self._adjust_offset(offset, length, True), length, flags)

    def drv_pdiscard(self, offset: int, length: int) -> None:
        io.pdiscard(self.file, self._adjust_offset(offset, length, True), length)

    def drv_block_status(self, want_zero: bool, offset: int, length: int) -> BlockStatus:
        return BlockStatus(BDRV_BLOCK_RAW | BDRV_BLOCK_OFFSET_VALID, length,
                           offset + self.offset, self.file)

    def drv_truncate(self, size: int, exact: bool, prealloc: str, flags: int = 0) -> None:
        if self.has_size:
            raise BlockError(errno.ENOTSUP, "Cannot resize fixed-size raw disks")
        self.size = size
        io.truncate(self.file, size + self.offset, exact, prealloc, flags)

    def drv_flush(self) -> None:
        pass


def create(filename: str, opts: dict) -> None:
    """qemu-img create -f raw: the file sized to ``size`` rounded up to 512."""
    from emulator.block.file import FileNode
    if filename.startswith("file:"):
        filename = filename[5:]
    size = -(-_parse_size("size", opts.get("size", 0)) // SECTOR_SIZE) * SECTOR_SIZE
    prealloc = opts.get("preallocation", "off") or "off"
    if prealloc not in ("off", "metadata", "falloc", "full"):
        raise BlockError(errno.EINVAL, f"invalid parameter value: {prealloc}")
    FileNode.create(filename, size, prealloc)
