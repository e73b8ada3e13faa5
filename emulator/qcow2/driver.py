"""The qcow2 format node (block/qcow2.c): open, read, write, status, truncate, close.

API summary:
- ``probe(buf, filename) -> int``: 100 for a qcow2 header of version >= 2.
- ``Qcow2.open(file, options, read_only, open_backing) -> Qcow2`` validates
  the header like qcow2_do_open and raises BlockError with QEMU's message.
  ``open_backing(filename, fmt)`` is called with the backing file name and
  format from the image when a backing file is set; pass None to open
  without the backing chain.
  Options understood: "lazy-refcounts", "pass-discard-request",
  "pass-discard-snapshot", "pass-discard-other" (bool or "on"/"off"),
  "discard" ("unmap"/"on" enables unmapping, default on like qemu-io),
  "x-check" (True = BDRV_O_CHECK, used by qemu-img check), "x-no-io" (True =
  BDRV_O_NO_IO, used by qemu-img info: an AES-encrypted image opens without
  its key), "overlap-check" (none/constant/cached/all).
- attributes: cluster_size, cluster_bits, size, qcow_version, extended_l2,
  backing_file, backing_format, refcount_order, l1_table, l1_size,
  refcount_table, header (parsed Header), incompatible_features, ...
- ``get_specific_info()`` -> dict in QEMU's output order.
- ``change_backing_file(name, fmt)``, ``update_header()``, ``mark_corrupt()``,
  ``mark_consistent()``, ``make_empty()`` (qemu-img commit), ``write_caches()``.
- callbacks drv_* as in :class:`emulator.block.node.BlockNode`.
"""
from __future__ import annotations

import errno
import struct
import sys

from emulator.block.node import (
    BDRV_BLOCK_DATA, BDRV_BLOCK_OFFSET_VALID, BDRV_BLOCK_RECURSE, BDRV_BLOCK_ZERO,
    BDRV_REQ_MAY_UNMAP, BDRV_REQ_NO_FALLBACK, BDRV_REQ_ZERO_WRITE, BlockError, BlockNode,
    BlockStatus,
)
from emulator.qcow2 import extensions as ext
from emulator.qcow2 import header as hdr
from emulator.qcow2 import l2_entry as l2e
from emulator.qcow2.l2_entry import SubclusterType as ST

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

INT_MAX = (1 << 31) - 1
#: QCOW_MAX_CRYPT_CLUSTERS: clusters per encrypted read or write chunk
MAX_CRYPT_CLUSTERS = 32
CRYPT_NONE, CRYPT_AES, CRYPT_LUKS = 0, 1, 2


def probe(buf: bytes, filename: str) -> int:
    """Format probe score, as qcow2_probe."""
    if len(buf) >= hdr.HEADER_SIZE:
        magic, version = struct.unpack_from(">II", buf, 0)
        if magic == hdr.QCOW_MAGIC and version >= 2:
            return 100
    return 0


def _opt_bool(options: dict, key: str, default: bool) -> bool:
    val = options.get(key, default)
    if isinstance(val, str):
        return val.lower() in ("on", "true", "yes", "unmap")
    return bool(val)


def _io():
    from emulator.block import io
    return io


