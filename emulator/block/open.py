"""Opening images: the node tree of QEMU's bdrv_open (block.c).

``open_image`` opens the file node, probes the format when none is given
(qcow2 or qcow v1 by their magic, otherwise raw, with raw-format's warning on
stderr for a writable probed image), opens the format node and, through the
callback it hands to the qcow2 driver, the backing chain (read-only, backing
names resolved against the image's directory). On the way it applies the
generic options (discard, detect-zeroes, force-share, copy-on-read,
node-name), opens children given by options ("file.*" as a host file, a
protocol such as blkdebug or null-co, or another format; "backing.*",
"backing": null), rejects unknown ones like bdrv_open_inherit, records each
node's own options (``own_options``, for reopen and its refreshed filename)
and takes the image locks (emulator/block/locking.py). The returned root node carries a
:class:`~emulator.block.backend.BlockBackend` in ``node.blk``.
``reopen_read_write(node)`` makes a read-only node writable (commit);
``close_image(node)`` flushes and closes the tree.

Errors are ``BlockError`` whose message is QEMU's text, e.g.
"Could not open 'x': No such file or directory" or
"Could not open backing file: Could not open 'b': No such file or directory".
"""
from __future__ import annotations

import errno
import os
import sys

from emulator.block import io
from emulator.block.backend import BlockBackend
from emulator.block.node import BlockError, BlockNode
from emulator.block.options import subdict

FORMATS = ("qcow2", "raw", "qcow", "luks", "compress")
#: protocol drivers opened from options alone (the file protocol aside)
_PROTOCOLS = ("null-co", "null-aio", "blkdebug")
#: every driver name QEMU 7.2 (Debian) knows
QEMU_DRIVER_NAMES = frozenset((
    "blkdebug blklogwrites blkreplay blkverify bochs cloop compress copy-before-write "
    "copy-on-read dmg file ftp ftps gluster host_cdrom host_device http https io_uring iscsi "
    "luks nbd nfs null-aio null-co nvme nvme-io_uring parallels preallocate qcow qcow2 qed "
    "quorum raw rbd replication snapshot-access ssh throttle vdi vhdx "
    "virtio-blk-vfio-pci virtio-blk-vhost-user virtio-blk-vhost-vdpa vmdk vpc vvfat").split())

_RAW_PROBE_WARNING = (
    "WARNING: Image format was not specified for '{}' and probing guessed raw.\n"
    "         Automatically detecting the format is dangerous for raw images, "
    "write operations on block 0 will be restricted.\n"
    "         Specify the 'raw' format explicitly to remove the restrictions.\n")


def backing_full_path(image: str, backing: str) -> str:
    """Backing file name as QEMU resolves it: relative names are relative to the image."""
    if not backing or os.path.isabs(backing) or "/" not in image:
        return backing
    return image[:image.rindex("/") + 1] + backing


#: bdrv_runtime_opts (block.c), accepted by every node
_COMMON_OPTS = {"node-name", "driver", "cache.direct", "cache.no-flush", "read-only",
                "auto-read-only", "detect-zeroes", "discard", "force-share"}
#: open flags the tools set through the options (x-check is BDRV_O_CHECK, x-no-io
#: BDRV_O_NO_IO, x-native-aio BDRV_O_NATIVE_AIO); their value is OPEN_FLAG, so a
#: user's option of that name is refused
_FLAG_OPTS = {"x-check", "x-no-io", "x-native-aio"}
OPEN_FLAG = object()
#: runtime options of the drivers (qcow2_runtime_opts, raw_runtime_opts, file-posix's)
_DRIVER_OPTS = {
    "qcow2": {"lazy-refcounts", "pass-discard-request", "pass-discard-snapshot",
              "pass-discard-other", "overlap-check", "cache-size", "l2-cache-size",
              "l2-cache-entry-size", "refcount-cache-size", "cache-clean-interval",
              "data-file"},
    "raw": {"offset", "size"},
    "luks": {"key-secret"},
    "file": {"filename", "aio", "aio-max-batch", "locking", "pr-manager", "drop-cache",
             "x-check-cache-dropped"},
    "compress": set(), "null-co": set(), "null-aio": set(), "blkdebug": set(),
}
_DRIVER_PREFIXES = {"qcow2": ("encrypt.",), "raw": (), "file": (), "luks": ()}


