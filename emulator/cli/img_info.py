"""qemu-img info (img_info, bdrv_query_image_info, bdrv_image_info_dump)."""
from __future__ import annotations

import os
import sys

from emulator.cli.img_common import error_exit, img_getopt, output_format
from emulator.cli.imgopen import close, img_open, strip_file_protocol
from emulator.report import error_report
from emulator.units import size_to_str


def allocated_file_size(node) -> int | None:
    """bdrv_get_allocated_file_size: st_blocks of the host files holding the image's
    data (file and data-file children summed); None where QEMU has no answer
    (a blkdebug node: a protocol without the callback); 0 for null-co."""
    name = node.format_name
    if name in ("null-co", "null-aio"):
        return 0
    if node.file is None or node.file is node:
        if name == "blkdebug" or not getattr(node, "filename", ""):
            return None
        try:
            return os.stat(node.filename).st_blocks * 512
        except OSError:
            return None
    if name == "blkdebug":
        return None
    children = [node.file]
    data_file = getattr(node, "data_file", None)
    if data_file is not None and data_file is not node.file:
        children.append(data_file)
    sizes = [allocated_file_size(child) for child in children]
    return None if None in sizes else sum(sizes)


def query_image_info(node, filename: str) -> dict:
    """ImageInfo of an open node, keys inserted in QAPI order."""
    from emulator.block import io as bio
    from emulator.block.open import backing_full_path
    from emulator.cli.info import driver_info, specific_info
    from emulator.cli.snapshot_info import snapshot_infos
    info: dict = {"filename": filename, "format": node.format_name}
    cluster_size, _ = driver_info(node)
    if not getattr(node, "no_get_info", False):  # the dirty flag comes with bdrv_get_info
        info["dirty-flag"] = bool(getattr(node, "incompatible_features", 0) & 1)
    actual = allocated_file_size(node)
    if actual is not None:
        info["actual-size"] = actual
    info["virtual-size"] = bio.getlength(node)
    if cluster_size:
        info["cluster-size"] = cluster_size
    if getattr(node, "encrypted", False):
        info["encrypted"] = True
    backing = getattr(node, "backing_file", None)
    if backing:
        info["backing-filename"] = backing
        info["full-backing-filename"] = backing_full_path(filename, backing)
        if getattr(node, "backing_format", None):
            info["backing-filename-format"] = node.backing_format
    snaps = snapshot_infos(node)
    if snaps:
        info["snapshots"] = snaps
    spec = specific_info(node)
    if spec is not None:
        info["format-specific"] = spec
    return info


def human_info(info: dict) -> str:
    from emulator.cli.qobject import human_dump
    from emulator.cli.snapshot_info import dump_lines
    size = "unavailable" if "actual-size" not in info else size_to_str(info["actual-size"])
    lines = [f"image: {info['filename']}\n", f"file format: {info['format']}\n",
             f"virtual size: {size_to_str(info['virtual-size'])} ({info['virtual-size']} bytes)\n",
             f"disk size: {size}\n"]
    if info.get("encrypted"):
        lines.append("encrypted: yes\n")
    if "cluster-size" in info:
        lines.append(f"cluster_size: {info['cluster-size']}\n")
    if info.get("dirty-flag"):
        lines.append("cleanly shut down: no\n")
    if "backing-filename" in info:
        line = f"backing file: {info['backing-filename']}"
        if info["full-backing-filename"] != info["backing-filename"]:
            line += f" (actual path: {info['full-backing-filename']})"
        lines.append(line + "\n")
        if "backing-filename-format" in info:
            lines.append(f"backing file format: {info['backing-filename-format']}\n")
    lines.append(dump_lines(info.get("snapshots", [])))
    if "format-specific" in info:
        lines.append("Format specific information:\n")
        lines.append(human_dump(info["format-specific"]["data"]))
    return "".join(lines)


def collect(image_opts: bool, filename: str, fmt: str | None, chain: bool,
            force_share: bool) -> list[dict] | None:
    """collect_image_info_list(): ImageInfo of the image (and its chain), or None."""
    result: list[dict] = []
    seen = set()
    name: str | None = filename
    while name is not None:
        if name in seen:
            error_report(f"Backing file '{name}' creates an infinite loop.")
            return None
        seen.add(name)
        node = img_open(image_opts, name, fmt, read_only=True, force_share=force_share,
                        no_backing=True, no_io=True)
        if node is None:
            return None
        try:
            if image_opts or name.startswith("json:"):
                from emulator.block.filename import refresh_filename
                display = getattr(node, "json_filename", None) or refresh_filename(node)
            else:
                display = strip_file_protocol(name)
            info = query_image_info(node, display)
        finally:
            close(node)
        result.append(info)
        name, fmt, image_opts = None, None, False
        if chain and "full-backing-filename" in info:
            name = info["full-backing-filename"]
            fmt = info.get("backing-filename-format")
    return result


def img_info(argv: list[str]) -> int:
    from emulator.cli.qobject import to_json_pretty
    fmt = output = None
    chain = image_opts = force_share = False
    g = img_getopt(argv, ":f:hU", [
        ("help", 0, "h"), ("format", 1, "f"), ("output", 1, "output"),
        ("backing-chain", 0, "backing-chain"), ("object", 1, "object"),
        ("image-opts", 0, "image-opts"), ("force-share", 0, "U")])
    for c in g:
        if c == "f":
            fmt = g.optarg
        elif c == "U":
            force_share = True
        elif c == "output":
            output = g.optarg
        elif c == "backing-chain":
            chain = True
        elif c == "image-opts":
            image_opts = True
    if g.optind != len(g.argv) - 1:
        error_exit("Expecting one image file name")
    filename = g.argv[g.optind]
    json = output_format(output)
    if json < 0:
        return 1
    infos = collect(image_opts, filename, fmt, chain, force_share)
    if infos is None:
        return 1
    if not json:
        sys.stdout.write("\n".join(human_info(i) for i in infos))
    elif chain:
        sys.stdout.write(to_json_pretty(infos) + "\n")
    else:
        sys.stdout.write(to_json_pretty(infos[0]) + "\n")
    return 0
