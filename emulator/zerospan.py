"""Where the non-zero bytes of a mostly-zero buffer (a metadata table) lie.

Whole chunks are compared with zeroes (memcmp) and only the chunk holding
the boundary is stripped, so a table of zeroes costs microseconds.
"""
from __future__ import annotations

_CHUNK = 4096
_ZERO = bytes(_CHUNK)


def nonzero_span(data: bytes | bytearray, end: int) -> tuple[int, int]:
    """(first, last + 1) of the non-zero bytes in ``data[:end]``; (0, 0) when all are zero."""
    while end >= _CHUNK and data[end - _CHUNK:end] == _ZERO:
        end -= _CHUNK
    head = max(0, end - _CHUNK)
    end = head + len(bytes(data[head:end]).rstrip(b"\0"))
    if not end:
        return 0, 0
    start = 0
    while data[start:start + _CHUNK] == _ZERO:  # stops at the first non-zero byte's chunk
        start += _CHUNK
    chunk = bytes(data[start:start + _CHUNK])
    return start + len(chunk) - len(chunk.lstrip(b"\0")), end
