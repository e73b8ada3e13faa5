"""Output filters equivalent to qemu-iotests' common.filter.

Every filter is a function ``(text, ctx) -> text`` over whole multi-line
output; ``ctx`` supplies the run-dependent strings (scratch dir, format).
``FILTERS`` maps the names usable in a case's ``filters:`` lists.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class FilterContext:
    """Run-dependent values the filters replace."""

    test_dir: str
    imgfmt: str
    sock_dir: str = ""


Filter = Callable[[str, FilterContext], str]


def _lines(text: str, fn: Callable[[str], "str | None"]) -> str:
    """Apply ``fn`` to each line; a None result drops the line."""
    out = []
    for line in text.splitlines():
        res = fn(line)
        if res is not None:
            out.append(res)
    return "".join(line + "\n" for line in out)


def filter_win32(text: str, ctx: FilterContext) -> str:
    return text.replace("\r", "")


def filter_testdir(text: str, ctx: FilterContext) -> str:
    """Scratch paths become TEST_DIR (and SOCK_DIR)."""
    text = text.replace(ctx.test_dir + "/", "TEST_DIR/")
    if ctx.sock_dir:
        text = text.replace(ctx.sock_dir + "/", "SOCK_DIR/")
    return text


def filter_imgfmt(text: str, ctx: FilterContext) -> str:
    return text.replace(ctx.imgfmt, "IMGFMT")


_IO_TIMING = re.compile(
    r"[0-9]* ops; [0-9/:. sec]* \([0-9/.inf]* [EPTGMKiBbytes]*/sec and [0-9/.inf]* ops/sec\)")


def filter_qemu_io(text: str, ctx: FilterContext) -> str:
    """qemu-io timing lines and prompts (_filter_qemu_io)."""
    text = filter_win32(text, ctx)
    text = _IO_TIMING.sub("X ops; XX:XX:XX.X (XXX YYY/sec and XXX ops/sec)", text)
    return text.replace("qemu-io> ", "")


def filter_qemu_img_check(text: str, ctx: FilterContext) -> str:
    """Drop allocation statistics and the image end offset (_filter_qemu_img_check)."""
    def one(line: str) -> "str | None":
        if re.search(r"allocated.*fragmented.*compressed clusters", line):
            return None
        if re.search(r"Image end offset: [0-9]+", line):
            return None
        return line.replace("qemu-img: This image format does not support checks",
                            "No errors were found on the image.")
    return _lines(text, one)


def _img_create_filenames(text: str, ctx: FilterContext) -> str:
    text = text.replace(ctx.test_dir, "TEST_DIR")
    if ctx.sock_dir:
        text = text.replace(ctx.sock_dir, "SOCK_DIR")
    return text.replace(ctx.imgfmt, "IMGFMT")


_KEEP_OPTS = (("fmt", 0), ("size", 1), ("backing", 2), ("data_file", 3),
              ("encryption", 4), ("preallocation", 8))


def _formatting_line(line: str, ctx: FilterContext) -> str:
    head, sep, opts = line.partition(", fmt=")
    head = _img_create_filenames(head, ctx)
    if not sep:
        return head
    parts = re.split(r" (?=[a-z0-9_.-]*=)", "fmt=" + opts)
    kept = []
    for part in parts:
        for name, rank in _KEEP_OPTS:
            if part.startswith(name):
                kept.append((f"{rank}-{_img_create_filenames(part, ctx)}"))
                break
    kept.sort()
    options = " ".join(k.split("-", 1)[1] for k in kept).strip()
    return f"{head}, {options}" if options else head


def filter_img_create(text: str, ctx: FilterContext) -> str:
    """Normalise ``Formatting ...`` lines to the options every driver shares (_filter_img_create)."""
    return _lines(text, lambda line: _formatting_line(line, ctx) if line.startswith("Formatting")
                  else _img_create_filenames(line, ctx))


_INFO_DROP = [re.compile(p) for p in (
    r"encrypted: yes", r"cluster_size: [0-9]+", r"table_size: [0-9]+", r"compat: '[^']*'",
    r"compat6: (on|off)", r"static: (on|off)", r"zeroed_grain: (on|off)", r"subformat: '[^']*'",
    r"adapter_type: '[^']*'", r"hwversion: '[^']*'", r"lazy_refcounts: (on|off)",
    r"extended_l2=(on|off)", r"block_size: [0-9]+", r"block_state_zero: (on|off)",
    r"log_size: [0-9]+")]


def filter_img_info(text: str, ctx: FilterContext, format_specific: bool = False) -> str:
    """Drop format-specific details from ``qemu-img info`` (_filter_img_info); LUKS
    iteration counts and UUIDs become fixed values."""
    out: list[str] = []
    discard = 0
    end_re: "re.Pattern[str] | None" = None
    for line in _img_create_filenames(text, ctx).splitlines():
        if any(p.search(line) for p in _INFO_DROP):
            continue
        line = re.sub(r"cid: [0-9]+", "cid: XXXXXXXXXX", line)
        line = re.sub(r"iters: [0-9]+", "iters: 1024", line)
        line = re.sub(r"(compression type: )(zlib|zstd)", r"\1COMPRESSION_TYPE", line)
        line = re.sub(r"uuid: [-a-f0-9]+", "uuid: 00000000-0000-0000-0000-000000000000", line)
        if format_specific:
            discard = 0
        elif line == "Format specific information:":
            discard = 1
        elif re.match(r'^ *"format-specific": \{', line):
            discard = 2
            indent = line[:len(line) - len(line.lstrip(" "))]
            end_re = re.compile("^" + indent + r"\},? *$")
        if discard == 0:
            out.append(line)
        elif discard == 1 and not line:
            out.append("")
            discard = 0
        elif discard == 2 and end_re and end_re.match(line):
            discard = 0
    return "".join(line + "\n" for line in out)


def filter_img_info_format_specific(text: str, ctx: FilterContext) -> str:
    """``_filter_img_info --format-specific``: keeps the format-specific part.

    In a step's ``filters`` it stands in for the default img_info filter."""
    return filter_img_info(text, ctx, format_specific=True)


