"""Opening images the way qemu-img's img_open() does, with its error texts."""
from __future__ import annotations

import errno

from emulator.cli.errors import report_err
from emulator.report import error_report


def parse_image_opts(text: str, implied: str | None = "file") -> dict | None:
    """--image-opts string to an options dict (noisy: reports errors, returns None)."""
    from emulator.cli.qemuopts import OptsError, QemuOpts
    opts = QemuOpts()
    try:
        opts.parse(text, firstname=implied, warn_on_flag=True)
    except OptsError as e:
        report_err(e.message, e.hint)
        return None
    return opts.to_dict()


def _flatten_into(prefix: str, value: object, out: dict) -> None:
    """qdict_flatten below the top level: entries in QDict order, nested ones
    recursively, lists by index; empty containers kept as values."""
    from emulator.cli.qobject import qdict_items
    if isinstance(value, dict) and value:
        for k, v in qdict_items(value):
            _flatten_into(f"{prefix}{k}.", v, out)
    elif isinstance(value, list) and value:
        for i, v in enumerate(value):
            _flatten_into(f"{prefix}{i}.", v, out)
    else:
        out[prefix[:-1]] = value


def _flatten(obj: dict) -> dict:
    """qdict_flatten(): top-level scalars stay where they are, nested objects become
    dotted keys appended in QDict order (replacing a dotted key given as such)."""
    from emulator.cli.qobject import qdict_items
    out = {k: v for k, v in obj.items() if not (isinstance(v, (dict, list)) and v)}
    for key, value in qdict_items(obj):
        if isinstance(value, (dict, list)) and value:
            _flatten_into(key + ".", value, out)
    return out


def json_filename_options(name: str) -> dict:
    """Options of a "json:{...}" pseudo-filename (parse_json_filename)."""
    from emulator.block.node import BlockError
    from emulator.cli.qjson import parse
    try:
        obj = parse(name[5:])
    except ValueError as e:
        raise BlockError(errno.EINVAL, f"Could not parse the JSON options: {e}") from None
    if not isinstance(obj, dict):
        raise BlockError(errno.EINVAL, "Invalid JSON object given")
    return _flatten(obj)


#: protocol prefixes QEMU 7.2 recognises in a filename ("nbd:...", "blkdebug:...")
QEMU_PROTOCOLS = frozenset((
    "file host_device host_cdrom nbd nbd+tcp nbd+unix nbd+vsock http https ftp ftps ssh "
    "iscsi iser gluster gluster+tcp gluster+unix gluster+rdma nfs rbd null-co null-aio nvme "
    "blkdebug blkverify vvfat json").split())


def strip_file_protocol(name: str | None) -> str | None:
    """The path of a filename: a "file:" prefix names the file protocol explicitly.

    Other protocol prefixes raise BlockError: unknown ones with QEMU's text,
    the ones QEMU knows because qcowlab does not model them.
    """
    from emulator.block.node import BlockError
    if name is None:
        return None
    stop = min([i for i in (name.find(c) for c in ":/\\") if i >= 0], default=-1)
    if stop < 0 or name[stop] != ":":
        return name
    prefix = name[:stop]
    if prefix == "file":
        return name[5:]
    if prefix not in QEMU_PROTOCOLS:
        raise BlockError(errno.EINVAL, f"Unknown protocol '{prefix}'")
    raise BlockError(errno.ENOTSUP, f"Protocol '{prefix}' is not modelled by qcowlab")


def node_read_only(options: dict, read_only: bool) -> bool:
    """The root node's read-only state: a valid 'read-only' option overrides the tool's
    flag (update_flags_from_options), so -r with read-only=off opens the node writable."""
    from emulator.block.options import is_on, opt_text
    text = opt_text(options.get("read-only"))
    if text in ("on", "yes", "true", "y", "off", "no", "false", "n"):
        return is_on(text)
    return read_only


def open_options(name: str | None, options: dict, read_only: bool, force_share: bool,
                 no_backing: bool = False, unmap: bool = False, copy_on_read: bool = False):
    """blk_new_open(name, options): the root node; raises BlockError with QEMU's text.

    ``copy_on_read`` is BDRV_O_COPY_ON_READ.
    """
    from emulator.block.node import BlockError
    from emulator.block.open import open_image
    opts = dict(options)
    if name is not None and name.startswith("json:"):
        from emulator.cli.qobject import qdict_items
        for key, value in qdict_items(json_filename_options(name)):  # qdict_join
            opts.setdefault(key, value)
        name = None
    fmt = opts.pop("driver", None)
    if not isinstance(fmt, str):  # only a string names a driver (qdict_get_try_str)
        fmt = None
    from emulator.block.open import QEMU_DRIVER_NAMES
    if fmt is not None and fmt not in QEMU_DRIVER_NAMES:
        raise BlockError(errno.EINVAL, f"Unknown driver '{fmt}'")
    from emulator.block.options import BOOL, absorb
    share = bool(absorb(opts, {"force-share": BOOL}).get("force-share", False))
    if name is not None and name.startswith("blkdebug:"):
        from emulator.block.blkdebug import parse_filename
        opts["x-blkdebug"], name = parse_filename(name)
    protocol = name.split(":", 1)[0] if name is not None and ":" in name else None
    if protocol in ("null-co", "null-aio"):  # a protocol node under the format
        if fmt not in ("null-co", "null-aio"):
            opts.setdefault("file.driver", protocol)
        filename = name
    else:
        filename = strip_file_protocol(name)
    from emulator.block.options import is_on
    ro_option = is_on(opts.get("read-only"))
    node = open_image(filename, fmt, read_only=node_read_only(opts, read_only),
                      options=opts or None,
                      no_backing=no_backing, force_share=share or force_share, unmap=unmap,
                      copy_on_read=copy_on_read)
    if ro_option and not read_only:  # the BlockBackend cannot get its write permission
        close(node)
        raise BlockError(errno.EPERM, "Block node is read-only")
    return node


