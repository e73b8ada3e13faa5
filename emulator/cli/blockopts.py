"""Validation of the cache, discard and aio mode words the tools accept (block.c)."""
from __future__ import annotations

CACHE_MODES = ("off", "none", "directsync", "writeback", "unsafe", "writethrough")
DISCARD_MODES = ("off", "ignore", "on", "unmap")
AIO_MODES = ("threads", "native", "io_uring")
PREALLOC_MODES = ("off", "metadata", "falloc", "full")


def cache_nocache(mode: str) -> bool:
    """Whether a valid cache mode sets BDRV_O_NOCACHE (cache.direct=on)."""
    return mode in ("off", "none", "directsync")


def cache_writethrough(mode: str) -> bool:
    """Whether a valid cache mode leaves the BlockBackend's write cache off."""
    return mode in ("directsync", "writethrough")
