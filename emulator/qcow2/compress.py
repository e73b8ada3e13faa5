"""Cluster compression as QEMU's qcow2-threads.c: raw deflate (zlib) and zstd.

API summary:
- ``compress(ctype, data, dest_size)`` -> bytes, or None when the result does
  not fit in ``dest_size`` bytes (QEMU's -ENOMEM: store uncompressed).
  Raises OSError(EIO) on a library failure.
- ``decompress(ctype, data, out_size)`` -> exactly ``out_size`` bytes, or
  raises OSError(EIO) like qcow2_*_decompress.
zstd is the system libzstd.so.1 through ctypes, loaded on first use.
"""
from __future__ import annotations

import errno
import zlib

from emulator.qcow2.header import COMPRESSION_ZLIB

_zstd = None


def _eio() -> OSError:
    return OSError(errno.EIO, "Input/output error")


def _zlib_compress(data: bytes, dest_size: int):
    c = zlib.compressobj(-1, zlib.DEFLATED, -12, 9, 0)
    out = c.compress(data) + c.flush(zlib.Z_FINISH)
    return out if len(out) <= dest_size else None


def _zlib_decompress(data: bytes, out_size: int) -> bytes:
    d = zlib.decompressobj(-12)
    try:
        out = d.decompress(data, out_size)
    except zlib.error:
        raise _eio()
    if len(out) != out_size:
        raise _eio()
    return out




def _lib():
    global _zstd
    if _zstd is None:
        import ctypes

        fields = [("buf", ctypes.c_void_p), ("size", ctypes.c_size_t),
                  ("pos", ctypes.c_size_t)]

        class Out(ctypes.Structure):
            _fields_ = fields

        class In(ctypes.Structure):
            _fields_ = fields

        lib = ctypes.CDLL("libzstd.so.1")
        lib.ZSTD_createCCtx.restype = ctypes.c_void_p
        lib.ZSTD_freeCCtx.argtypes = [ctypes.c_void_p]
        lib.ZSTD_compressStream2.argtypes = [ctypes.c_void_p, ctypes.POINTER(Out),
                                             ctypes.POINTER(In), ctypes.c_int]
        lib.ZSTD_compressStream2.restype = ctypes.c_size_t
        lib.ZSTD_createDCtx.restype = ctypes.c_void_p
        lib.ZSTD_freeDCtx.argtypes = [ctypes.c_void_p]
        lib.ZSTD_decompressStream.argtypes = [ctypes.c_void_p, ctypes.POINTER(Out),
                                              ctypes.POINTER(In)]
        lib.ZSTD_decompressStream.restype = ctypes.c_size_t
        lib.ZSTD_isError.argtypes = [ctypes.c_size_t]
        lib.ZSTD_isError.restype = ctypes.c_uint
        _zstd = (lib, Out, In, ctypes)
    return _zstd


def _zstd_compress(data: bytes, dest_size: int):
    lib, Out, In, ct = _lib()
    src = ct.create_string_buffer(data, len(data))
    dst = ct.create_string_buffer(max(dest_size, 1))
    out = Out(ct.cast(dst, ct.c_void_p), dest_size, 0)
    inp = In(ct.cast(src, ct.c_void_p), len(data), 0)
    cctx = lib.ZSTD_createCCtx()
    if not cctx:
        raise _eio()
    try:
        ret = lib.ZSTD_compressStream2(cctx, ct.byref(out), ct.byref(inp), 2)  # ZSTD_e_end
        if ret:
            if ret > out.size - out.pos:
                return None
            raise _eio()
        return dst.raw[:out.pos]
    finally:
        lib.ZSTD_freeCCtx(cctx)


def _zstd_decompress(data: bytes, out_size: int) -> bytes:
    lib, Out, In, ct = _lib()
    src = ct.create_string_buffer(data, len(data))
    dst = ct.create_string_buffer(max(out_size, 1))
    out = Out(ct.cast(dst, ct.c_void_p), out_size, 0)
    inp = In(ct.cast(src, ct.c_void_p), len(data), 0)
    dctx = lib.ZSTD_createDCtx()
    if not dctx:
        raise _eio()
    ret = 0
    try:
        while out.pos < out.size:
            last_in, last_out = inp.pos, out.pos
            ret = lib.ZSTD_decompressStream(dctx, ct.byref(out), ct.byref(inp))
            if lib.ZSTD_isError(ret):
                raise _eio()
            if last_in >= inp.pos and last_out >= out.pos:
                raise _eio()
        if ret > 0:
            raise _eio()
        return dst.raw[:out_size]
    finally:
        lib.ZSTD_freeDCtx(dctx)


def compress(ctype: int, data: bytes, dest_size: int):
    """Compress one cluster; None when it does not fit in ``dest_size`` bytes."""
    if ctype == COMPRESSION_ZLIB:
        return _zlib_compress(data, dest_size)
    return _zstd_compress(data, dest_size)


def decompress(ctype: int, data: bytes, out_size: int) -> bytes:
    """Decompress one cluster to exactly ``out_size`` bytes."""
    if ctype == COMPRESSION_ZLIB:
        return _zlib_decompress(data, out_size)
    return _zstd_decompress(data, out_size)
