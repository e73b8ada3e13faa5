"""The host file protocol node (QEMU's block/file-posix.c for regular files).

API summary:
- ``FileNode(path, read_only=False)`` opens an existing file; raises
  BlockError(errno, "Could not open 'PATH': <strerror>") like raw_open_common.
- ``FileNode.create(path, size, prealloc="off")`` creates/truncates a file as
  raw_co_create (allocating the first block the way QEMU does).
- callbacks: drv_getlength, drv_preadv (zero-filled past EOF), drv_pwritev,
  drv_pwrite_zeroes (punch hole with BDRV_REQ_MAY_UNMAP, else
  FALLOC_FL_ZERO_RANGE, falling back like handle_aiocb_write_zeroes),
  drv_pdiscard (punch hole, file size kept), drv_block_status (SEEK_DATA /
  SEEK_HOLE), drv_truncate (off / falloc / full, exact size), drv_flush_to_disk,
  drv_close.
The same syscalls as QEMU are used on the real file, so holes, file size and
SEEK_DATA answers match what QEMU would leave behind.
"""
from __future__ import annotations

import errno
import os
import stat

from emulator.block import coroutine
from emulator.block.node import (
    BDRV_BLOCK_DATA, BDRV_BLOCK_OFFSET_VALID, BDRV_BLOCK_ZERO, BDRV_REQ_MAY_UNMAP,
    BDRV_REQ_NO_FALLBACK, BDRV_REQ_ZERO_WRITE, BlockError, BlockNode, BlockStatus,
)

FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
FALLOC_FL_ZERO_RANGE = 0x10
MAX_BLOCKSIZE = 4096
SECTOR_SIZE = 512

_libc = None


def _fallocate(fd: int, mode: int, offset: int, length: int) -> int:
    """fallocate(2); returns 0 or -errno (ctypes loaded on first use)."""
    global _libc
    if _libc is None:
        import ctypes
        import ctypes.util
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        _libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    if length <= 0:
        return -errno.EINVAL
    import ctypes
    while True:
        if _libc.fallocate(fd, mode, offset, length) == 0:
            return 0
        err = ctypes.get_errno()
        if err != errno.EINTR:
            return -(errno.ENOTSUP if err == errno.EOPNOTSUPP else err)


def _translate_err(ret: int) -> int:
    if ret in (-errno.ENODEV, -errno.ENOSYS, -errno.EOPNOTSUPP, -errno.ENOTTY):
        return -errno.ENOTSUP
    return ret


def _allocate_first_block(fd: int, max_size: int) -> None:
    size = SECTOR_SIZE if max_size < MAX_BLOCKSIZE else MAX_BLOCKSIZE
    try:
        os.pwrite(fd, b"\0" * size, 0)
    except OSError:
        pass


def _regular_truncate(fd: int, size: int, prealloc: str) -> None:
    """raw_regular_truncate for a regular file: resize to exactly ``size``."""
    current = os.fstat(fd).st_size
    if current > size and prealloc != "off":
        raise BlockError(errno.ENOTSUP, "Cannot use preallocation for shrinking files")
    if prealloc == "off":
        try:
            os.ftruncate(fd, size)
        except OSError as e:
            raise BlockError(e.errno, f"Could not resize file: {os.strerror(e.errno)}")
        if current == 0 and size > current:
            _allocate_first_block(fd, size)
        return
    if prealloc == "falloc":
        if size != current:
            try:
                os.posix_fallocate(fd, current, size - current)
            except OSError as e:
                os.ftruncate(fd, current)
                raise BlockError(e.errno, f"Could not preallocate new data: {os.strerror(e.errno)}")
            if current == 0:
                _allocate_first_block(fd, size)
        return
    if prealloc == "full":
        os.ftruncate(fd, size)
        pos, zero = current, b"\0" * 65536
        while pos < size:
            pos += os.pwrite(fd, zero[:min(65536, size - pos)], pos)
        os.fsync(fd)
        return
    raise BlockError(errno.ENOTSUP, f"Unsupported preallocation mode: {prealloc}")


def _thread_pool(method):
    """raw_thread_pool_submit: the host I/O runs in a worker thread while the
    request's coroutine yields (also when it fails); the main thread just runs it."""
    def submit(self, *args):
        if coroutine._current is None:
            return method(self, *args)
        try:
            return method(self, *args)
        finally:
            from emulator.block import aio_context
            aio_context.host_io(method.__name__ == "drv_preadv")
    submit.__doc__ = method.__doc__
    return submit


