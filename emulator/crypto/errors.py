"""The error of the crypto layer: an Error with QEMU's message (and hint)."""
from __future__ import annotations


class CryptoError(Exception):
    """A failed crypto operation; ``message`` is QEMU's text, ``hint`` its appended hint."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