def open_temp_snapshot(name: str | None, options: dict, force_share: bool, unmap: bool,
                       copy_on_read: bool = False, read_only: bool = False):
    """BDRV_O_SNAPSHOT: the image read-only under a temporary qcow2 overlay taking writes.

    The overlay is created in $TMPDIR (default /var/tmp) and unlinked once open;
    copy-on-read applies to the overlay only. The overlay takes the open's
    read-only state (flags or option): a read-only one refuses writers.
    """
    import os

    from emulator.block import io as bio
    from emulator.block.node import BlockError, auto_node_name
    from emulator.block.open import open_image
    from emulator.qcow2.create import create
    # the base is read-only whatever the option says: QEMU drops it unparsed (the
    # overlay, which copies it, is the one to reject a bad value)
    base_options = {k: v for k, v in options.items() if k != "read-only"}
    base = open_options(name, base_options, True, force_share, unmap=unmap)
    try:
        fmt, size = base.format_name, bio.getlength(base)
        path = os.path.abspath(base.file.filename if base.file is not None else base.filename)
        tmp = _create_tmp_file()
        try:
            for _ in range(3):  # qcow2's creation opens the new file three times
                auto_node_name()
            create(tmp, {"size": size, "backing_file": path, "backing_fmt": fmt})
            from emulator.block.options import is_on
            ro_option = is_on(options.get("read-only"))
            copied = {"read-only": options["read-only"]} if "read-only" in options else None
            overlay = open_image(tmp, "qcow2", read_only=node_read_only(options, read_only),
                                 options=copied, unmap=unmap,
                                 copy_on_read=copy_on_read, no_backing=True)
        finally:
            os.unlink(tmp)
        if ro_option and not read_only:
            close(overlay)
            raise BlockError(errno.EPERM, "Block node is read-only")
    except BaseException:
        close(base)
        raise
    base.blk = None  # the base is no BlockBackend's root any more
    overlay.backing = base  # the base node as opened, with its options (bdrv_append)
    overlay.backing_attached = True
    return overlay


def _create_tmp_file() -> str:
    """get_tmp_filename + mkstemp: an empty $TMPDIR/vl.XXXXXX (default /var/tmp)."""
    import os
    from emulator.block.node import BlockError
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
    tmpdir = os.environ.get("TMPDIR") or "/var/tmp"
    for _ in range(100):
        suffix = "".join(letters[b % len(letters)] for b in os.urandom(6))
        path = f"{tmpdir}/vl.{suffix}"
        try:
            os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:
            continue
        except OSError as e:
            raise BlockError(e.errno, f"Could not open temporary file '{path}': "
                                      f"{os.strerror(e.errno)}") from None
        return path
    raise BlockError(errno.EEXIST, "Could not create temporary overlay")


def img_open(image_opts: bool, filename: str, fmt: str | None, *, read_only: bool = True,
             force_share: bool = False, no_backing: bool = False, unmap: bool = False,
             no_io: bool = False, nocache: bool = False, no_flush: bool = False,
             key_secrets: dict | None = None):
    """img_open(): the node, or None after printing QEMU's message.

    ``key_secrets`` are the '*key-secret' creation options convert passes on
    when it opens the image it created (img_open_file's options).

    ``no_io`` is BDRV_O_NO_IO (qemu-img info: the image is opened for its metadata only),
    ``nocache`` BDRV_O_NOCACHE (cache.direct=on unless the options set it),
    ``no_flush`` BDRV_O_NO_FLUSH (cache mode unsafe: cache.no-flush=on, likewise).
    """
    from emulator.block.node import BlockError
    if image_opts:
        if fmt is not None:
            error_report("--image-opts and --format are mutually exclusive")
            return None
        options = parse_image_opts(filename)
        if options is None:
            return None
        if force_share:
            if "force-share" in options and options["force-share"] != "on":
                error_report("--force-share/-U conflicts with image options")
                return None
            options["force-share"] = "on"
        name = None
    else:
        options = {"driver": fmt} if fmt is not None else {}
        options.update(key_secrets or {})
        name = filename
    if no_io:
        from emulator.block.open import OPEN_FLAG
        options["x-no-io"] = OPEN_FLAG
    if nocache:
        options.setdefault("cache.direct", "on")
    if no_flush:
        options.setdefault("cache.no-flush", "on")
    try:
        return open_options(name, options, read_only, force_share, no_backing, unmap)
    except BlockError as e:
        report_err(f"Could not open '{filename}': {e.message}", e.hint)
        return None


def close(node) -> None:
    """blk_unref: close the node tree; a failure while closing is not reported,
    the host files are released anyway (so no lock outlives the command)."""
    from emulator.block.node import BlockError
    from emulator.block.open import close_image
    try:
        close_image(node)
    except BlockError:
        release_files(node)


def release_files(node) -> None:
    """Close the host files of a node chain (releasing their locks), nothing else."""
    while node is not None:
        file = node
        while file.file is not None and file.file is not file:  # down filters to the host file
            file = file.file
        if getattr(file, "fd", -1) >= 0:
            file.drv_close()
        node = node.backing