def _reject_unknown(options: dict, driver: str) -> None:
    """The error bdrv_open_inherit gives for options no one consumed."""
    from emulator.block.options import unsupported
    left = {}
    for key, value in options.items():
        if key in _FLAG_OPTS and value is OPEN_FLAG:
            continue
        if key.startswith(_DRIVER_PREFIXES.get(driver, ())):
            continue
        if key in _COMMON_OPTS or key in _DRIVER_OPTS[driver]:
            continue
        left[key] = value
    if left:
        raise unsupported(left, driver, driver == "file" or driver in _PROTOCOLS)


def _no_flush(options: dict) -> bool:
    """BDRV_O_NO_FLUSH (cache.no-flush, -t unsafe): flushes stop before the disk."""
    return options.get("cache.no-flush") in (True, "on")


def _generic_checks(options: dict, read_only: bool, force_share: bool) -> None:
    """bdrv_open_common's first checks: the bool options' values, then force-share."""
    from emulator.block.options import BOOL, absorb
    absorb(dict(options), {"read-only": BOOL, "auto-read-only": BOOL, "cache.direct": BOOL,
                           "cache.no-flush": BOOL, "force-share": BOOL})
    if force_share and not read_only:
        raise BlockError(errno.EINVAL, "force-share=on can only be used with read-only images")


def _common_options(options: dict, unmap: bool, read_only: bool,
                    force_share: bool, copy_on_read: bool = False) -> tuple[bool, str, str]:
    """bdrv_open_common's checks of 'force-share', copy-on-read, 'discard', 'detect-zeroes',
    then the node's name.

    Returns (BDRV_O_UNMAP, detect_zeroes, node name); the effective 'discard'
    stays in ``options`` for the driver to see.
    """
    _generic_checks(options, read_only, force_share)
    if copy_on_read and read_only:
        raise BlockError(errno.EINVAL, "Can't use copy-on-read on read-only device")
    from emulator.block.options import opt_text
    value = opt_text(options.get("discard")) or ("unmap" if unmap else "ignore")
    options["discard"] = value
    if value in ("unmap", "on"):
        unmap = True
    elif value in ("ignore", "off"):
        unmap = False
    else:
        raise BlockError(errno.EINVAL, "Invalid discard option")
    detect = opt_text(options.get("detect-zeroes")) or "off"
    if detect not in ("off", "on", "unmap"):
        raise BlockError(errno.EINVAL, f"invalid parameter value: {detect}")
    if detect == "unmap" and not unmap:
        raise BlockError(errno.EINVAL, "setting detect-zeroes to unmap is not allowed "
                                       "without setting discard operation to unmap")
    return unmap, detect, _assign_node_name(opt_text(options.get("node-name")))


#: node names given to the nodes of the tree being opened (QEMU's graph of named nodes)
_node_names: set[str] = set()


def _assign_node_name(name: str | None) -> str:
    """bdrv_assign_node_name: the node-name option after its checks, or an automatic name."""
    if name is None:
        from emulator.block.node import auto_node_name
        return auto_node_name()
    if not name[:1].isascii() or not name[:1].isalpha() \
            or not all(c.isascii() and (c.isalnum() or c in "-._") for c in name[1:]):
        raise BlockError(errno.EINVAL, f"Invalid node-name: '{name}'")
    if len(name) >= 32:
        raise BlockError(errno.EINVAL, "Node name too long")
    if name in _node_names:
        raise BlockError(errno.EINVAL, f"Duplicate nodes with node-name='{name}'")
    _node_names.add(name)
    return name


def probe_format(file: BlockNode, filename: str) -> str:
    """find_image_format: 'raw' for an empty file, else the best probe score."""
    if io.getlength(file) == 0:
        return "raw"
    from emulator.block.raw import probe_format as probe_buf
    return probe_buf(io.pread(file, 0, 512), filename)


def open_image(filename: str, fmt: str | None = None, *, read_only: bool = False,
               options: dict | None = None, no_backing: bool = False,
               force_share: bool = False, unmap: bool = False,
               copy_on_read: bool = False) -> BlockNode:
    """Open ``filename`` as a root node with a BlockBackend (qemu-img/qemu-io's blk_new_open).

    ``unmap`` is QEMU's BDRV_O_UNMAP (qemu-io always sets it; qemu-img only for
    commit and sparse convert); ``options['discard']`` overrides it.
    ``force_share`` (or ``options['force-share']``) shares all permissions,
    so image locks held by other users do not conflict. ``copy_on_read`` is
    BDRV_O_COPY_ON_READ (qemu-io -C).
    """
    options = dict(options or {})
    _node_names.clear()  # one tree is open at a time: names of closed trees are free
    share = options.pop("force-share", None)
    force_share = force_share or share in (True, "on")
    node = _open_node(filename, fmt, read_only=read_only, options=options,
                      no_backing=no_backing, unmap=unmap, force_share=force_share,
                      copy_on_read=copy_on_read)
    node.blk = BlockBackend(node)
    return node