def filter_json_filename(text: str, ctx: FilterContext) -> str:
    """Every outermost ``json:{...}`` file name becomes ``json:{ /* filtered */ }``
    (_filter_json_filename; a nested one is part of the outer one)."""
    result, *parts = text.split("json:{")
    depth = 0
    for part in parts:
        depth += 1
        end = len(part)
        for i, ch in enumerate(part):
            depth += {"{": 1, "}": -1}.get(ch, 0)
            if depth == 0:
                end = i + 1
                break
        if depth == 0:
            result += "json:{ /* filtered */ }" + part[end:]
    return result


def filter_qmp(text: str, ctx: FilterContext) -> str:
    """QMP timestamps and greeting (_filter_qmp), automatic node names."""
    text = filter_win32(text, ctx)
    text = re.sub(r'("(micro)?seconds": )[0-9]+', r"\1 TIMESTAMP", text)
    text = re.sub(r'"#block[0-9]+"', '"#blockNNN"', text)
    return re.sub(r'^\{"QMP":.*\}$', "QMP_VERSION", text, flags=re.M)


def filter_qemu_img_map(text: str, ctx: FilterContext) -> str:
    """Drop host offsets and file names from ``qemu-img map`` (_filter_qemu_img_map)."""
    text = re.sub(r'"offset": [0-9]+', '"offset": OFFSET', text)
    return _lines(text, lambda line: re.sub(r"^([0-9a-fx]+ +[0-9a-fx]+ +)[0-9a-fx]+ *", r"\1", line)
                  if not line.startswith("[") and not line.startswith("{") else line)


def filter_date(text: str, ctx: FilterContext) -> str:
    return re.sub(r"[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}",
                  "yyyy-mm-dd hh:mm:ss", text)


FILTERS: dict[str, Filter] = {
    "testdir": filter_testdir,
    "imgfmt": filter_imgfmt,
    "qemu_io": filter_qemu_io,
    "qemu_img_check": filter_qemu_img_check,
    "img_create": filter_img_create,
    "img_info": filter_img_info,
    "img_info_format_specific": filter_img_info_format_specific,
    "json_filename": filter_json_filename,
    "qmp": filter_qmp,
    "qemu_img_map": filter_qemu_img_map,
    "date": filter_date,
    "win32": filter_win32,
}


def regex_filter(pattern: str, replacement: str) -> Filter:
    """A per-case ``s/pattern/replacement/`` filter (Python regex syntax, per line)."""
    rx = re.compile(pattern, re.M)
    return lambda text, ctx: rx.sub(replacement, text)


def apply(text: str, names: "list[str]", ctx: FilterContext,
          extra: "list[Filter] | None" = None) -> str:
    """Apply named filters in order, then ``extra`` (per-case) filters, then testdir."""
    for name in names:
        text = FILTERS[name](text, ctx)
    for fn in extra or []:
        text = fn(text, ctx)
    return filter_testdir(text, ctx)