class FileNode(BlockNode):
    """A regular host file opened like file-posix (buffered, no O_DIRECT)."""

    format_name = "file"

    def __init__(self, path: str, read_only: bool = False) -> None:
        self.filename = path
        self.read_only = read_only
        try:
            self.fd = os.open(path, os.O_RDONLY if read_only else os.O_RDWR)
        except OSError as e:
            raise BlockError(e.errno, f"Could not open '{path}': {os.strerror(e.errno)}")
        mode = os.fstat(self.fd).st_mode
        # devices are QEMU's host_device/host_cdrom, which this node stands in for
        if not (stat.S_ISREG(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode)):
            os.close(self.fd)
            self.fd = -1
            raise BlockError(errno.EINVAL,
                             f"'file' driver requires '{path}' to be a regular file")
        # host I/O requests issued: in QEMU each one yields the coroutine
        self.io_ops = 0
        self.has_discard = True
        self.has_write_zeroes = True
        self.has_fallocate = True
        self.request_alignment = 1
        #: cache.direct=on (O_DIRECT in QEMU): aligned reads and writes go through an
        #: O_DIRECT descriptor (``dfd``), so the page cache (which makes ext4 report
        #: unwritten extents as data) is filled and emptied exactly as by QEMU
        self.direct = False
        self.dfd = self.dfd_mode = -1
        self.supports_zero_flags = BDRV_REQ_MAY_UNMAP | BDRV_REQ_NO_FALLBACK
        # extending a regular file reads back as zeroes
        self.supported_truncate_flags = BDRV_REQ_ZERO_WRITE

    @classmethod
    def create(cls, path: str, size: int, prealloc: str = "off") -> None:
        """Create or empty ``path`` and size it like raw_co_create."""
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise BlockError(e.errno, f"Could not create '{path}': {os.strerror(e.errno)}")
        try:
            _regular_truncate(fd, 0, "off")
            _regular_truncate(fd, size, prealloc)
        finally:
            os.close(fd)

    # -- callbacks --
    def drv_getlength(self) -> int:
        return os.fstat(self.fd).st_size

    def _direct_buffer(self, offset: int, length: int):
        """A page-aligned buffer for an O_DIRECT request, or None when the request is
        not aligned (it then goes through the page cache)."""
        import mmap
        if not length or (offset | length) % max(self.request_alignment, 512):
            return None
        mode = (os.O_RDONLY if self.read_only else os.O_RDWR) | os.O_DIRECT
        if self.dfd < 0 or self.dfd_mode != mode:  # first use, or reopened read-write
            if self.dfd >= 0:
                os.close(self.dfd)
            self.dfd, self.dfd_mode = os.open(self.filename, mode), mode
        return mmap.mmap(-1, length)

    @_thread_pool
    def drv_preadv(self, offset: int, length: int) -> bytes:
        self.io_ops += 1
        buf = self._direct_buffer(offset, length) if self.direct else None
        if buf is not None:
            with buf:
                n = os.preadv(self.dfd, [buf], offset)
                return buf[:n] + b"\0" * (length - n)  # zeroes past the end of file
        if self.direct:  # no readahead past the request
            os.posix_fadvise(self.fd, offset, length, os.POSIX_FADV_RANDOM)
        data = os.pread(self.fd, length, offset)
        if self.direct:  # whole pages: the kernel keeps partly covered ones
            start = offset & ~4095
            os.posix_fadvise(self.fd, start, -(-(offset + length - start) // 4096) * 4096,
                             os.POSIX_FADV_DONTNEED)
        while len(data) < length:
            more = os.pread(self.fd, length - len(data), offset + len(data))
            if not more:
                return data + b"\0" * (length - len(data))
            data += more
        return data

    @_thread_pool
    def drv_pwritev(self, offset: int, data: bytes, flags: int = 0) -> None:
        self._check_writable()
        self.io_ops += 1
        buf = self._direct_buffer(offset, len(data)) if self.direct else None
        if buf is not None:
            with buf:
                buf.write(data)
                try:
                    os.pwritev(self.dfd, [buf], offset)
                except OSError as e:
                    raise BlockError(e.errno) from None
            return
        view = memoryview(data)
        while view:
            try:
                n = os.pwrite(self.fd, view, offset)
            except OSError as e:
                # e.g. EFBIG past the host's maximum file size
                raise BlockError(e.errno) from None
            view, offset = view[n:], offset + n

    @_thread_pool
    def drv_pwrite_zeroes(self, offset: int, length: int, flags: int) -> None:
        self._check_writable()
        self.io_ops += 1
        if flags & BDRV_REQ_MAY_UNMAP:
            ret = _fallocate(self.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length)
            if ret not in (-errno.ENOTSUP, -errno.EINVAL, -errno.EBUSY):
                self._raise(ret)
                return
        ret = self._write_zeroes(offset, length)
        self._raise(ret)

    def _write_zeroes(self, offset: int, length: int) -> int:
        if self.has_write_zeroes:
            ret = _fallocate(self.fd, FALLOC_FL_ZERO_RANGE, offset, length)
            if ret == -errno.ENOTSUP:
                self.has_write_zeroes = False
            elif ret != -errno.EINVAL:
                return ret
        if self.has_discard and self.has_fallocate:
            ret = _fallocate(self.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length)
            if ret == 0:
                ret = _fallocate(self.fd, 0, offset, length)
                if ret != -errno.ENOTSUP:
                    return ret
                self.has_fallocate = False
            elif ret not in (-errno.ENOTSUP, -errno.EINVAL):
                return ret
            elif ret == -errno.ENOTSUP:
                self.has_discard = False
        if self.has_fallocate and offset >= self.drv_getlength():
            ret = _fallocate(self.fd, 0, offset, length)
            if ret != -errno.ENOTSUP:
                return ret
            self.has_fallocate = False
        return -errno.ENOTSUP

    @_thread_pool
    def drv_pdiscard(self, offset: int, length: int) -> None:
        self._check_writable()
        if not self.has_discard:
            raise BlockError(errno.ENOTSUP)
        ret = _translate_err(_fallocate(self.fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                        offset, length))
        if ret == -errno.ENOTSUP:
            self.has_discard = False
        self._raise(ret)

    def drv_block_status(self, want_zero: bool, offset: int, length: int) -> BlockStatus:
        if not want_zero:
            return BlockStatus(BDRV_BLOCK_DATA | BDRV_BLOCK_OFFSET_VALID, length, offset, self)
        data, hole, err = self._find_allocation(offset)
        if err == -errno.ENXIO:
            flags, pnum = BDRV_BLOCK_ZERO, length
        elif err:
            flags, pnum = BDRV_BLOCK_DATA, length
        elif data == offset:
            flags, pnum = BDRV_BLOCK_DATA, hole - offset
        else:
            flags, pnum = BDRV_BLOCK_ZERO, data - offset
        return BlockStatus(flags | BDRV_BLOCK_OFFSET_VALID, pnum, offset, self)

    def _find_allocation(self, start: int) -> tuple[int, int, int]:
        """(data, hole, -errno or 0) as file-posix's find_allocation."""
        try:
            offs = os.lseek(self.fd, start, os.SEEK_DATA)
        except OSError as e:
            return 0, 0, -e.errno
        if offs < start:
            return 0, 0, -errno.EIO
        if offs > start:
            return offs, start, 0
        try:
            offs = os.lseek(self.fd, start, os.SEEK_HOLE)
        except OSError as e:
            return 0, 0, -e.errno
        if offs < start:
            return 0, 0, -errno.EIO
        if offs > start:
            return start, offs, 0
        return 0, 0, -errno.EBUSY

    @_thread_pool
    def drv_truncate(self, size: int, exact: bool, prealloc: str, flags: int = 0) -> None:
        self._check_writable()
        _regular_truncate(self.fd, size, prealloc)

    @_thread_pool
    def drv_flush_to_disk(self) -> None:
        try:
            os.fdatasync(self.fd)
        except OSError as e:
            raise BlockError(e.errno) from None

    def drv_close(self) -> None:
        if self.dfd >= 0:
            os.close(self.dfd)
            self.dfd = -1
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def _check_writable(self) -> None:
        if self.read_only:
            raise BlockError(errno.EBADF)

    @staticmethod
    def _raise(ret: int, message: str | None = None) -> None:
        if ret < 0:
            raise BlockError(-ret, message or "")
