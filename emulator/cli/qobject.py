"""QEMU's QObject output: QDict iteration order, pretty JSON, and the human dump.

A QDict is a 512-bucket hash table (tdb_hash) whose buckets are lists with the
newest entry first; iterating it walks buckets 0..511.  Every JSON object QEMU
prints and every "Format specific information" block follows that order, so
Python dicts (insertion order = QEMU's visit order) are reordered here.
"""
from __future__ import annotations

_BUCKETS = 512


def tdb_hash(key: str) -> int:
    data = key.encode("utf-8")
    value = (0x238F13AF * len(data)) & 0xFFFFFFFF
    for i, byte in enumerate(data):
        value = (value + (byte << (i * 5 % 24))) & 0xFFFFFFFF
    return (1103515243 * value + 12345) & 0xFFFFFFFF


def qdict_items(d: dict) -> list[tuple[str, object]]:
    """Items of ``d`` (insertion ordered) in the order QEMU iterates the QDict."""
    order = list(d.items())
    keyed = [(tdb_hash(k) % _BUCKETS, -i, k, v) for i, (k, v) in enumerate(order)]
    keyed.sort(key=lambda t: (t[0], t[1]))
    return [(k, v) for _, _, k, v in keyed]


def _quote(s: str) -> str:
    out = ['"']
    for ch in s:
        cp = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch == "\b":
            out.append("\\b")
        elif ch == "\f":
            out.append("\\f")
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif 0xDC80 <= cp <= 0xDCFF:  # undecodable byte from the command line
            out.append("\\uFFFD")
        elif cp > 0xFFFF:
            cp -= 0x10000
            out.append("\\u%04X\\u%04X" % (0xD800 + (cp >> 10), 0xDC00 + (cp & 0x3FF)))
        elif cp < 0x20 or cp >= 0x7F:
            out.append("\\u%04X" % cp)
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _scalar(v: object) -> str:
    if v is True:
        return "true"
    if v is False:
        return "false"
    if v is None:
        return "null"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    return _quote(str(v))


def to_json_pretty(obj: object) -> str:
    """qobject_to_json_pretty(obj, true)."""
    parts: list[str] = []
    state = {"need_comma": False, "depth": 0}

    def newline() -> None:
        parts.append("\n" + " " * (state["depth"] * 4))

    def comma_name(name) -> None:
        if state["need_comma"]:
            parts.append(",")
            newline()
        else:
            if parts:
                newline()
            state["need_comma"] = True
        if name is not None:
            parts.append(_quote(name) + ": ")

    def emit(name, value) -> None:
        if isinstance(value, dict):
            comma_name(name)
            parts.append("{")
            state["depth"] += 1
            state["need_comma"] = False
            for k, v in qdict_items(value):
                emit(k, v)
            state["depth"] -= 1
            state["need_comma"] = True
            newline()
            parts.append("}")
        elif isinstance(value, list):
            comma_name(name)
            parts.append("[")
            state["depth"] += 1
            state["need_comma"] = False
            for v in value:
                emit(None, v)
            state["depth"] -= 1
            state["need_comma"] = True
            newline()
            parts.append("]")
        else:
            comma_name(name)
            parts.append(_scalar(value))

    emit(None, obj)
    return "".join(parts)


def _dump_scalar(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def human_dump(obj: object, indent: int = 1) -> str:
    """dump_qobject() of block/qapi.c: 'key: value' lines, dashes shown as spaces."""
    lines: list[str] = []

    def walk(value: object, level: int) -> None:
        if isinstance(value, dict):
            entries = [(k.replace("-", " "), v) for k, v in qdict_items(value)]
        elif isinstance(value, list):
            entries = [(f"[{i}]", v) for i, v in enumerate(value)]
        else:
            return
        for label, v in entries:
            pad = " " * (level * 4)
            if isinstance(v, (dict, list)):
                lines.append(f"{pad}{label}:\n")
                walk(v, level + 1)
            else:
                lines.append(f"{pad}{label}: {_dump_scalar(v)}\n")

    walk(obj, indent)
    return "".join(lines)