class Qcow2(BlockNode):
    """An open qcow2 image."""

    format_name = "qcow2"
    supports_backing = True
    supported_truncate_flags = BDRV_REQ_ZERO_WRITE
    #: debug_event of a blkdebug file child (BLKDBG_EVENT), None without one
    blkdbg = None
    #: allocations in flight while requests interleave (emulator/qcow2/dependencies.py)
    cluster_allocs: list = ()
    #: s->lock: the coroutine holding it and those waiting (emulator/qcow2/lock.py)
    lock_holder = None
    lock_waiters: list = ()
    #: thread-pool jobs (compression, encryption) running and waiting (emulator/qcow2/threads.py)
    thread_jobs = 0
    thread_waiters: list = ()

    # ------------------------------------------------------------------ open
    @classmethod
    def open(cls, file: BlockNode, options: dict, read_only: bool,
             open_backing: Callable[[str, str | None], BlockNode] | None) -> "Qcow2":
        s = cls()
        s.file = file
        s.blkdbg = getattr(file, "debug_event", None)
        s.filename = file.filename
        s.read_only = read_only
        s._open(options or {}, open_backing)
        return s

    def _open(self, options: dict, open_backing) -> None:
        from emulator.qcow2.l1_table import load_l1_table
        from emulator.qcow2.refcount import load_refcount_table
        io = _io()
        check_mode = bool(options.get("x-check"))
        try:
            raw = io.pread(self.file, 0, hdr.HEADER_SIZE)
        except BlockError as e:
            raise BlockError(e.errno, f"Could not read qcow2 header: {e.message}") from None
        h = hdr.Header.parse(raw)
        if h.magic != hdr.QCOW_MAGIC:
            raise BlockError(errno.EINVAL, "Image is not in qcow2 format")
        if h.version < 2 or h.version > 3:
            raise BlockError(errno.ENOTSUP, f"Unsupported qcow2 version {h.version}")
        self.qcow_version = h.version
        if h.cluster_bits < hdr.MIN_CLUSTER_BITS or h.cluster_bits > hdr.MAX_CLUSTER_BITS:
            raise BlockError(errno.EINVAL, f"Unsupported cluster size: 2^{h.cluster_bits}")
        self.cluster_bits = h.cluster_bits
        self.cluster_size = cs = 1 << h.cluster_bits
        if h.version == 3 and h.header_length < hdr.HEADER_V3_SIZE:
            raise BlockError(errno.EINVAL, "qcow2 header too short")
        if h.header_length > cs:
            raise BlockError(errno.EINVAL, "qcow2 header exceeds cluster size")
        self.unknown_header_fields = b""
        if h.header_length > hdr.HEADER_SIZE:
            self.unknown_header_fields = io.pread(self.file, hdr.HEADER_SIZE,
                                                  h.header_length - hdr.HEADER_SIZE)
        if h.backing_file_offset > cs:
            raise BlockError(errno.EINVAL, "Invalid backing file offset")
        ext_end = h.backing_file_offset if h.backing_file_offset else cs
        self.incompatible_features = h.incompatible_features
        self.compatible_features = h.compatible_features
        self.autoclear_features = h.autoclear_features
        self.compression_type = h.compression_type if h.header_length > hdr.HEADER_V3_SIZE \
            else hdr.COMPRESSION_ZLIB
        self._validate_compression_type()
        if self.incompatible_features & ~hdr.INCOMPAT_MASK:
            table = None
            try:
                for magic, length, off in ext.read_extensions(self.file_read, h.header_length,
                                                              ext_end):
                    if magic == ext.EXT_FEATURE_TABLE:
                        table = ext.feature_table_names(self.file_read(off, length))
            except (ValueError, BlockError):
                pass
            raise BlockError(errno.ENOTSUP, ext.unsupported_feature_message(
                table, self.incompatible_features & ~hdr.INCOMPAT_MASK))
        if self.incompatible_features & hdr.INCOMPAT_CORRUPT and not self.read_only \
                and not check_mode:
            raise BlockError(errno.EACCES, "qcow2: Image is corrupt; cannot be opened read/write")
        self.extended_l2 = bool(self.incompatible_features & hdr.INCOMPAT_EXTL2)
        self.subclusters_per_cluster = 32 if self.extended_l2 else 1
        self.subcluster_size = cs // self.subclusters_per_cluster
        self.subcluster_bits = self.subcluster_size.bit_length() - 1
        if self.subcluster_size < 512:
            raise BlockError(errno.EINVAL, f"Unsupported subcluster size: {self.subcluster_size}")
        if h.refcount_order > 6:
            raise BlockError(errno.EINVAL, "Reference count entry width too large; may not "
                                           "exceed 64 bits")
        self.refcount_order = h.refcount_order
        self.refcount_bits = 1 << h.refcount_order
        self.refcount_max = (1 << self.refcount_bits) - 1
        self.crypt_method = h.crypt_method
        self.encrypted = bool(h.crypt_method)
        self.l2_entry_size = l2e.entry_size(self.extended_l2)
        self.l2_bits = h.cluster_bits - (self.l2_entry_size.bit_length() - 1)
        self.l2_size = 1 << self.l2_bits
        self.refcount_block_bits = h.cluster_bits - (h.refcount_order - 3)
        self.refcount_block_size = 1 << self.refcount_block_bits
        self.size = (h.size // 512) * 512
        self.refcount_table_offset = h.refcount_table_offset
        self.refcount_table_size = h.refcount_table_clusters << (h.cluster_bits - 3)
        if h.refcount_table_clusters == 0 and not check_mode:
            raise BlockError(errno.EINVAL, "Image does not contain a reference count table")
        self._validate_table(h.refcount_table_offset, h.refcount_table_clusters, cs,
                             hdr.QCOW_MAX_REFTABLE_SIZE, "Reference count table")
        if not check_mode:
            self._validate_table(h.snapshots_offset, h.nb_snapshots, hdr.SNAPSHOT_HEADER_SIZE,
                                 hdr.SNAPSHOT_HEADER_SIZE * hdr.QCOW_MAX_SNAPSHOTS,
                                 "Snapshot table")
        self._validate_table(h.l1_table_offset, h.l1_size, 8, hdr.QCOW_MAX_L1_SIZE,
                             "Active L1 table")
        self.l1_size = h.l1_size
        self.l1_table_offset = h.l1_table_offset
        shift = h.cluster_bits + self.l2_bits
        # size_to_l1 rounds up in 64-bit arithmetic: sizes near 2^64 wrap to small counts
        l1_vm_state_index = ((h.size + (1 << shift) - 1) & (1 << 64) - 1) >> shift
        if l1_vm_state_index > INT_MAX:
            raise BlockError(errno.EFBIG, "Image is too big")
        if self.l1_size < l1_vm_state_index:
            raise BlockError(errno.EINVAL, "L1 table is too small")
        try:
            load_l1_table(self)
        except BlockError as e:
            raise BlockError(e.errno, f"Could not read L1 table: {e.message}")
        from emulator.qcow2 import runtime_opts
        self.runtime_options = {k: v for k, v in options.items() if k in runtime_opts.DESCS}
        self.discard_unmap = _opt_bool(options, "discard", True)
        runtime_opts.commit(self, runtime_opts.prepare(self, options, self.discard_unmap))
        if self.crypt_method not in (CRYPT_NONE, CRYPT_AES, CRYPT_LUKS):
            # QEMU prints the 32-bit field as a signed int
            method = self.crypt_method - (1 << 32) if self.crypt_method >> 31 else self.crypt_method
            raise BlockError(errno.EINVAL, f"Unsupported encryption method {method}")
        self.crypto = None
        if self.crypt_method or "encrypt.format" in options:
            from emulator.qcow2 import crypto
            crypto.check_format(self, options)
        self._crypto_open_options = options
        self.discards: list = []
        self.cache_discards = False
        self.free_cluster_index = 0
        self.free_byte_offset = 0
        self.signaled_corruption = False
        self.dead = False
        self.metadata_preallocation_checked = False
        self.metadata_preallocation = False
        load_refcount_table(self)
        self._read_extensions(h.header_length, ext_end)
        no_io = bool(options.get("x-no-io"))
        self._open_data_file(options, no_io)
        if self.crypt_method == CRYPT_AES:
            from emulator.qcow2 import crypto
            crypto.open_aes(self, options, no_io)
        if self.crypt_method == CRYPT_LUKS and self.crypto is None and not no_io:
            raise BlockError(errno.EINVAL, "Missing CRYPTO header for crypt method 2")
        self.backing_file = None
        self.image_backing_file = None
        if h.backing_file_offset:
            length = h.backing_file_size
            if length > min(1023, cs - h.backing_file_offset) or length >= 1024:
                raise BlockError(errno.EINVAL, "Backing file name too long")
            name = io.pread(self.file, h.backing_file_offset, length)
            self.image_backing_file = name.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            self.backing_file = self.image_backing_file
        # check mode leaves the table unread (the check rereads its pointer from disk);
        # a header rewrite on open then drops it, as in QEMU
        self.nb_snapshots = 0 if check_mode else h.nb_snapshots
        self.snapshots_offset = 0 if check_mode else h.snapshots_offset
        self.snapshots: list = []
        self.snapshots_size = 0
        if not check_mode and self.nb_snapshots:
            from emulator.qcow2.snapshot_table import read_snapshots
            table = read_snapshots(self, False)
            self.snapshots, self.snapshots_size = table.snapshots, table.size
        self.header = h
        update = (self.need_update_header or bool(self.autoclear_features & ~hdr.AUTOCLEAR_MASK)) \
            and not self.read_only
        if update:
            self.autoclear_features &= hdr.AUTOCLEAR_MASK
        if self.nb_bitmaps:
            from emulator.qcow2.bitmap_store import load_dirty_bitmaps
            header_updated = load_dirty_bitmaps(self)
            update = update and not header_updated
        if update:
            self.update_header()
        self.supports_zero_flags = (BDRV_REQ_MAY_UNMAP | BDRV_REQ_NO_FALLBACK) \
            if self.qcow_version >= 3 else 0
        self.pwrite_zeroes_alignment = self.subcluster_size
        if self.encrypted:
            self.request_alignment = 512  # the crypto block's sector size
        self.pdiscard_alignment = cs
        if not check_mode and not self.read_only and \
                self.incompatible_features & hdr.INCOMPAT_DIRTY:
            self._repair_dirty()
        if self.backing_file and open_backing is not None:
            self.backing = open_backing(self.backing_file, self.backing_format)

    def _create_caches(self) -> None:
        """qcow2_update_options with the options of the open: caches sized anew."""
        from emulator.qcow2 import runtime_opts
        runtime_opts.commit(self, runtime_opts.prepare(self, dict(self.runtime_options),
                                                       self.discard_unmap))

    def write_caches(self) -> None:
        """qcow2_write_caches: L2 tables, then refcount blocks unless the image is
        dirty (lazy refcounts: they are only written when it is marked clean)."""
        self.l2_cache.write()
        if not self.incompatible_features & hdr.INCOMPAT_DIRTY:
            self.refcount_cache.write()

    def flush_all_caches(self) -> None:
        """Both caches written back whatever the dirty bit (close, option update)."""
        self.l2_cache.flush()
        self.refcount_cache.flush()

    def _repair_dirty(self) -> None:
        from emulator.qcow2 import check
        result = check.check(self, 3)
        if getattr(result, "check_errors", 0):
            raise BlockError(errno.EIO, "Could not repair dirty image: Input/output error")

    def _validate_compression_type(self) -> None:
        if self.compression_type not in (hdr.COMPRESSION_ZLIB, hdr.COMPRESSION_ZSTD):
            raise BlockError(errno.ENOTSUP,
                             f"qcow2: unknown compression type: {self.compression_type}")
        has_bit = bool(self.incompatible_features & hdr.INCOMPAT_COMPRESSION)
        if self.compression_type == hdr.COMPRESSION_ZLIB and has_bit:
            raise BlockError(errno.EINVAL, "qcow2: Compression type incompatible feature bit "
                                           "must not be set")
        if self.compression_type != hdr.COMPRESSION_ZLIB and not has_bit:
            raise BlockError(errno.EINVAL, "qcow2: Compression type incompatible feature bit "
                                           "must be set")

    def _validate_table(self, offset: int, entries: int, entry_len: int, max_bytes: int,
                        name: str) -> None:
        if entries > max_bytes // entry_len:
            raise BlockError(errno.EFBIG, f"{name} too large")
        if ((1 << 63) - 1) - entries * entry_len < offset or offset & (self.cluster_size - 1):
            raise BlockError(errno.EINVAL, f"{name} offset invalid")

    def _read_extensions(self, start: int, end: int) -> None:
        """Each extension in turn, reading from the image what qcow2_read_extensions
        reads (the same host ranges, so the same pages end up in the page cache)."""
        self.backing_format = None
        self.image_backing_format = None
        self.unknown_extensions: list[tuple[int, bytes]] = []
        self.nb_bitmaps = 0
        self.bitmap_directory_offset = self.bitmap_directory_size = 0
        self.need_update_header = False
        self.image_data_file = None
        exts = ext.read_extensions(self.file_read, start, end)
        while True:
            try:
                magic, length, off = next(exts)
            except StopIteration:
                break
            except ValueError as e:
                raise BlockError(errno.EINVAL, str(e))
            if magic == ext.EXT_BACKING_FORMAT:
                if length >= 16:
                    raise BlockError(errno.EINVAL, f"ERROR: ext_backing_format: len="
                                                   f"{length} too large (>=16)")
                fmt = self.file_read(off, length).split(b"\0", 1)[0].decode("latin-1")
                self.backing_format = self.image_backing_format = fmt
            elif magic == ext.EXT_FEATURE_TABLE:
                pass
            elif magic == ext.EXT_CRYPTO_HEADER:
                self._crypto_header(length, off)
            elif magic == ext.EXT_BITMAPS:
                self._bitmaps_extension(length, off)
            elif magic == ext.EXT_DATA_FILE:
                # a C string: a NUL inside the extension ends the name
                payload = self.file_read(off, length)
                self.image_data_file = payload.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")
            else:
                # QEMU keeps unknown extensions in a list it prepends to
                self.unknown_extensions.insert(0, (magic, self.file_read(off, length)))

    def _open_data_file(self, options: dict, no_io: bool) -> None:
        """The external data file child, opened as qcow2_do_open does."""
        self.has_data_file = bool(self.incompatible_features & hdr.INCOMPAT_DATA_FILE)
        self.data_file_raw = bool(self.autoclear_features & hdr.AUTOCLEAR_DATA_FILE_RAW)
        self.data_file = self.file
        child_opts = {k[10:]: options.pop(k) for k in list(options) if k.startswith("data-file.")}
        ref = options.pop("data-file", None)
        if no_io:
            return
        if isinstance(ref, str):  # a node reference: qemu-img/qemu-io have no other nodes
            raise BlockError(errno.EINVAL, f"Cannot find device='{ref}' nor node-name='{ref}'")
        if child_opts:  # the data-file child given by options
            from emulator.block.open import _open_child
            node = _open_child(None, child_opts, self.read_only, False)
            if not self.has_data_file:
                node.drv_close()
                raise BlockError(errno.EINVAL, "'data-file' can only be set for images with an "
                                               "external data file")
            self.data_file = node
            return
        name = self.image_data_file if self.has_data_file else None
        if self.has_data_file:
            if not name:
                raise BlockError(errno.EINVAL, "'data-file' is required for this image")
            from emulator.block.file import FileNode
            from emulator.block.node import auto_node_name
            node_name = auto_node_name()  # named before the host file is opened
            node = FileNode(name, self.read_only)
            node.node_name = node_name
            node.unmap = getattr(self.file, "unmap", False)
            if getattr(self.file, "direct", False):  # the child inherits cache.direct
                from emulator.block.open import _direct_io_alignment
                node.direct = True
                node.request_alignment = _direct_io_alignment(name)
            _io().refresh_total_sectors(node)
            self.data_file = node
        elif self.data_file_raw:
            raise BlockError(errno.EINVAL, "data-file-raw requires a data file")

    def _bitmaps_extension(self, length: int, offset: int) -> None:
        """The bitmaps extension, validated as qcow2_read_extensions does; without the
        autoclear bit it is dropped (with QEMU's warning) on the next header update."""
        from emulator.report import warn_report
        if length != 24:
            raise BlockError(errno.EINVAL, "bitmaps_ext: Invalid extension length")
        if not self.autoclear_features & hdr.AUTOCLEAR_BITMAPS:
            if self.qcow_version < 3:
                warn_report("This qcow2 v2 image contains bitmaps, but they may have been "
                            "modified by a program without persistent bitmap support; so now "
                            "they must all be considered inconsistent")
            else:
                warn_report("a program lacking bitmap support modified this file, so all "
                            "bitmaps are now considered inconsistent")
            err = sys.stderr
            err.write("Some clusters may be leaked, run 'qemu-img check -r' on the image "
                      "file to fix.")
            err.flush()
            self.need_update_header = True
            return
        nb, reserved, size, offset = struct.unpack(">IIQQ", self.file_read(offset, length))
        if reserved:
            raise BlockError(errno.EINVAL, "bitmaps_ext: Reserved field is not zero")
        if nb > 65535:
            raise BlockError(errno.EINVAL, f"bitmaps_ext: Image has {nb} bitmaps, exceeding "
                                           f"the QEMU supported maximum of 65535")
        if nb == 0:
            raise BlockError(errno.EINVAL, "found bitmaps extension with zero bitmaps")
        if offset & (self.cluster_size - 1):
            raise BlockError(errno.EINVAL, "bitmaps_ext: invalid bitmap directory offset")
        if size > 1024 * 65535:
            raise BlockError(errno.EINVAL, f"bitmaps_ext: bitmap directory size ({size}) "
                                           f"exceeds the maximum supported size ({1024 * 65535})")
        self.nb_bitmaps = nb
        self.bitmap_directory_offset = offset
        self.bitmap_directory_size = size

    @property
    def bitmaps_extension(self) -> bytes | None:
        """The bitmaps extension's payload, present while the image has bitmaps."""
        if not self.nb_bitmaps:
            return None
        return struct.pack(">IIQQ", self.nb_bitmaps, 0, self.bitmap_directory_size,
                           self.bitmap_directory_offset)

    def _crypto_header(self, length: int, offset: int) -> None:
        """The LUKS header pointer extension, checked as qcow2_read_extensions does."""
        if self.crypt_method != CRYPT_LUKS:
            raise BlockError(errno.EINVAL, "CRYPTO header extension only expected with LUKS "
                                           "encryption method")
        if length != 16:
            raise BlockError(errno.EINVAL, f"CRYPTO header extension size {length}, "
                                           f"but expected size 16")
        from emulator.qcow2 import crypto
        options = self._crypto_open_options
        crypto.open_luks(self, self.file_read(offset, length), options,
                         bool(options.get("x-no-io")))

    # --------------------------------------------------------------- helpers
    def file_read(self, offset: int, length: int) -> bytes:
        return _io().pread(self.file, offset, length)

    def file_write(self, offset: int, data: bytes) -> None:
        _io().pwrite(self.file, offset, data)

    def file_write_sync(self, offset: int, data: bytes) -> None:
        """bdrv_pwrite_sync: the write, then a flush of the file (issued only under
        blkdebug, the one place where that flush can observably fail)."""
        _io().pwrite(self.file, offset, data)
        if self.blkdbg:
            _io().flush(self.file)

    def signal_corruption(self, fatal: bool, message: str) -> None:
        """qcow2_signal_corruption: report, and on a fatal event mark the image corrupt."""
        fatal = fatal and not self.read_only
        if self.signaled_corruption and (
                not fatal or self.incompatible_features & hdr.INCOMPAT_CORRUPT):
            return
        if fatal:
            text = (f"qcow2: Marking image as corrupt: {message}; further corruption "
                    f"events will be suppressed\n")
        else:
            text = (f"qcow2: Image is corrupt: {message}; further non-fatal corruption "
                    f"events will be suppressed\n")
        err = sys.stderr
        err.write(text)
        err.flush()
        if fatal:
            self.mark_corrupt()
            self.dead = True
        self.signaled_corruption = True

    def _check_alive(self) -> None:
        if self.dead:
            raise BlockError(errno.ENOMEDIUM)

    def mark_corrupt(self) -> None:
        self.incompatible_features |= hdr.INCOMPAT_CORRUPT
        self.update_header()

    def mark_dirty(self) -> None:
        if self.incompatible_features & hdr.INCOMPAT_DIRTY:
            return
        self.file_write(72, struct.pack(">Q", self.incompatible_features | hdr.INCOMPAT_DIRTY))
        _io().flush(self.file)
        self.incompatible_features |= hdr.INCOMPAT_DIRTY

    def mark_clean(self) -> None:
        if self.incompatible_features & hdr.INCOMPAT_DIRTY:
            self.incompatible_features &= ~hdr.INCOMPAT_DIRTY
            self.write_caches()
            self.update_header()

    def mark_consistent(self) -> None:
        if self.incompatible_features & hdr.INCOMPAT_CORRUPT:
            self.write_caches()
            self.incompatible_features &= ~hdr.INCOMPAT_CORRUPT
            self.update_header()

    def update_header(self) -> None:
        """qcow2_update_header: rewrite the whole first cluster."""
        cs = self.cluster_size
        h = hdr.Header(
            version=self.qcow_version, cluster_bits=self.cluster_bits, size=self.size,
            crypt_method=self.crypt_method, l1_size=self.l1_size,
            l1_table_offset=self.l1_table_offset,
            refcount_table_offset=self.refcount_table_offset,
            refcount_table_clusters=self.refcount_table_size >> (self.cluster_bits - 3),
            nb_snapshots=self.nb_snapshots, snapshots_offset=self.snapshots_offset,
            incompatible_features=self.incompatible_features,
            compatible_features=self.compatible_features,
            autoclear_features=self.autoclear_features, refcount_order=self.refcount_order,
            header_length=hdr.HEADER_SIZE + len(self.unknown_header_fields),
            compression_type=self.compression_type)
        self._validate_compression_type()
        body = bytearray(self.unknown_header_fields)
        if self.image_backing_format:
            body += ext.ext_record(ext.EXT_BACKING_FORMAT, self.image_backing_format.encode())
        if self.image_data_file and self.incompatible_features & hdr.INCOMPAT_DATA_FILE:
            body += ext.ext_record(ext.EXT_DATA_FILE, self.image_data_file.encode())
        if getattr(self, "crypto_header_offset", 0):
            from emulator.qcow2 import crypto
            body += ext.ext_record(ext.EXT_CRYPTO_HEADER, crypto.extension(self))
        if self.qcow_version >= 3 and cs > 4096:
            body += ext.ext_record(ext.EXT_FEATURE_TABLE, ext.feature_table_payload())
        if self.bitmaps_extension is not None:
            body += ext.ext_record(ext.EXT_BITMAPS, self.bitmaps_extension)
        for magic, payload in self.unknown_extensions:
            body += ext.ext_record(magic, payload)
        body += ext.ext_record(ext.EXT_END, b"")
        fixed_len = len(h.pack())
        if self.image_backing_file:
            name = self.image_backing_file.encode("utf-8", "surrogateescape")
            h.backing_file_offset = fixed_len + len(body)
            h.backing_file_size = len(name)
            body += name
        buf = h.pack() + bytes(body)
        if len(buf) > cs:
            raise BlockError(errno.ENOSPC)
        self.file_write(0, buf + b"\0" * (cs - len(buf)))

    def make_empty(self) -> None:
        """bdrv_make_empty (qemu-img commit empties the committed image)."""
        self._check_alive()
        from emulator.qcow2.empty import make_empty
        make_empty(self)

    def change_backing_file(self, backing_file: str | None, backing_fmt: str | None) -> None:
        """qcow2_change_backing_file: store new backing file name/format in the header.

        A raw external data file must stay complete alone: no backing file for it."""
        if backing_file is not None and self.data_file_raw:
            raise BlockError(errno.EINVAL)
        if backing_file and len(backing_file.encode()) > 1023:
            raise BlockError(errno.EINVAL)
        self.backing_file = self.image_backing_file = backing_file or None
        self.backing_format = self.image_backing_format = backing_fmt or None
        self.update_header()

    # ------------------------------------------------------------- callbacks
    def drv_getlength(self) -> int:
        return self.size

    def drv_preadv(self, offset: int, length: int) -> bytes:
        """qcow2_co_preadv_part: chunk by chunk; with several chunks to read, their
        reads run as parallel tasks where that can be seen (a blkdebug node, or
        requests in flight): from the main thread the read restarts in a coroutine."""
        self._check_alive()
        from emulator.block import coroutine
        from emulator.qcow2.cluster import get_host_offset
        from emulator.qcow2.lock import lock, unlock
        limit = INT_MAX if self.crypto is None else MAX_CRYPT_CLUSTERS * self.cluster_size
        parts: list = []
        pool = None
        error = None
        start, total = offset, length
        while length and (pool is None or pool.status is None):
            lock(self)
            try:
                cur, host, t = get_host_offset(self, offset, min(length, limit))
            except BlockError as e:
                error = e
                break
            finally:
                unlock(self)
            if t in (ST.ZERO_PLAIN, ST.ZERO_ALLOC) or (
                    t in (ST.UNALLOCATED_PLAIN, ST.UNALLOCATED_ALLOC) and self.backing is None):
                parts.append(bytes(cur))
            else:
                if pool is None and cur != length and (self.blkdbg or coroutine._current):
                    if coroutine._current is None:
                        from emulator.block import aio_context
                        data = aio_context.run(lambda: self.drv_preadv(start, total))
                        return data if isinstance(data, bytes) else bytes(total)
                    from emulator.block.aio_task import AioTaskPool
                    from emulator.qcow2.pwritev import MAX_WORKERS
                    pool = AioTaskPool(MAX_WORKERS)
                parts.append(b"")
                task = (lambda i=len(parts) - 1, t=t, h=host, o=offset, n=cur:
                        self._read_task(parts, i, t, h, o, n))
                if pool is None:
                    error = task()
                    if error is not None:
                        break
                else:
                    pool.start(task)
            length -= cur
            offset += cur
        if pool is not None:
            pool.wait_all()
            error = error or pool.status
        if error is not None:
            raise error
        return b"".join(parts)

    def _read_task(self, parts: list, i: int, t, host: int, offset: int,
                   length: int) -> BlockError | None:
        """qcow2_co_preadv_task: one chunk's data into ``parts[i]``; None or the error."""
        io = _io()
        try:
            if t in (ST.UNALLOCATED_PLAIN, ST.UNALLOCATED_ALLOC):
                if self.blkdbg:
                    self.blkdbg("read_backing_aio")
                parts[i] = io.pread(self.backing, offset, length)
            elif t == ST.COMPRESSED:
                parts[i] = self._read_compressed(host, offset, length)
            else:
                if self.blkdbg:
                    self.blkdbg("read_aio")
                data = io.pread(self.data_file, host, length)
                if self.crypto is not None:
                    from emulator.qcow2 import crypto
                    data = crypto.decrypt(self, host, offset, data)
                parts[i] = data
        except BlockError as e:
            return e
        return None

    def _read_compressed(self, entry: int, offset: int, length: int) -> bytes:
        from emulator.qcow2.compress import decompress
        coff, csize = l2e.compressed_host_range(entry, self.cluster_bits)
        if self.blkdbg:
            self.blkdbg("read_compressed")
        data = _io().pread(self.file, coff, csize)
        from emulator.qcow2.threads import co_process
        try:
            plain = co_process(self, lambda: decompress(self.compression_type, data,
                                                        self.cluster_size))
        except OSError:
            raise BlockError(errno.EIO)
        oic = offset & (self.cluster_size - 1)
        return plain[oic:oic + length]

    def drv_pwritev(self, offset: int, data: bytes, flags: int = 0) -> None:
        self._check_alive()
        from emulator.qcow2.pwritev import pwritev
        pwritev(self, offset, data)

    def _handle_alloc_space(self, metas: list) -> None:
        from emulator.qcow2.overlap import pre_write_overlap_check
        io = _io()
        if not self.data_file.supports_zero_flags & BDRV_REQ_NO_FALLBACK:
            return
        if self.encrypted:
            return
        for m in metas:
            if not m.cow_start.nb_bytes and not m.cow_end.nb_bytes:
                continue
            if not (self._is_zero_fast(m.offset + m.cow_start.offset, m.cow_start.nb_bytes)
                    and self._is_zero_fast(m.offset + m.cow_end.offset, m.cow_end.nb_bytes)):
                continue
            start = m.alloc_offset + m.cow_start.offset
            nb = m.cow_end.offset + m.cow_end.nb_bytes - m.cow_start.offset
            if not self.has_data_file:
                pre_write_overlap_check(self, 0, start, nb)
            if self.blkdbg:
                self.blkdbg("cluster_alloc_space")
            try:
                io.pwrite_zeroes(self.data_file, start, nb, BDRV_REQ_NO_FALLBACK)
            except BlockError as e:
                if e.errno not in (errno.ENOTSUP, errno.EAGAIN):
                    raise
                continue
            m.skip_cow = True

    def _is_zero_fast(self, offset: int, nbytes: int) -> bool:
        """bdrv_co_is_zero_fast: one block-status query above the whole chain."""
        if not nbytes:
            return True
        st, _ = _io().block_status_above(self, None, offset, nbytes, want_zero=False)
        return st.pnum == nbytes and bool(st.flags & BDRV_BLOCK_ZERO)

    @staticmethod
    def _merge_cow(offset: int, nbytes: int, data: bytes, metas: list) -> bool:
        for m in metas:
            if m.cow_start.nb_bytes == 0 and m.cow_end.nb_bytes == 0:
                continue
            if m.skip_cow:
                continue
            if m.offset + m.cow_start.offset + m.cow_start.nb_bytes != offset:
                continue
            if m.offset + m.cow_end.offset != offset + nbytes:
                continue
            m.data = data
            return True
        return False

    def _is_zero(self, offset: int, nbytes: int) -> bool:
        """qcow2's is_zero(): the range reads as zeroes through the whole chain."""
        if offset + nbytes > self.size:
            nbytes = self.size - offset
        if nbytes <= 0:
            return True
        io = _io()
        while True:
            st, _ = io.block_status_above(self, None, offset, nbytes, want_zero=True)
            offset += st.pnum
            nbytes -= st.pnum
            if not (st.flags & BDRV_BLOCK_ZERO and st.pnum and nbytes):
                break
        return bool(st.flags & BDRV_BLOCK_ZERO) and nbytes == 0

    def drv_pwrite_zeroes(self, offset: int, length: int, flags: int) -> None:
        self._check_alive()
        from emulator.qcow2.cluster import get_host_offset, subcluster_zeroize
        sub = self.subcluster_size
        head = offset & (sub - 1)
        tail = (-(offset + length)) % sub
        if offset + length == self.size:
            tail = 0
        if head or tail:
            if not (self._is_zero(offset - head, head) and self._is_zero(offset + length, tail)):
                raise BlockError(errno.ENOTSUP)
        from emulator.qcow2.lock import lock, unlock
        lock(self)
        try:
            if head or tail:
                offset -= head
                length = sub
                _, _, t = get_host_offset(self, offset, sub)
                if t not in (ST.UNALLOCATED_PLAIN, ST.UNALLOCATED_ALLOC, ST.ZERO_PLAIN,
                             ST.ZERO_ALLOC):
                    raise BlockError(errno.ENOTSUP)
            subcluster_zeroize(self, offset, length, flags)
        finally:
            unlock(self)

    def drv_pdiscard(self, offset: int, length: int) -> None:
        self._check_alive()
        from emulator.qcow2.cluster import cluster_discard
        from emulator.qcow2.refcount import DISCARD_REQUEST
        if self.qcow_version < 3 and self.backing is not None:
            raise BlockError(errno.ENOTSUP)
        cs = self.cluster_size
        if (offset | length) & (cs - 1):
            if offset & (cs - 1) or offset + length != self.size:
                raise BlockError(errno.ENOTSUP)
        from emulator.qcow2.lock import lock, unlock
        lock(self)
        try:
            cluster_discard(self, offset, length, DISCARD_REQUEST, False)
        finally:
            unlock(self)

    def drv_pwritev_compressed(self, offset: int, data: bytes) -> None:
        self._check_alive()
        io = _io()
        cs = self.cluster_size
        if self.has_data_file:
            raise BlockError(errno.ENOTSUP)
        if not data:
            io.truncate(self.file, io.getlength(self.file), exact=False, prealloc="off")
            return
        if offset & (cs - 1):
            raise BlockError(errno.EINVAL)
        if len(data) & (cs - 1) and offset + len(data) != self.size:
            raise BlockError(errno.EINVAL)
        for pos in range(0, len(data), cs):
            self._write_compressed_cluster(offset + pos, data[pos:pos + cs])

    def _write_compressed_cluster(self, offset: int, chunk: bytes) -> None:
        from emulator.qcow2.cluster import alloc_compressed_cluster_offset
        from emulator.qcow2.compress import compress
        cs = self.cluster_size
        from emulator.qcow2.lock import lock, unlock
        from emulator.qcow2.overlap import pre_write_overlap_check
        from emulator.qcow2.threads import co_process
        buf = chunk + bytes(cs - len(chunk))
        try:
            out = co_process(self, lambda: compress(self.compression_type, buf, cs - 1))
        except OSError:
            raise BlockError(errno.EINVAL)
        if out is None:
            self.drv_pwritev(offset, chunk, 0)
            return
        lock(self)
        try:
            host = alloc_compressed_cluster_offset(self, offset, len(out))
            pre_write_overlap_check(self, 0, host, len(out))
        finally:
            unlock(self)
        if self.blkdbg:
            self.blkdbg("write_compressed")
        _io().pwrite(self.file, host, out)

    def _vm_state_offset(self, pos: int, length: int) -> int:
        """qcow2_check_vmstate_request: the guest offset of VM state byte ``pos``."""
        shift = self.cluster_bits + self.l2_bits
        offset = (-(-self.size >> shift) << shift) + pos
        _io()._check_request(offset, length)
        return offset

    def drv_save_vmstate(self, pos: int, data: bytes) -> None:
        """qcow2_save_vmstate: a write straight into the driver past the disk."""
        offset = self._vm_state_offset(pos, len(data))
        if self.blkdbg:
            self.blkdbg("vmstate_save")
        self._check_alive()
        self.drv_pwritev(offset, data, 0)

    def drv_load_vmstate(self, pos: int, length: int) -> bytes:
        """qcow2_load_vmstate."""
        offset = self._vm_state_offset(pos, length)
        if self.blkdbg:
            self.blkdbg("vmstate_load")
        self._check_alive()
        return self.drv_preadv(offset, length)

    def drv_block_status(self, want_zero: bool, offset: int, length: int) -> BlockStatus:
        self._check_alive()
        from emulator.qcow2.cluster import get_host_offset
        from emulator.qcow2.lock import lock, unlock
        lock(self)
        try:
            if not self.metadata_preallocation_checked:
                self.metadata_preallocation = self._detect_metadata_preallocation()
                self.metadata_preallocation_checked = True
            cur, host, t = get_host_offset(self, offset, min(INT_MAX, length))
        finally:
            unlock(self)
        status = 0
        mapped = None
        node = None
        if t in (ST.NORMAL, ST.ZERO_ALLOC, ST.UNALLOCATED_ALLOC) and self.crypto is None:
            mapped, node = host, self.data_file
            status |= BDRV_BLOCK_OFFSET_VALID
        if t in (ST.ZERO_PLAIN, ST.ZERO_ALLOC):
            status |= BDRV_BLOCK_ZERO
        elif t not in (ST.UNALLOCATED_PLAIN, ST.UNALLOCATED_ALLOC):
            status |= BDRV_BLOCK_DATA
        if self.metadata_preallocation and status & BDRV_BLOCK_DATA and \
                status & BDRV_BLOCK_OFFSET_VALID:
            status |= BDRV_BLOCK_RECURSE
        return BlockStatus(status, cur, mapped, node)

    def _detect_metadata_preallocation(self) -> bool:
        import os
        from emulator.qcow2.refcount import get_refcount
        if self.blkdbg:  # blkdebug cannot tell its allocated size: QEMU gives up (ENOTSUP)
            return False
        io = _io()
        file_length = io.getlength(self.file)
        fd = getattr(self.file, "fd", None)
        real = os.fstat(fd).st_blocks * 512 if fd is not None else file_length
        real_clusters = real // self.cluster_size
        threshold = max(real_clusters * 10 // 9, real_clusters + 2)
        end = -(-file_length // self.cluster_size)
        count = 0
        i = 0
        try:
            while i < end and count < threshold:
                count += 1 if get_refcount(self, i) else 0
                i += 1
        except BlockError:  # block status goes on without the answer, as in QEMU
            return False
        return count >= threshold

    def drv_truncate(self, size: int, exact: bool, prealloc: str, flags: int = 0) -> None:
        self._check_alive()
        from emulator.qcow2.lock import lock, unlock
        from emulator.qcow2.truncate import truncate
        lock(self)
        try:
            truncate(self, size, exact, prealloc, flags)
        finally:
            unlock(self)

    def drv_flush(self) -> None:
        if not self.read_only and not self.dead:
            from emulator.qcow2.lock import lock, unlock
            lock(self)
            try:
                self.write_caches()
            finally:
                unlock(self)

    def drv_close(self) -> None:
        """qcow2_close: write the caches back, clear the dirty bit (not after a fatal
        corruption event: QEMU then has no driver left to close)."""
        if not self.read_only and not self.dead:
            import os
            from emulator.report import error_report
            failed = False
            if getattr(self, "dirty_bitmaps", None) or self.nb_bitmaps:
                failed = not self._store_bitmaps()
            for cache, what in ((self.l2_cache, "L2 table"),
                                (self.refcount_cache, "refcount block")):
                try:
                    cache.flush()
                except BlockError as e:
                    failed = True
                    error_report(f"Failed to flush the {what} cache: {os.strerror(e.errno)}")
            if not failed:
                self.mark_clean()
        if self.data_file is not None and self.data_file is not self.file:
            self.data_file.drv_close()

    def _store_bitmaps(self) -> bool:
        """qcow2_inactivate's bitmap part: False (after QEMU's message) on failure."""
        from emulator.qcow2.bitmap_dirty import BitmapError
        from emulator.qcow2.bitmap_store import node_name, store_dirty_bitmaps
        try:
            store_dirty_bitmaps(self, True)
        except BitmapError as e:
            from emulator.cli.errors import report_err
            report_err(f"Lost persistent bitmaps during inactivation of node "
                       f"'{node_name(self)}': {e.message}", e.hint)
            return False
        return True

    # ----------------------------------------------------------------- info
    def get_specific_info(self) -> dict:
        ctype = hdr.COMPRESSION_NAMES.get(self.compression_type, str(self.compression_type))
        if self.qcow_version == 2:
            info = {"compat": "0.10", "compression-type": ctype,
                    "refcount-bits": self.refcount_bits}
            if self.crypto is not None:
                from emulator.qcow2 import crypto
                info["encrypt"] = crypto.info(self)
            return info
        info = {"compat": "1.1", "compression-type": ctype,
                "lazy-refcounts": bool(self.compatible_features & hdr.COMPAT_LAZY_REFCOUNTS)}
        if self.nb_bitmaps:
            from emulator.qcow2.bitmap_store import info_list
            info["bitmaps"] = info_list(self)
        info["refcount-bits"] = self.refcount_bits
        if self.image_data_file:
            info["data-file"] = self.image_data_file
        if self.has_data_file:
            info["data-file-raw"] = self.data_file_raw
        if self.crypto is not None:
            from emulator.qcow2 import crypto
            info["encrypt"] = crypto.info(self)
        info["corrupt"] = bool(self.incompatible_features & hdr.INCOMPAT_CORRUPT)
        info["extended-l2"] = self.extended_l2
        return info
