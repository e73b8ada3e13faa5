"""Ciphers (crypto/cipher*.c) by QAPI name and mode, via ``cryptography``.

Supported: aes-128/192/256 in ecb, cbc, xts and ctr (AES-192-XTS, which
OpenSSL lacks, is built from AES-ECB), cast5-128 in ecb, cbc and ctr, des
and 3des in ecb, cbc and ctr. serpent-* and twofish-* are QEMU ciphers the
``cryptography`` package does not have: they are refused.
"""
from __future__ import annotations

from emulator.crypto.errors import CryptoError

#: QCryptoCipherAlgorithm QAPI name -> (key length, block length)
ALGORITHMS = {
    "aes-128": (16, 16), "aes-192": (24, 16), "aes-256": (32, 16), "des": (8, 8),
    "3des": (24, 8), "cast5-128": (16, 8), "serpent-128": (16, 16),
    "serpent-192": (24, 16), "serpent-256": (32, 16), "twofish-128": (16, 16),
    "twofish-192": (24, 16), "twofish-256": (32, 16),
}
MODES = ("ecb", "cbc", "xts", "ctr")


def key_len(alg: str) -> int:
    return ALGORITHMS[alg][0]


def block_len(alg: str) -> int:
    return ALGORITHMS[alg][1]


def iv_len(alg: str, mode: str) -> int:
    """qcrypto_cipher_get_iv_len: no IV for ECB, a block's worth otherwise."""
    return 0 if mode == "ecb" else block_len(alg)


def _primitive(alg: str, key: bytes):
    from cryptography.hazmat.primitives.ciphers import algorithms
    family = alg.split("-")[0]
    if family == "aes":
        return algorithms.AES(key)
    from cryptography.hazmat.decrepit.ciphers import algorithms as old
    if family == "cast5":
        return old.CAST5(key)
    if family in ("des", "3des"):
        return old.TripleDES(key * 3 if family == "des" else key)
    raise CryptoError(f"Cipher algorithm '{alg}' is not supported by qcowlab")


def _mul_alpha(t: int) -> int:
    """Multiply an XTS tweak (little-endian 128-bit integer) by x in GF(2^128)."""
    t <<= 1
    if t >> 128:
        t = (t & ((1 << 128) - 1)) ^ 0x87
    return t


class Cipher:
    """qcrypto_cipher_new(alg, mode, key): encrypt/decrypt whole blocks with an IV."""

    def __init__(self, alg: str, mode: str, key: bytes) -> None:
        nkey = key_len(alg) * (2 if mode == "xts" else 1)
        if len(key) != nkey:
            raise CryptoError(f"Cipher key length {len(key)} should be {nkey}")
        if mode == "xts" and block_len(alg) != 16:
            raise CryptoError(f"Unsupported cipher mode {mode}")
        self.alg, self.mode, self.key = alg, mode, key
        half = len(key) // 2
        self._native_xts = mode == "xts" and alg in ("aes-128", "aes-256")
        if mode == "xts" and not self._native_xts:
            from cryptography.hazmat.primitives.ciphers import Cipher as C, modes
            self._data = C(_primitive(alg, key[:half]), modes.ECB())
            self._tweak = C(_primitive(alg, key[half:]), modes.ECB()).encryptor()
        else:
            self._algorithm = _primitive(alg, key)
            if mode == "ecb":  # stateless: one context serves every call
                from cryptography.hazmat.primitives.ciphers import Cipher as C, modes
                c = C(self._algorithm, modes.ECB())
                self._ecb = (c.encryptor(), c.decryptor())

    def _ctx(self, iv: bytes, encrypt: bool):
        from cryptography.hazmat.primitives.ciphers import Cipher as C, modes
        if self.mode == "ecb":
            return self._ecb[0 if encrypt else 1]
        mode = {"cbc": modes.CBC, "ctr": modes.CTR, "xts": modes.XTS}[self.mode](iv)
        c = C(self._algorithm, mode)
        return c.encryptor() if encrypt else c.decryptor()

    def _xts_by_ecb(self, data: bytes, iv: bytes, encrypt: bool) -> bytes:
        t = int.from_bytes(self._tweak.update(iv), "little")
        tweaks = bytearray()
        for _ in range(len(data) // 16):
            tweaks += t.to_bytes(16, "little")
            t = _mul_alpha(t)
        mask = int.from_bytes(tweaks, "little")
        ctx = self._data.encryptor() if encrypt else self._data.decryptor()
        x = (int.from_bytes(data, "little") ^ mask).to_bytes(len(data), "little")
        y = ctx.update(x)
        return (int.from_bytes(y, "little") ^ mask).to_bytes(len(data), "little")

    def encrypt(self, data: bytes, iv: bytes = b"") -> bytes:
        if self.mode == "xts" and not self._native_xts:
            return self._xts_by_ecb(data, iv, True)
        return self._ctx(iv, True).update(data)

    def decrypt(self, data: bytes, iv: bytes = b"") -> bytes:
        if self.mode == "xts" and not self._native_xts:
            return self._xts_by_ecb(data, iv, False)
        return self._ctx(iv, False).update(data)
