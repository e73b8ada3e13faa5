"""The luks format driver (block/crypto.c): a LUKS header, then the encrypted payload.

``probe(buf)`` scores a LUKS header 100. ``LuksNode.open(file, options,
read_only)`` unlocks the master key with the secret named by the
'key-secret' option (options 'x-no-io' opens for metadata only, as
qemu-img info does); ``create(filename, opts)`` is qemu-img create -f luks.
Payload sectors are numbered from the start of the payload (guest offsets).
"""
from __future__ import annotations

import errno

from emulator.block import io
from emulator.block.node import BDRV_BLOCK_DATA, BlockError, BlockNode, BlockStatus

#: bytes encrypted/decrypted per step (BLOCK_CRYPTO_MAX_IO_SIZE)
MAX_IO_SIZE = 1024 * 1024


def probe(buf: bytes) -> int:
    from emulator.crypto.luks import has_format
    return 100 if has_format(buf) else 0


def json_filename(driver: str, file: BlockNode, strong: dict) -> str | None:
    """bdrv_refresh_filename's "json:{...}" name of a node opened with strong runtime
    options (a key-secret) over a plain file; None when the file is not plain."""
    from emulator.block.file import FileNode
    from emulator.cli.qobject import _scalar, qdict_items
    if type(file) is not FileNode:
        return None

    def dump(d: dict) -> str:  # qobject_to_json, compact
        return "{" + ", ".join(f"{_scalar(k)}: {dump(v) if isinstance(v, dict) else _scalar(v)}"
                               for k, v in qdict_items(d)) + "}"
    return "json:" + dump({"driver": driver, "file": {"driver": "file",
                                                      "filename": file.filename}, **strong})


def crypto_error(e) -> BlockError:
    """A CryptoError as the BlockError of an open or create."""
    return BlockError(errno.EINVAL, e.message, e.hint)


class LuksNode(BlockNode):
    """An open luks image."""

    format_name = "luks"
    encrypted = True

    @classmethod
    def open(cls, file: BlockNode, options: dict, read_only: bool) -> "LuksNode":
        from emulator.crypto.errors import CryptoError
        from emulator.crypto.luks import Luks
        s = cls()
        s.file, s.read_only, s.filename = file, read_only, file.filename
        opts = {"key-secret": options.get("key-secret")}

        def read(offset: int, length: int) -> bytes:
            try:
                return io.pread(file, offset, length)
            except BlockError as e:
                raise CryptoError(f"Could not read encryption header: {e.message}") from None
        try:
            s.crypto = Luks.open(opts, "", read, bool(options.get("x-no-io")))
        except CryptoError as e:
            raise crypto_error(e) from None
        s.request_alignment = s.crypto.sector_size
        if opts["key-secret"] is not None:
            s.json_filename = json_filename("luks", file, opts)
        return s

    def drv_getlength(self) -> int:
        return max(0, io.getlength(self.file) - self.crypto.payload_offset)

    def drv_preadv(self, offset: int, length: int) -> bytes:
        out = bytearray()
        for pos in range(0, length, MAX_IO_SIZE):
            cur = min(MAX_IO_SIZE, length - pos)
            data = io.pread(self.file, self.crypto.payload_offset + offset + pos, cur)
            out += self.crypto.decrypt(offset + pos, data)
        return bytes(out)

    def drv_pwritev(self, offset: int, data: bytes, flags: int = 0) -> None:
        for pos in range(0, len(data), MAX_IO_SIZE):
            chunk = self.crypto.encrypt(offset + pos, data[pos:pos + MAX_IO_SIZE])
            io.pwrite(self.file, self.crypto.payload_offset + offset + pos, chunk)

    def drv_block_status(self, want_zero: bool, offset: int, length: int) -> BlockStatus:
        return BlockStatus(BDRV_BLOCK_DATA, length)

    def drv_truncate(self, size: int, exact: bool, prealloc: str, flags: int = 0) -> None:
        io.truncate(self.file, size + self.crypto.payload_offset, exact, prealloc)

    def get_specific_info(self) -> dict:
        return self.crypto.get_info()

    def amend(self, opts: dict, force: bool) -> None:
        """block_crypto_amend_options: key slot changes (opts without a prefix)."""
        from emulator.crypto.errors import CryptoError
        try:
            self.crypto.amend(opts, force, lambda off, n: io.pread(self.file, off, n),
                              lambda off, data: io.pwrite(self.file, off, data))
        except CryptoError as e:
            raise crypto_error(e) from None


def create(filename: str, opts: dict) -> None:
    """qemu-img create -f luks: the header, then the payload of ``size`` bytes."""
    from emulator.block.file import FileNode
    prealloc = opts.get("preallocation", "off") or "off"
    if prealloc not in ("off", "metadata", "falloc", "full"):
        raise BlockError(errno.EINVAL, f"invalid parameter value: {prealloc}")
    FileNode.create(filename, 0, "off")
    file = FileNode(filename)
    try:
        create_on(file, opts)
    except BaseException:
        file.drv_close()
        import os
        os.unlink(filename)
        raise
    file.drv_close()


def create_on(file: BlockNode, opts: dict) -> None:
    """block_crypto_co_create_generic: a LUKS header on the file node ``file``
    (blockdev-create writes into the user's node), then ``size`` bytes of payload."""
    from emulator.crypto.errors import CryptoError
    from emulator.crypto.luks import Luks
    size = int(opts.get("size", 0) or 0)
    prealloc = opts.get("preallocation", "off") or "off"
    if prealloc == "metadata":
        prealloc = "off"
    io.refresh_total_sectors(file)

    def init(headerlen: int) -> None:
        io.truncate(file, size + headerlen, exact=False, prealloc=prealloc)

    def write(offset: int, data: bytes) -> None:
        io.pwrite(file, offset, data)
    crypto_opts = {k: opts.get(k) for k in ("key-secret", "cipher-alg", "cipher-mode",
                                            "ivgen-alg", "ivgen-hash-alg", "hash-alg",
                                            "iter-time")}
    try:
        Luks.create(crypto_opts, "", init, write)
    except CryptoError as e:
        raise crypto_error(e) from None