def _refresh_on_open(node: BlockNode) -> None:
    """bdrv_open_driver's length refresh after the driver opened (e.g. EFBIG for a
    qcow2 virtual size past the block layer's maximum)."""
    try:
        io.refresh_total_sectors(node)
    except BlockError as e:
        raise BlockError(e.errno, "Could not refresh total sector count: "
                                  f"{os.strerror(e.errno)}") from None


def _direct_io_alignment(filename: str) -> int:
    """raw_probe_alignment for O_DIRECT: the smallest read size the host file accepts."""
    import mmap
    try:
        fd = os.open(filename, os.O_RDONLY | os.O_DIRECT)
    except OSError as e:
        raise BlockError(e.errno, f"Could not open '{filename}': {os.strerror(e.errno)}")
    buf = mmap.mmap(-1, 4096)
    try:
        for align in (1, 512, 1024, 2048, 4096):
            try:
                os.preadv(fd, [memoryview(buf)[:align]], 0)
            except OSError as e:
                if e.errno == errno.EINVAL:
                    continue
            return align if align != 1 else 4096
    finally:
        buf.close()
        os.close(fd)
    raise BlockError(errno.EINVAL, "Could not find working O_DIRECT alignment",
                     "Try cache.direct=off\n")


def _open_file(filename: str, read_only: bool, options: dict,
               force_share: bool) -> BlockNode:
    """The protocol node; children default to discard=unmap (bdrv_inherited_options).

    With cache.direct=on requests are aligned to what O_DIRECT accepts.
    """
    from emulator.block.file import FileNode
    given = dict(options)
    options = _working_copy(options)
    options.pop("filename", None)
    flags = _common_options(options, True, read_only, force_share)
    native = options.pop("x-native-aio", None) is OPEN_FLAG
    # raw_open_common parses its options before it opens the file
    locking, aio = _file_runtime_options(options, "native" if native else "threads")
    file = FileNode(filename, read_only)
    file.own_options = _own_options("file", {**given, "filename": filename})
    try:
        file.unmap, file.detect_zeroes, file.node_name = flags
        if options.get("cache.direct") in (True, "on"):
            file.direct = True
            file.request_alignment = _direct_io_alignment(filename)
        file.use_lock = locking != "off"
        if aio == "native" and options.get("cache.direct") not in (True, "on"):
            raise BlockError(errno.EINVAL, "aio=native was specified, but it requires "
                                           "cache.direct=on, which was not specified.")
        _reject_unknown(options, "file")
        _refresh_on_open(file)
    except BlockError:
        file.drv_close()
        raise
    return file


def _file_runtime_options(options: dict, aio_default: str) -> tuple[str, str]:
    """file-posix's raw_runtime_opts: validated and consumed; (locking, aio) modes."""
    from emulator.block.options import BOOL, NUMBER, STRING, absorb
    o = absorb(options, {"filename": STRING, "aio": STRING, "aio-max-batch": NUMBER,
                         "locking": STRING, "pr-manager": STRING, "drop-cache": BOOL,
                         "x-check-cache-dropped": BOOL})
    for key, allowed, default in (("aio", ("threads", "native", "io_uring"), aio_default),
                                  ("locking", ("off", "on", "auto"), "auto")):
        value = o.get(key, default)
        if value not in allowed:
            raise BlockError(errno.EINVAL, f"invalid parameter value: {value}")
    return str(o.get("locking", "auto")), str(o.get("aio", aio_default))


def _lock(file: BlockNode, held: int, unshared: int, read_only: bool,
          force_share: bool) -> None:
    """Take the image locks for a user of ``file`` (write permissions only if writable)."""
    from emulator.block import locking
    if getattr(file, "fd", None) is None:  # not a host file: its own child holds the locks
        return
    unshared = 0 if force_share else unshared
    file.lock_full = (held, unshared)  # what the user holds once writable
    if read_only:
        held &= ~(locking.PERM_WRITE | locking.PERM_RESIZE)
    locking.apply(file, held, unshared)


