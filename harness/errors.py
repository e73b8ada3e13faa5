"""Errors raised for broken cases: always rendered as one ``FILE:LINE: message`` line."""
from __future__ import annotations


class CaseError(Exception):
    """A problem in a case file (or its golden file), located by file and line."""

    def __init__(self, path: str, line: int, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}")
        self.path = path
        self.line = line
        self.message = message
