"""The null-co / null-aio protocol drivers (block/null.c): a device of a set size
that stores nothing.

``NullNode(driver, options)`` consumes the runtime options ``size`` (default
1 GiB), ``latency-ns`` and ``read-zeroes`` (default off). Reads leave the
caller's buffer alone unless ``read-zeroes=on``: qemu-io's buffers hold 0xab,
qemu-img's come fresh from the allocator (zeroes in practice);
writes, zero writes and discards succeed without effect.
"""
from __future__ import annotations

from emulator.block.node import BDRV_BLOCK_OFFSET_VALID, BDRV_BLOCK_ZERO, BlockNode, BlockStatus
from emulator.block.options import BOOL, NUMBER, SIZE, absorb

#: the byte qemu-io fills its I/O buffers with (qemu_io_alloc)
UNTOUCHED_BUFFER_BYTE = 0xAB


_DESCS = {"size": SIZE, "latency-ns": NUMBER, "read-zeroes": BOOL}
#: where QEMU's &error_abort reports a bad value of each type
_ABORT_SITES = {SIZE: "parse_option_size() at ../../util/qemu-option.c:145",
                NUMBER: "parse_option_number() at ../../util/qemu-option.c:104",
                BOOL: "qapi_bool_parse() at ../../qapi/qapi-util.c:104"}


def _absorb_or_abort(options: dict) -> dict:
    """null_file_open absorbs its options with &error_abort: a bad value aborts."""
    from emulator.block.node import BlockError
    from emulator.cli.qobject import qdict_items
    for key, value in qdict_items(options):
        if key in _DESCS:
            try:
                absorb({key: value}, {key: _DESCS[key]})
            except BlockError as e:
                import sys

                from emulator import report
                sys.stderr.write(f"Unexpected error in {_ABORT_SITES[_DESCS[key]]}:\n"
                                 f"{report.prog_name}: {e.message}\n")
                sys.stderr.flush()
                raise report.AssertFailed(e.message) from None
    return absorb(options, _DESCS)


class NullNode(BlockNode):
    """An open null-co/null-aio node."""

    #: the driver has no bdrv_get_info
    no_get_info = True

    def __init__(self, driver: str, options: dict) -> None:
        o = _absorb_or_abort(options)
        self.format_name = driver
        self.protocol_name = driver
        self.filename = f"{driver}://"
        self.size = o.get("size", 1 << 30)
        self.read_zeroes = bool(o.get("read-zeroes", False))
        self.use_lock = False

    def drv_getlength(self) -> int:
        return self.size

    def drv_preadv(self, offset: int, length: int) -> bytes:
        if self.read_zeroes:
            return bytes(length)
        from emulator import report
        return bytes([UNTOUCHED_BUFFER_BYTE if report.prog_name == "qemu-io" else 0]) * length

    def drv_pwritev(self, offset: int, data: bytes, flags: int = 0) -> None:
        pass

    def drv_pwrite_zeroes(self, offset: int, length: int, flags: int) -> None:
        pass

    def drv_pdiscard(self, offset: int, length: int) -> None:
        pass

    def drv_block_status(self, want_zero: bool, offset: int, length: int) -> BlockStatus:
        flags = BDRV_BLOCK_OFFSET_VALID | (BDRV_BLOCK_ZERO if self.read_zeroes else 0)
        return BlockStatus(flags, length, offset, self)