def _in_chain(file: BlockNode, chain: list[BlockNode]) -> bool:
    """True if ``file`` is an image already opened further up this backing chain."""
    if getattr(file, "fd", None) is None:
        return False
    st = os.fstat(file.fd)
    return any((o.st_dev, o.st_ino) == (st.st_dev, st.st_ino)
               for o in (os.fstat(member.fd) for member in chain
                         if getattr(member, "fd", None) is not None))


def _backing_option(options: dict, no_backing: bool) -> tuple[str | None, bool]:
    """The "backing" option: (node reference or None, BDRV_O_NO_BACKING).

    null, or the deprecated empty string, opens no backing file.
    """
    if "backing" not in options:
        return None, no_backing
    value = options["backing"]
    if value == "" or value is None:
        if value == "":
            from emulator.report import warn_report
            warn_report('Use of "backing": "" is deprecated; use "backing": null instead')
        del options["backing"]
        return None, True
    if isinstance(value, str):
        del options["backing"]
        return value, no_backing
    return None, no_backing


def _open_format_child(filename: str | None, fmt: str | None, options: dict, read_only: bool,
                       force_share: bool, chain: list[BlockNode] | None) -> BlockNode:
    """The "file" child of a format node (bdrv_open_child_bs): from the file name or
    from the file.* options."""
    file_opts = subdict(options, "file.")
    if filename is None:
        ref = options.get("file")
        if isinstance(ref, str):
            raise BlockError(errno.EINVAL, f"Cannot find device='{ref}' nor node-name='{ref}'")
        if not file_opts:
            if fmt is None:
                raise BlockError(errno.EINVAL, "Must specify either driver or file")
            raise BlockError(errno.EINVAL, 'A block device must be specified for "file"')
    inherited_ro = "read-only" in options and "read-only" not in file_opts
    for key in ("cache.direct", "cache.no-flush", "read-only", "auto-read-only"):
        if key in options:  # inherited by the file child unless set there
            file_opts.setdefault(key, options[key])
    if options.get("x-native-aio") is OPEN_FLAG:
        file_opts["x-native-aio"] = OPEN_FLAG
    file = _open_child(filename, file_opts, read_only, force_share, chain)
    if inherited_ro:  # not the child's own option: a reopen lets it follow the parent
        file.explicit_ro = None
    return file


def _open_child(filename: str | None, opts: dict, read_only: bool, force_share: bool,
                chain: list[BlockNode] | None = None) -> BlockNode:
    """A child node given by name and options: a host file unless a driver is named."""
    driver = opts.get("driver")
    driver = driver if isinstance(driver, str) else None
    if driver in (None, "file"):
        opts.pop("driver", None)
        if filename is not None and "filename" in opts:
            raise BlockError(errno.EINVAL,
                             "Can't specify 'file' and 'filename' options at the same time")
        if filename is None:
            filename = opts.get("filename")
            if not isinstance(filename, str) or not filename:
                if driver is None:
                    raise BlockError(errno.EINVAL, "Must specify either driver or file")
                raise BlockError(errno.EINVAL, "The 'file' block driver requires a file name")
        return _open_file(filename, read_only, opts, force_share)
    del opts["driver"]
    if driver not in QEMU_DRIVER_NAMES:
        raise BlockError(errno.EINVAL, f"Unknown driver '{driver}'")
    return _open_node(filename, driver, read_only=read_only, options=opts, no_backing=False,
                      unmap=True, force_share=force_share, chain=chain)


def _working_copy(options: dict) -> dict:
    """bdrv_open_inherit keeps the options as given in bs->options and works on a
    qdict_clone_shallow of them: inserted in QDict order, so entries sharing a hash
    bucket come out reversed (which orders the children's options and the first
    unknown option reported)."""
    from emulator.cli.qobject import qdict_items
    return dict(qdict_items(options))


def _own_options(driver: str, given: dict) -> dict:
    """A node's own options (bs->options: driver first, children's and flags left out),
    kept for its refreshed filename (emulator/block/filename.py)."""
    own = {"driver": driver}
    for key, value in given.items():
        if key.startswith(("file.", "backing.", "image.", "data-file.", "x-")) \
                or key in ("file", "backing", "image", "data-file", "driver"):
            continue
        own[key] = value
    return own


