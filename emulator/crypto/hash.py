"""Hash algorithms (QCryptoHashAlgorithm) by their QAPI names, via ``cryptography``
(ripemd160, which it lacks, through hashlib's OpenSSL)."""
from __future__ import annotations

from emulator.crypto.errors import CryptoError

#: QAPI name -> digest length in bytes
DIGEST_LEN = {"md5": 16, "sha1": 20, "sha224": 28, "sha256": 32, "sha384": 48,
              "sha512": 64, "ripemd160": 20}


def algorithm(name: str):
    """The ``cryptography`` hash object for a QAPI hash name."""
    from cryptography.hazmat.primitives import hashes
    cls = {"md5": hashes.MD5, "sha1": hashes.SHA1, "sha224": hashes.SHA224,
           "sha256": hashes.SHA256, "sha384": hashes.SHA384,
           "sha512": hashes.SHA512}.get(name)
    if cls is None:
        raise CryptoError(f"Hash algorithm {name} not supported by qcowlab")
    return cls()


def digest(name: str, *parts: bytes) -> bytes:
    """qcrypto_hash_bytesv: the digest of the concatenated parts."""
    if name == "ripemd160":
        import hashlib
        return hashlib.new(name, b"".join(parts)).digest()
    from cryptography.hazmat.primitives import hashes
    h = hashes.Hash(algorithm(name))
    for p in parts:
        h.update(p)
    return h.finalize()
