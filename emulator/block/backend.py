"""The BlockBackend in front of an opened image (QEMU's block/block-backend.c).

Only the checks QEMU applies to requests coming from a user of the image
(qemu-io, qemu-img) live here; requests a driver makes to its children skip
them, exactly as bdrv_co_* calls skip blk_check_byte_request.
"""
from __future__ import annotations

import errno

from emulator.block.node import BlockError, BlockNode


class BlockBackend:
    """The user-facing handle of a node tree's root."""

    def __init__(self, root: BlockNode, allow_write_beyond_eof: bool = False) -> None:
        self.root = root
        self.allow_write_beyond_eof = allow_write_beyond_eof

    def check_byte_request(self, offset: int, length: int) -> None:
        """blk_check_byte_request: EIO for negative or out-of-image requests."""
        if length < 0 or offset < 0:
            raise BlockError(errno.EIO)
        if not self.allow_write_beyond_eof:
            from emulator.block.io import getlength
            size = getlength(self.root)
            if offset > size or size - offset < length:
                raise BlockError(errno.EIO)