def _open_protocol(fmt: str, filename: str | None, options: dict, read_only: bool,
                   force_share: bool, chain: list[BlockNode] | None,
                   copy_on_read: bool = False) -> BlockNode:
    """A null-co/null-aio node (whose only file name is 'null-co://'), or blkdebug
    over its image child."""
    given = dict(options)
    options = _working_copy(options)
    if fmt != "blkdebug" and filename is not None and filename != fmt + "://":
        raise BlockError(errno.EINVAL, "The only allowed filename for this driver is "
                                       f"'{fmt}://'")
    flags = _common_options(options, True, read_only, force_share, copy_on_read)
    if fmt == "blkdebug":
        from emulator.block.blkdebug_opts import open_blkdebug
        node = open_blkdebug(options, lambda name, opts: _open_child(
            name, opts, read_only, force_share, chain))
    else:
        from emulator.block.null import NullNode
        node = NullNode(fmt, options)
    node.own_options = _own_options(fmt, given)
    try:
        node.read_only = read_only
        node.unmap, node.detect_zeroes, node.node_name = flags
        _reject_unknown(options, fmt)
        _refresh_on_open(node)
    except BlockError:
        close_image(node)
        raise
    node.probed = False
    node.copy_on_read = copy_on_read
    node.no_flush = _no_flush(given)
    return node


def _open_node(filename: str | None, fmt: str | None, *, read_only: bool, options: dict,
               no_backing: bool, unmap: bool, force_share: bool = False,
               chain: list[BlockNode] | None = None,
               copy_on_read: bool = False) -> BlockNode:
    from emulator.block.locking import PERM_CONSISTENT_READ as CR, PERM_RESIZE as RS, \
        PERM_WRITE as W
    if fmt in _PROTOCOLS:
        return _open_protocol(fmt, filename, options, read_only, force_share, chain,
                              copy_on_read)
    if fmt is not None and fmt not in FORMATS and fmt != "file":
        if fmt in QEMU_DRIVER_NAMES:
            raise BlockError(errno.ENOTSUP, f"Driver '{fmt}' is not modelled by qcowlab")
        raise BlockError(errno.EINVAL, f"Unknown driver '{fmt}'")
    if fmt == "file":
        if filename is None:
            filename = options.get("filename")
            if not isinstance(filename, str) or not filename:
                raise BlockError(errno.EINVAL, "The 'file' block driver requires a file name")
        file = _open_file(filename, read_only, options, force_share)
        try:
            _lock(file, CR | W, 0, read_only, force_share)
        except BlockError:
            file.drv_close()
            raise
        file.probed = False
        return file
    given = dict(options)
    options = _working_copy(options)
    backing_ref, no_backing = _backing_option(options, no_backing)
    # with BDRV_O_NO_BACKING no backing file is opened: backing.* stay unconsumed
    backing_opts = {} if no_backing else subdict(options, "backing.")
    if "x-blkdebug" in options:  # the blkdebug node is named before it opens its image
        from emulator.block.node import auto_node_name
        blkdebug_name = auto_node_name()
    file = _open_format_child(filename, fmt, options, read_only, force_share, chain)
    filename = file.filename
    if "x-blkdebug" in options:  # blkdebug:CONFIG:IMAGE puts a blkdebug node on top
        from emulator.block.blkdebug import BlkdebugNode
        try:
            file = BlkdebugNode(file, options.pop("x-blkdebug"))
            file.no_flush = _no_flush(given)
        except BlockError:
            file.drv_close()
            raise
        file.node_name = blkdebug_name
    probed = fmt is None
    node: BlockNode | None = None
    try:
        if probed:
            fmt = probe_format(file, filename)
        flags = _common_options(options, unmap, read_only, force_share, copy_on_read)
        if fmt == "qcow":
            from emulator.block.qcow1 import open_error
            raise open_error(file)
        if fmt == "compress":
            from emulator.block.compress import CompressNode
            node = CompressNode(file)
        elif fmt == "raw":
            from emulator.block.raw import RawNode
            if probed and not read_only:
                sys.stderr.write(_RAW_PROBE_WARNING.format(filename))
                sys.stderr.flush()
            node = RawNode(file, options, read_only, probed)
            # a raw node with offset/size is a data user of its file, not a filter
            window = RS if node.offset or node.has_size else 0
            _lock(file, CR | W | window, window, read_only, force_share)
        elif fmt == "luks":
            from emulator.block.luks import LuksNode
            _lock(file, CR | W | RS, W | RS, read_only, force_share)
            node = LuksNode.open(file, options, read_only)
        else:
            from emulator.qcow2.driver import Qcow2

            def open_backing(backing_file: str | None,
                             backing_fmt: str | None) -> BlockNode | None:
                if no_backing:
                    return None
                opts = dict(backing_opts)
                for key in ("cache.direct", "cache.no-flush"):  # bdrv_backing_options
                    if key in given:
                        opts.setdefault(key, given[key])
                path = None if "file.filename" in opts or backing_file is None \
                    else backing_full_path(filename, backing_file)
                driver = opts.pop("driver", backing_fmt)
                try:
                    if backing_ref is not None:
                        raise BlockError(errno.EINVAL, f"Cannot find device='{backing_ref}' "
                                                       f"nor node-name='{backing_ref}'")
                    # only a chain named by the images themselves can loop for ever
                    return _open_node(path, driver if isinstance(driver, str) else None,
                                      read_only=True, options=opts, no_backing=False,
                                      unmap=True, force_share=force_share,
                                      chain=[] if backing_opts else chain + [file])
                except BlockError as e:
                    raise BlockError(e.errno, "Could not open backing file: " + e.message,
                                     e.hint) from None

            chain = chain or []
            _lock(file, CR | W | RS, W | RS, read_only, force_share)
            if _in_chain(file, chain):
                # QEMU recurses through such a read-only chain until it runs out of memory
                raise BlockError(errno.ELOOP, f"Backing file chain of '{filename}' loops "
                                              "back onto itself")
            node = Qcow2.open(file, options, read_only, open_backing)
            if node.backing is None and (backing_opts or backing_ref is not None):
                node.backing = open_backing(None, None)
        if fmt == "raw" and not no_backing and (backing_opts or backing_ref is not None):
            raise BlockError(errno.EINVAL, "Driver doesn't support backing files")
        node.unmap, node.detect_zeroes, node.node_name = flags
        node.own_options = _own_options(fmt, given)
        node.probed = probed
        node.force_share = force_share
        node.copy_on_read = copy_on_read
        node.no_flush = _no_flush(given)
        _reject_unknown(options, fmt)
        _refresh_on_open(node)
    except BaseException:
        if node is not None:
            close_image(node)
        else:
            file.drv_close()
        raise
    return node


