"""PBKDF2 (crypto/pbkdf.c): key derivation and the iteration-count benchmark."""
from __future__ import annotations

from emulator.crypto.errors import CryptoError


def pbkdf2(hash_alg: str, key: bytes, salt: bytes, iterations: int, nout: int) -> bytes:
    """qcrypto_pbkdf2 through ``cryptography``'s PBKDF2HMAC (hashlib for ripemd160)."""
    if hash_alg == "ripemd160":
        import hashlib
        return hashlib.pbkdf2_hmac(hash_alg, key, salt, iterations, nout)
    from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

    from emulator.crypto.hash import algorithm
    return PBKDF2HMAC(algorithm(hash_alg), nout, salt, iterations).derive(key)


#: CPU time (ms) one benchmark run must exceed. QEMU runs until 500 ms; the rate
#: (iterations per second) is the same, a tenth of the wait per key slot.
BENCH_MS = 50


def count_iters(hash_alg: str, key: bytes, salt: bytes, nout: int) -> int:
    """qcrypto_pbkdf2_count_iters: iterations that take one second of this thread's CPU.

    Starts at 2^15 iterations and scales up until one run takes over BENCH_MS
    of thread CPU time (millisecond resolution, like QEMU's getrusage).
    """
    import time
    iterations = 1 << 15
    while True:
        start = int(time.thread_time() * 1000)
        pbkdf2(hash_alg, key, salt, iterations, nout)
        delta = int(time.thread_time() * 1000) - start
        if delta == 0:
            raise CryptoError("Unable to get accurate CPU usage")
        if delta > BENCH_MS:
            break
        if delta < BENCH_MS // 5:
            iterations *= 10
        else:
            iterations = iterations * 2 * BENCH_MS // delta
    return iterations * 1000 // delta
