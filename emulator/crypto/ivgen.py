"""IV generators (crypto/ivgen*.c): plain, plain64 and essiv, by sector number."""
from __future__ import annotations

from emulator.crypto.cipher import Cipher, block_len, key_len
from emulator.crypto.hash import digest

IVGEN_ALGS = ("plain", "plain64", "essiv")


class IVGen:
    """qcrypto_ivgen_new(alg, cipher_alg, hash_alg, key)."""

    def __init__(self, alg: str, cipher_alg: str | None = None, hash_alg: str | None = None,
                 key: bytes = b"") -> None:
        self.alg = alg
        if alg == "essiv":
            salt = digest(hash_alg, key)
            self._cipher = Cipher(cipher_alg, "ecb", salt[:key_len(cipher_alg)])
            self._nblock = block_len(cipher_alg)

    def calculate(self, sector: int, niv: int) -> bytes:
        """The IV of ``sector`` (little-endian sector number, padded/cut to ``niv``)."""
        if self.alg == "plain":
            iv = (sector & 0xFFFFFFFF).to_bytes(4, "little")
        elif self.alg == "plain64":
            iv = (sector & ((1 << 64) - 1)).to_bytes(8, "little")
        else:
            data = (sector & ((1 << 64) - 1)).to_bytes(8, "little")[:self._nblock]
            iv = self._cipher.encrypt(data + bytes(self._nblock - len(data)))
        return iv[:niv] + bytes(max(0, niv - len(iv)))