def reopen_read_write(node: BlockNode) -> None:
    """bdrv_reopen_set_read_only(node, False) for a qcow2 or raw node opened read-only.

    The file gets a new read-write descriptor (file-posix's reopen) carrying
    the write permission locks; conflicting users make it fail with QEMU's
    lock error, leaving the node read-only.
    """
    from emulator.block import locking
    from emulator.block.locking import PERM_CONSISTENT_READ as CR, PERM_RESIZE as RS, \
        PERM_WRITE as W
    if not node.read_only:
        return
    file = node.file
    if node.format_name == "qcow2":
        held, unshared = CR | W | RS, W | RS
    else:
        window = RS if node.offset or node.has_size else 0
        held, unshared = CR | W | window, window
    if getattr(node, "force_share", False):
        unshared = 0
    locking.apply(file, held, unshared)
    try:
        fd = os.open(file.filename, os.O_RDWR)
    except OSError as e:
        raise BlockError(e.errno, f"Could not open '{file.filename}': "
                                  f"{os.strerror(e.errno)}") from None
    old_fd, file.fd = file.fd, fd
    locking.apply(file, held, unshared, check=False)
    os.close(old_fd)
    file.read_only = False
    data = getattr(node, "data_file", None)
    if data is not None and data is not file and data.read_only:  # qcow2's data file child
        old_fd, data.fd = data.fd, os.open(data.filename, os.O_RDWR)
        os.close(old_fd)
        data.read_only = False
    node.read_only = False
    if getattr(node, "nb_bitmaps", 0):
        from emulator.qcow2.bitmap_store import reopen_bitmaps_rw
        reopen_bitmaps_rw(node)


def close_image(node: BlockNode) -> None:
    """bdrv_close: flush, the driver's close, then its file child and backing chain."""
    try:
        io.flush(node)
    except BlockError:
        pass  # bdrv_close ignores the result of its flush
    node.drv_close()
    if node.file is not None and node.file is not node:
        if node.file.file is not None:  # a filter or format child: close its tree too
            close_image(node.file)
        else:
            node.file.drv_close()
    if node.backing is not None:
        close_image(node.backing)
