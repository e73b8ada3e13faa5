"""One qemu-img convert run after option parsing: sources, target creation, target open.

Mirrors the body of img_convert from opening the sources to convert_do_copy,
in QEMU's order of checks, so every error surfaces at the same point and with
the same text.
"""
from __future__ import annotations

import os
import sys

from emulator.report import error_report


class Run:
    """State of one convert: opened nodes are closed by :meth:`close`."""

    def __init__(self, args, src_num: int, out_filename: str, progress) -> None:
        self.a = args
        self.src_num = src_num
        self.out_filename = out_filename
        self.progress = progress
        self.sources: list[object] = []
        self.target = None

    def close(self) -> None:
        from emulator.cli.imgopen import close
        for node in [self.target] + self.sources:
            if node is not None:
                close(node)

    # ------------------------------------------------------------ steps
    def execute(self) -> bool:
        """Everything from opening the sources to the copy; False after an error."""
        from emulator.block import io
        a = self.a
        if not self._open_sources():
            return False
        total_sectors = sum(io.getlength(n) // 512 for n in self.sources)
        if a.snapshot is not None:
            if self.src_num > 1 and not a.snapshot.startswith("snapshot."):
                error_report("No support for concatenating multiple snapshot")
                return False
            from emulator.cli.img_snapshot_load import load_tmp_snapshot
            if not load_tmp_snapshot(self.sources[0], a.snapshot):
                return False
        opts = None
        self.key_secrets: dict = {}
        if not a.skip_create:
            opts = self._create_opts(total_sectors * 512)
            if opts is None:
                return False
            self.key_secrets = {o.name: o.value for o in opts.opts
                                if o.name.endswith("key-secret")}
        out_baseimg = a.out_baseimg
        param = opts.get("backing_file") if opts is not None else None
        if param is not None:
            out_baseimg = param
        has_backing = out_baseimg is not None
        if a.has_zero_init and has_backing:
            error_report("Cannot use --target-is-zero when the destination image has a "
                         "backing file")
            return True
        if self.src_num > 1 and has_backing:
            error_report("Having a backing file for the target makes no sense when "
                         "concatenating multiple input images")
            return False
        if param is not None and opts.get("backing_fmt") is None:
            error_report("Use of backing file requires explicit backing format")
            return False
        if a.compressed and not self._compression_allowed(opts):
            return False
        if a.bitmaps and not self._check_bitmaps():
            return False
        if not a.skip_create and not self._create(opts):
            return False
        return self._open_target_and_copy(total_sectors, has_backing)

    def _open_sources(self) -> bool:
        from emulator.cli.imgopen import img_open
        for name in self.a.args[:self.src_num]:
            node = img_open(self.a.image_opts, name, self.a.fmt, read_only=True,
                            force_share=self.a.force_share)
            if node is None:
                return False
            self.sources.append(node)
        return True

    def _create_opts(self, size: int):
        """The target's creation options (-o, size, -B/-F); None after an error."""
        from emulator.cli.img_target import target_opts
        from emulator.cli.qemuopts import OptsError
        fmt = self.a.out_fmt
        opts = target_opts(fmt, self.out_filename, f"Unknown file format '{fmt}'")
        if opts is None:
            return None
        try:
            if self.a.options:
                opts.parse(self.a.options)
        except OptsError as e:
            error_report(e.message)
            if e.hint:
                sys.stderr.write(e.hint)
            return None
        opts.set_number("size", size)
        for name, value, what in (("backing_file", self.a.out_baseimg, "Backing file"),
                                  ("backing_fmt", self.a.backing_fmt, "Backing file format")):
            if value is None:
                continue
            try:
                opts.set(name, value)
            except OptsError:
                error_report(f"{what} not supported for file format '{fmt}'")
                return None
        return opts

    def _compression_allowed(self, opts) -> bool:
        if not self.a.skip_create and self.a.out_fmt != "qcow2":
            error_report("Compression not supported for this file format")
            return False
        if opts is not None:
            if opts.get_bool("encryption", False) or opts.get("encrypt.format") is not None:
                error_report("Compression and encryption not supported at the same time")
                return False
            prealloc = opts.get("preallocation")
            if prealloc is not None and prealloc != "off":
                error_report("Compression and preallocation not supported at the same time")
                return False
        return True

    def _check_bitmaps(self) -> bool:
        if self.src_num > 1:
            error_report("Copying bitmaps only possible with single source")
            return False
        from emulator.cli.img_bitmap import convert_check_bitmaps
        return convert_check_bitmaps(self.sources[0], self.a.skip_broken)

    def _locked_by_source(self) -> bool:
        """True when the target file is one the sources hold without sharing writes."""
        if self.a.force_share:
            return False
        path = self.out_filename
        try:
            target = os.stat(path[5:] if path.startswith("file:") else path)
        except OSError:
            return False
        for node in self.sources:
            while node is not None:
                file = node.file if node.file is not None else node
                try:
                    st = os.stat(file.filename)
                except OSError:
                    st = None
                if st is not None and (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino):
                    return True
                node = node.backing
        return False

    def _lock_hint(self) -> None:
        path = self.out_filename
        path = path[5:] if path.startswith("file:") else path
        sys.stderr.write(f"Is another process using the image [{path}]?\n")
        sys.stderr.flush()

    def _create(self, opts) -> bool:
        """bdrv_create of the target; the file is overwritten."""
        from emulator.cli.img_target import create_image
        if self._locked_by_source():
            error_report(f"{self.out_filename}: error while converting {self.a.out_fmt}: "
                         'Failed to get "write" lock')
            self._lock_hint()
            return False
        failure = create_image(self.a.out_fmt, self.out_filename, opts)
        if failure is not None:
            from emulator.cli.errors import report_err
            report_err(f"{self.out_filename}: error while converting {self.a.out_fmt}: "
                       f"{failure[0]}", failure[1])
            return False
        return True

    def _open_target_and_copy(self, total_sectors: int, has_backing: bool) -> bool:
        from emulator.block import io
        from emulator.cli.convert_copy import ConvertError, ConvertState, do_copy
        from emulator.cli.blockopts import cache_nocache
        from emulator.cli.imgopen import img_open
        a = self.a
        if a.cache not in ("none", "off", "directsync", "writeback", "unsafe", "writethrough"):
            error_report(f"Invalid cache option: {a.cache}")
            return False
        image_opts = a.tgt_image_opts if a.skip_create else False
        if not image_opts and self._locked_by_source():  # sources are opened BDRV_O_NO_SHARE
            error_report(f"Could not open '{self.out_filename}': Failed to get \"write\" lock")
            self._lock_hint()
            return False
        self.target = target = img_open(image_opts, self.out_filename, a.out_fmt,
                                        read_only=False, unmap=a.min_sparse != 0,
                                        nocache=cache_nocache(a.cache),
                                        no_flush=a.cache == "unsafe",
                                        key_secrets=self.key_secrets)
        if target is None:
            return False
        if a.bitmaps and not (target.format_name == "qcow2" and target.qcow_version >= 3):
            error_report(f"Format driver '{target.format_name}' does not support bitmaps")
            return False
        if a.compressed and target.format_name != "qcow2":
            error_report("Compression not supported for this file format")
            return False
        if a.skip_create and io.getlength(target) // 512 < total_sectors:
            error_report("output file is smaller than input file")
            return False
        cluster_size = target.cluster_size if target.format_name == "qcow2" else 0
        s = ConvertState(
            src=self.sources, src_sectors=[io.getlength(n) // 512 for n in self.sources],
            src_alignment=[_src_alignment(n) for n in self.sources], target=target,
            total_sectors=total_sectors, min_sparse=a.min_sparse,
            buf_sectors=min(32768, max(4096, getattr(target, "pdiscard_alignment", 0) // 512)),
            cluster_sectors=cluster_size // 512, compressed=a.compressed,
            copy_range=_copy_range(a),
            has_zero_init=a.has_zero_init, target_has_backing=has_backing,
            salvage=a.salvage, quiet=a.quiet, progress=self.progress)
        s.alignment = max(_pow2floor(a.min_sparse), -(-target.request_alignment // 512))
        if has_backing and not a.skip_create and target.backing is not None:
            s.target_backing_sectors = io.getlength(target.backing) // 512
        if not s.has_zero_init and not a.skip_create and a.min_sparse and not has_backing:
            s.has_zero_init = _has_zero_init(target)
        try:
            do_copy(s)
        except ConvertError:
            return False
        if a.bitmaps:
            from emulator.cli.img_bitmap import convert_copy_bitmaps
            return convert_copy_bitmaps(self.sources[0], target, a.skip_broken)
        return True


def _copy_range(a):
    """The -C offloading state, or None without -C."""
    if not a.copy_range:
        return None
    from emulator.cli.convert_copy_range import CopyRange
    return CopyRange(a.num_coroutines)


def _pow2floor(n: int) -> int:
    return 1 << (n.bit_length() - 1) if n > 0 else 0


def _src_alignment(node) -> int:
    """Request alignment in sectors, raised to the cluster size when the driver has one."""
    align = -(-node.request_alignment // 512)
    if node.format_name == "qcow2":
        align = max(align, node.cluster_size // 512)
    return align


def _has_zero_init(node) -> bool:
    """bdrv_has_zero_init: qcow2 and raw over a regular file read as zeroes when new,
    preallocated or not, unless a backing file shows through; an encrypted image
    does not (luks, and qcow2 once its L2 tables are preallocated)."""
    if node.format_name == "luks":
        return False
    if getattr(node, "encrypted", False) and node.l1_size and node.l1_table[0]:
        return False
    return node.backing is None

