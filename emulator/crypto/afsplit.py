"""The LUKS anti-forensic splitter (crypto/afsplit.c): one key spread over N stripes."""
from __future__ import annotations

from emulator.crypto.hash import DIGEST_LEN, digest


def _xor(a: bytes, b: bytes) -> bytes:
    return (int.from_bytes(a, "big") ^ int.from_bytes(b, "big")).to_bytes(len(a), "big")


def _diffuse(hash_alg: str, block: bytes) -> bytes:
    """Hash each digest-sized piece of ``block`` with its big-endian index in front."""
    dlen = DIGEST_LEN[hash_alg]
    out = bytearray()
    for i, pos in enumerate(range(0, len(block), dlen)):
        piece = block[pos:pos + dlen]
        out += digest(hash_alg, i.to_bytes(4, "big"), piece)[:len(piece)]
    return bytes(out)


def encode(hash_alg: str, key: bytes, stripes: int, random: bytes) -> bytes:
    """qcrypto_afsplit_encode: ``random`` supplies (stripes - 1) * len(key) bytes."""
    n = len(key)
    block = bytes(n)
    for i in range(stripes - 1):
        block = _diffuse(hash_alg, _xor(random[i * n:(i + 1) * n], block))
    return random[:(stripes - 1) * n] + _xor(key, block)


def decode(hash_alg: str, blocklen: int, stripes: int, split: bytes) -> bytes:
    """qcrypto_afsplit_decode: the key back from its split material."""
    block = bytes(blocklen)
    for i in range(stripes - 1):
        block = _diffuse(hash_alg, _xor(split[i * blocklen:(i + 1) * blocklen], block))
    return _xor(split[(stripes - 1) * blocklen:stripes * blocklen], block)
