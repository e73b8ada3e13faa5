"""qemu-storage-daemon's command line, for the options qcowlab-qsd implements.

``--chardev socket,id=ID,path=PATH,server=on,wait=off`` or
``--chardev stdio,id=ID``, ``--monitor [chardev=]ID[,mode=control]``,
``--blockdev JSON|KEY=VALUE,...``, ``-h``, ``-V``.  Errors are QEMU's texts.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Optional


class UsageError(Exception):
    """A bad command line: the message qemu-storage-daemon prints (exit status 1).

    ``getopt``: reported by getopt_long, prefixed with the program's argv[0]
    rather than its name."""

    def __init__(self, message: str, getopt: bool = False) -> None:
        super().__init__(message)
        self.getopt = getopt


@dataclass
class Chardev:
    id: str
    backend: str            # "socket" or "stdio"
    path: str = ""


@dataclass
class Options:
    chardevs: dict[str, Chardev] = field(default_factory=dict)
    monitors: list[Chardev] = field(default_factory=list)
    blockdevs: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    action: Optional[str] = None  # "help" or "version"


def _keyval(text: str, implied: Optional[str] = None) -> dict[str, str]:
    """``a=b,c=d`` (",," escapes a comma); a leading bare word is ``implied``'s value."""
    out: dict[str, str] = {}
    parts, cur, i = [], "", 0
    while i < len(text):
        if text[i] == ",":
            if text[i + 1:i + 2] == ",":
                cur += ","
                i += 2
                continue
            parts.append(cur)
            cur = ""
        else:
            cur += text[i]
        i += 1
    parts.append(cur)
    for n, part in enumerate(parts):
        if "=" not in part:
            if n == 0 and implied:
                out[implied] = part
                continue
            raise UsageError(f"Expected '=' after parameter '{part}'")
        key, value = part.split("=", 1)
        out[key] = value
    return out


def _scalar(value: str) -> Any:
    """Dotted-key option values take the JSON type their text spells."""
    if value in ("on", "true"):
        return True
    if value in ("off", "false"):
        return False
    try:
        return int(value, 0)
    except ValueError:
        return value


def blockdev_dict(text: str) -> dict[str, Any]:
    """``--blockdev``'s argument: a JSON object, or dotted keys made into one."""
    if text.lstrip().startswith("{"):
        try:
            value = json.loads(text)
        except ValueError as exc:
            raise UsageError(f"JSON parse error, {exc.msg.lower()}") from None
        if not isinstance(value, dict):
            raise UsageError("Expected a JSON object")
        return value
    out: dict[str, Any] = {}
    for key, raw in _keyval(text).items():
        node = out
        *path, last = key.split(".")
        for part in path:
            node = node.setdefault(part, {})
        node[last] = raw if key.endswith(("filename", "node-name")) else _scalar(raw)
    return out


def parse(argv: list[str]) -> Options:
    """The options in command-line order; raises UsageError."""
    opts = Options()
    args = list(argv)
    while args:
        arg = args.pop(0)
        if arg in ("-h", "--help"):
            opts.action = "help"
            return opts
        if arg in ("-V", "--version"):
            opts.action = "version"
            return opts
        name, _, inline = arg.partition("=")
        if name not in ("--chardev", "--monitor", "--blockdev"):
            if arg.startswith("-"):
                raise UsageError(f"unrecognized option '{arg}'", getopt=True)
            raise UsageError(f"{arg}: Unexpected argument")
        if inline:
            value = inline
        elif args:
            value = args.pop(0)
        else:
            raise UsageError(f"option '{name}' requires an argument", getopt=True)
        where = f"{name} {value}: "
        try:
            _apply(opts, name, value)
        except UsageError as exc:
            raise UsageError(where + str(exc)) from None
    return opts


def _apply(opts: Options, name: str, value: str) -> None:
    if name == "--blockdev":
        opts.blockdevs.append((value, blockdev_dict(value)))
        return
    if name == "--chardev":
        kv = _keyval(value, implied="backend")
        backend = kv.get("backend", "")
        if backend not in ("socket", "stdio"):
            raise UsageError(f"'{backend}' is not a valid char driver name")
        if "id" not in kv:
            raise UsageError("Parameter 'id' is missing")
        if backend == "socket" and "path" not in kv:
            raise UsageError("chardev: socket: no host given")
        opts.chardevs[kv["id"]] = Chardev(kv["id"], backend, kv.get("path", ""))
        return
    kv = _keyval(value, implied="chardev")
    chardev = opts.chardevs.get(kv.get("chardev", ""))
    if chardev is None:
        raise UsageError(f'chardev "{kv.get("chardev", "")}" not found')
    if kv.get("mode", "control") != "control":
        raise UsageError("Only QMP is supported")
    opts.monitors.append(chardev)
