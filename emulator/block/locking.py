"""Image locking of the file protocol (file-posix's permission lock bytes).

QEMU marks every permission a user of an image holds, and every permission it
refuses to share, with a shared OFD lock on one byte of the image file
(100 + bit for held permissions, 200 + bit for unshared ones), then tests
that no other open file description locks a conflicting byte. The same real
locks are taken here, so conflicts show up both between processes (an image
in use by QEMU) and inside one process (a backing chain that loops back to
an image opened for writing).

API: permission bits (PERM_*), ``apply(file, held, unshared, check=True)``
which raises BlockError with QEMU's message and hint on a conflict;
``reapply(file)`` locks the same bytes on a new descriptor; a reopen that
changes whether the users of a file write goes through ``check_write`` and
``set_writable`` (the permissions its users would hold writable are
``file.lock_full``, recorded at open).
"""
from __future__ import annotations

import errno
import fcntl
import struct

from emulator.block.node import BlockError, BlockNode

PERM_CONSISTENT_READ = 0x01
PERM_WRITE = 0x02
PERM_WRITE_UNCHANGED = 0x04
PERM_RESIZE = 0x08
PERM_ALL = 0x0F
_NAMES = ("consistent read", "write", "write unchanged", "resize")

_PERM_BASE = 100
_SHARED_BASE = 200
_F_OFD_GETLK = getattr(fcntl, "F_OFD_GETLK", 36)
_F_OFD_SETLK = getattr(fcntl, "F_OFD_SETLK", 37)
#: struct flock on Linux/x86-64: l_type, l_whence, l_start, l_len, l_pid
_FLOCK = struct.Struct("hhxxxxqqixxxx")


def _fcntl(fd: int, op: int, lock_type: int, offset: int) -> int:
    """One fcntl lock call on byte ``offset``; returns the resulting l_type."""
    arg = _FLOCK.pack(lock_type, 0, offset, 1, 0)
    while True:
        try:
            return _FLOCK.unpack(fcntl.fcntl(fd, op, arg))[0]
        except InterruptedError:
            continue


def _lock_error(err: int, message: str) -> BlockError:
    """raw_lock_error_setg_errno: strerror only for unexpected errors."""
    if err in (errno.EAGAIN, errno.EACCES):
        return BlockError(err, message)
    import os
    return BlockError(err, f"{message}: {os.strerror(err)}")


def apply(file: BlockNode, held: int, unshared: int, check: bool = True) -> None:
    """Lock the bytes for ``held``/``unshared`` permissions, then check for conflicts."""
    if not getattr(file, "use_lock", True):
        return
    fd = file.fd
    for base, bits in ((_PERM_BASE, held), (_SHARED_BASE, unshared)):
        for i in range(len(_NAMES)):
            if bits & (1 << i):
                try:
                    _fcntl(fd, _F_OFD_SETLK, fcntl.F_RDLCK, base + i)
                except OSError as e:
                    raise _lock_error(e.errno, f"Failed to lock byte {base + i}") from None
    old_held, old_unshared = getattr(file, "lock_perms", (0, 0))
    file.lock_perms = (old_held | held, old_unshared | unshared)
    if not check:
        return
    _check(file, held, unshared)


def _check(file: BlockNode, held: int, unshared: int) -> None:
    """raw_check_lock_bytes: no one else may lock what we hold or refuse to share."""
    fd = file.fd
    hint = f"Is another process using the image [{file.filename}]?\n"
    for bits, base, text in ((held, _SHARED_BASE, 'Failed to get "{}" lock'),
                             (unshared, _PERM_BASE, 'Failed to get shared "{}" lock')):
        for i, name in enumerate(_NAMES):
            if not bits & (1 << i):
                continue
            try:
                conflict = _fcntl(fd, _F_OFD_GETLK, fcntl.F_WRLCK, base + i) != fcntl.F_UNLCK
            except OSError as e:
                err = _lock_error(e.errno, text.format(name))
                err.hint = hint
                raise err from None
            if conflict:
                raise BlockError(errno.EAGAIN, text.format(name), hint)


def reapply(file: BlockNode) -> None:
    """Lock the bytes recorded for ``file`` on its (new) descriptor."""
    if getattr(file, "use_lock", True) and hasattr(file, "lock_perms"):
        apply(file, *file.lock_perms, check=False)


def _writable_perms(file: BlockNode, writable: bool) -> tuple[int, int] | None:
    full = getattr(file, "lock_full", None)
    if full is None or not getattr(file, "use_lock", True):
        return None
    held, unshared = full
    return (held if writable else held & ~(PERM_WRITE | PERM_RESIZE)), unshared


def check_write(file: BlockNode) -> None:
    """The conflict check of a file whose users become writers (raw_check_perm)."""
    perms = _writable_perms(file, True)
    if perms is not None:
        _check(file, perms[0] & ~getattr(file, "lock_perms", (0, 0))[0], 0)


def set_writable(file: BlockNode, writable: bool) -> None:
    """Lock or unlock the write and resize bytes of a file's users (raw_set_perm)."""
    perms = _writable_perms(file, writable)
    if perms is None:
        return
    held, unshared = perms
    for i in range(len(_NAMES)):
        if getattr(file, "lock_perms", (0, 0))[0] & (1 << i) and not held & (1 << i):
            _fcntl(file.fd, _F_OFD_SETLK, fcntl.F_UNLCK, _PERM_BASE + i)
    file.lock_perms = (0, 0)
    apply(file, held, unshared, check=False)
