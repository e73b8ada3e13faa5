"""Per-case timing history (the ``(last: 1.3s)`` column), kept in .timings.json."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Optional


class Timings:
    """Last elapsed time of each case, per implementation / format / options."""

    def __init__(self, path: Path, key: str) -> None:
        self.path = path
        self.key = key
        try:
            self.data: dict[str, dict[str, float]] = json.loads(path.read_text())
            if not isinstance(self.data, dict):
                self.data = {}
        except (OSError, ValueError):
            self.data = {}

    def get(self, case: str) -> Optional[float]:
        value = self.data.get(self.key, {}).get(case)
        return value if isinstance(value, (int, float)) else None

    def update(self, case: str, elapsed: float) -> None:
        self.data.setdefault(self.key, {})[case] = elapsed

    def save(self) -> None:
        """Write the history; a concurrent run never reads a half-written file."""
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(json.dumps(self.data, indent=1, sort_keys=True) + "\n")
            tmp.replace(self.path)
        except OSError:
            tmp.unlink(missing_ok=True)
