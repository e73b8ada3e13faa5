"""Removing scratch directories in the background.

A directory is renamed aside at once (its name is free for the next run) and
deleted by a worker thread while the cases go on: unlinking image files is
slow on a busy disk. The thread stops when nothing is left, and being no
daemon it is waited for before the process exits.
"""
from __future__ import annotations

import itertools
import os
import shutil
import threading
from pathlib import Path
from typing import Optional

_lock = threading.Lock()
_pending: list[Path] = []
_worker: Optional[threading.Thread] = None
_serial = itertools.count()


def discard(path: Path) -> None:
    """Remove directory ``path`` (if it exists) without waiting for it."""
    aside = path.with_name(f".{path.name}.trash-{os.getpid()}-{next(_serial)}")
    try:
        path.rename(aside)
    except OSError:  # gone already, or not renamable: remove it here
        shutil.rmtree(path, ignore_errors=True)
        return
    global _worker
    with _lock:
        _pending.append(aside)
        if _worker is None:
            _worker = threading.Thread(target=_remove_pending, name="qcowlab-trash")
            _worker.start()


def _remove_pending() -> None:
    global _worker
    while True:
        with _lock:
            if not _pending:
                _worker = None
                return
            path = _pending.pop()
        shutil.rmtree(path, ignore_errors=True)


def _forget_after_fork() -> None:
    """A forked child leaves the parent's directories to the parent's thread (and
    may not inherit a lock held by it)."""
    global _lock, _worker
    _lock = threading.Lock()
    _pending.clear()
    _worker = None


os.register_at_fork(after_in_child=_forget_after_fork)
