"""The compress filter (block/filter-compress.c): every write to it becomes a
compressed write of its child, which must be a format that can compress.

``CompressNode(child)`` raises BlockError with QEMU's message when the child's
format cannot write compressed clusters; requests are aligned to the child's
cluster size.
"""
from __future__ import annotations

import errno

from emulator.block import io
from emulator.block.node import (
    BDRV_BLOCK_OFFSET_VALID, BDRV_BLOCK_RAW, BDRV_REQ_WRITE_COMPRESSED, BlockError, BlockNode,
    BlockStatus,
)


class CompressNode(BlockNode):
    """An open compress filter over ``child``."""

    format_name = "compress"
    has_variable_length = True
    is_filter = True

    def __init__(self, child: BlockNode) -> None:
        if type(child).drv_pwritev_compressed is BlockNode.drv_pwritev_compressed:
            name = child.format_name or "(no format)"
            raise BlockError(errno.ENOTSUP,
                             f"Compression is not supported for underlying format: {name}")
        self.file = child
        self.filename = child.filename
        self.read_only = child.read_only
        self.supports_zero_flags = child.supports_zero_flags
        self.request_alignment = max(getattr(child, "cluster_size", 0) or 1,
                                     child.request_alignment)

    def drv_getlength(self) -> int:
        return io.getlength(self.file)

    def drv_preadv(self, offset: int, length: int) -> bytes:
        return io.pread(self.file, offset, length)

    def drv_pwritev(self, offset: int, data: bytes, flags: int = 0) -> None:
        io.pwrite(self.file, offset, data, flags | BDRV_REQ_WRITE_COMPRESSED)

    def drv_pwrite_zeroes(self, offset: int, length: int, flags: int) -> None:
        io.pwrite_zeroes(self.file, offset, length, flags)

    def drv_pdiscard(self, offset: int, length: int) -> None:
        io.pdiscard(self.file, offset, length)

    def drv_block_status(self, want_zero: bool, offset: int, length: int) -> BlockStatus:
        """The generic filter answer: look at the child."""
        return BlockStatus(BDRV_BLOCK_RAW | BDRV_BLOCK_OFFSET_VALID, length, offset, self.file)
