"""The legacy qcow AES format (crypto/block-qcow.c): AES-128-CBC, plain64 IVs.

The key is the password's first 16 bytes (zero padded); there is no header.
"""
from __future__ import annotations

from emulator.crypto.errors import CryptoError
from emulator.crypto.sectors import encdec

SECTOR_SIZE = 512


class QcowAes:
    """A qcow AES crypto block (key material only once opened with I/O)."""

    def __init__(self) -> None:
        self.cipher = self.ivgen = None

    @classmethod
    def open(cls, opts: dict, prefix: str, no_io: bool) -> "QcowAes":
        s = cls()
        if not no_io:
            s._init(opts, prefix)
        return s

    @classmethod
    def create(cls, opts: dict, prefix: str) -> "QcowAes":
        s = cls()
        s._init(opts, prefix)
        return s

    def _init(self, opts: dict, prefix: str) -> None:
        from emulator.crypto.cipher import Cipher
        from emulator.crypto.ivgen import IVGen
        from emulator.crypto.secret import lookup_as_utf8
        if opts.get("key-secret") is None:
            raise CryptoError(f"Parameter '{prefix}key-secret' is required for cipher")
        password = lookup_as_utf8(opts["key-secret"])
        key = password[:16].ljust(16, b"\0")
        self.cipher = Cipher("aes-128", "cbc", key)
        self.ivgen = IVGen("plain64")

    def encrypt(self, offset: int, data: bytes) -> bytes:
        return encdec(self.cipher, 16, self.ivgen, SECTOR_SIZE, offset, data, True)

    def decrypt(self, offset: int, data: bytes) -> bytes:
        return encdec(self.cipher, 16, self.ivgen, SECTOR_SIZE, offset, data, False)
