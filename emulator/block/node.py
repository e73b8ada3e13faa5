"""The block node: what every driver (file, raw, qcow2) is, and the flags they share.

A node mirrors QEMU's BlockDriverState with its driver callbacks folded in.
Drivers implement the ``drv_*`` methods; callers never call them directly but go
through the generic request layer in :mod:`emulator.block.io`, which applies
alignment, zero-write fallbacks, EOF handling and backing-chain logic the way
QEMU's block/io.c does.
"""
from __future__ import annotations

import errno

# Block status flags, same values as QEMU's BDRV_BLOCK_*.
BDRV_BLOCK_DATA = 0x01
BDRV_BLOCK_ZERO = 0x02
BDRV_BLOCK_OFFSET_VALID = 0x04
BDRV_BLOCK_RAW = 0x08
BDRV_BLOCK_ALLOCATED = 0x10
BDRV_BLOCK_EOF = 0x20
BDRV_BLOCK_RECURSE = 0x40

# Request flags, same values as QEMU's BDRV_REQ_*.
BDRV_REQ_ZERO_WRITE = 0x2
BDRV_REQ_MAY_UNMAP = 0x4
BDRV_REQ_FUA = 0x10
BDRV_REQ_WRITE_COMPRESSED = 0x20
BDRV_REQ_NO_FALLBACK = 0x100


class BlockError(Exception):
    """A failed request or open; ``errno`` is what QEMU's callback would return negated.

    ``hint`` is QEMU's error_append_hint() text (printed after the message by
    error_report_err, already newline-terminated).
    """

    def __init__(self, err: int, message: str = "", hint: str = "") -> None:
        super().__init__(message or errno_message(err))
        self.errno = err
        self.message = message or errno_message(err)
        self.hint = hint


def errno_message(err: int) -> str:
    """strerror() text as glibc prints it (e.g. 'Input/output error')."""
    import os
    return os.strerror(err)


#: how many automatic node names this process has generated (id_generate's counter)
_auto_names = 0


def auto_node_name() -> str:
    """id_generate(ID_BLOCK): '#block', a per-process counter, two random digits.

    QEMU draws the digits at random too, so only the counter part is reproducible.
    """
    global _auto_names
    import os
    name = f"#block{_auto_names}{int.from_bytes(os.urandom(2), 'little') % 100:02d}"
    _auto_names += 1
    return name


def reset_auto_names() -> None:
    """A new tool run (a new QEMU process) numbers its nodes from 0 again."""
    global _auto_names
    _auto_names = 0


class BlockStatus:
    """Result of a block-status query: flags, bytes covered, host offset, node mapped to."""

    __slots__ = ("flags", "pnum", "offset", "file")

    def __init__(self, flags: int, pnum: int, offset: int | None = None,
                 file: BlockNode | None = None) -> None:
        self.flags = flags
        self.pnum = pnum
        self.offset = offset
        self.file = file


class BlockNode:
    """Base of every driver instance (one node of a block graph)."""

    format_name: str = ""
    #: child holding this node's data/metadata (qcow2 and raw: the file node)
    file: BlockNode | None = None
    #: backing node (qcow2 only), None when there is none
    backing: BlockNode | None = None
    read_only: bool = False
    filename: str = ""
    #: the node-name option, or an automatic "#blockNNN" name (bdrv_assign_node_name)
    node_name: str = ""
    #: request alignment and limits as QEMU's BlockLimits
    request_alignment: int = 1
    pwrite_zeroes_alignment: int = 0
    pdiscard_alignment: int = 0
    max_transfer: int = 0
    supports_zero_flags: int = 0  # BDRV_REQ_MAY_UNMAP | BDRV_REQ_NO_FALLBACK etc.
    #: write requests finished on this node / counted at its last successful flush
    write_gen: int = 0
    flushed_gen: int = 0

    # --- driver callbacks (byte based; raise BlockError on failure) ---
    def drv_getlength(self) -> int:
        raise NotImplementedError

    def drv_preadv(self, offset: int, length: int) -> bytes:
        raise NotImplementedError

    def drv_pwritev(self, offset: int, data: bytes, flags: int = 0) -> None:
        raise BlockError(errno.ENOTSUP)

    def drv_pwrite_zeroes(self, offset: int, length: int, flags: int) -> None:
        """Raise BlockError(ENOTSUP) to make the generic layer write explicit zeroes."""
        raise BlockError(errno.ENOTSUP)

    def drv_pdiscard(self, offset: int, length: int) -> None:
        raise BlockError(errno.ENOTSUP)

    def drv_pwritev_compressed(self, offset: int, data: bytes) -> None:
        raise BlockError(errno.ENOTSUP)

    def drv_block_status(self, want_zero: bool, offset: int, length: int) -> BlockStatus:
        raise NotImplementedError

    def drv_truncate(self, size: int, exact: bool, prealloc: str, flags: int = 0) -> None:
        raise BlockError(errno.ENOTSUP)

    def drv_flush(self) -> None:
        """bdrv_co_flush_to_os: write cached data back to the children."""

    def drv_flush_to_disk(self) -> None:
        """bdrv_co_flush_to_disk: make the written data stable (file nodes)."""

    def drv_close(self) -> None:
        pass
