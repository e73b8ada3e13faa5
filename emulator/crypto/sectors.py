"""Sector-wise encryption (crypto/block.c's cipher helpers): an IV per sector."""
from __future__ import annotations

from emulator.crypto.cipher import Cipher
from emulator.crypto.ivgen import IVGen


def encdec(cipher: Cipher, niv: int, ivgen: IVGen | None, sector_size: int, offset: int,
           data: bytes, encrypt: bool) -> bytes:
    """Encrypt (or decrypt) ``data`` starting at byte ``offset``, sector by sector."""
    sector = offset // sector_size
    func = cipher.encrypt if encrypt else cipher.decrypt
    if not niv:
        return func(data)
    out = bytearray()
    for pos in range(0, len(data), sector_size):
        out += func(data[pos:pos + sector_size], ivgen.calculate(sector, niv))
        sector += 1
    return bytes(out)
