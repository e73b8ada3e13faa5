"""Block-layer option dicts as QEMU's QDict of options holds them.

An options dict maps flattened keys ("file.filename", "overlap-check.template")
to values that are text (from the command line, ``--image-opts``, ``open -o``)
or typed JSON scalars (from ``json:{...}`` file names): bool, int, float or
None (JSON null). A driver consumes its options like qemu_opts_absorb_qdict:
in the QDict's iteration order, each value converted to option text and
validated against the option's type, the first bad one failing the open.
What no one consumes is reported like bdrv_open_inherit does.
"""
from __future__ import annotations

import errno

from emulator.block.node import BlockError

BOOL, SIZE, NUMBER, STRING = "bool", "size", "number", "str"


def opt_text(value: object) -> str | None:
    """The option text of a QDict value (None: not a scalar, left unconsumed)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return "%.17g" % value
    return None


def _typed(name: str, kind: str, text: str) -> object:
    """Validate ``text`` as QemuOpts does when an option of type ``kind`` is set."""
    from emulator.cli.qemuopts import OptsError, parse_bool, parse_number, parse_size
    parser = {BOOL: parse_bool, SIZE: parse_size, NUMBER: parse_number}.get(kind)
    if parser is None:
        return text
    try:
        return parser(name, text)
    except OptsError as e:
        raise BlockError(errno.EINVAL, e.message, e.hint) from None


def absorb(options: dict, descs: dict[str, str]) -> dict[str, object]:
    """qemu_opts_absorb_qdict: pop the options named in ``descs``, scalars typed.

    Options are validated in QDict order; the first invalid one raises
    BlockError with QEMU's message (and hint for sizes).
    """
    from emulator.cli.qobject import qdict_items
    parsed: dict[str, object] = {}
    for key, value in qdict_items(options):
        kind = descs.get(key)
        if kind is None:
            continue
        text = opt_text(value)
        del options[key]  # a known option that is not a scalar is dropped
        if text is not None:
            parsed[key] = _typed(key, kind, text)
    return parsed


def first_key(options: dict) -> str:
    """qdict_first(): the key QEMU names when it reports left-over options."""
    from emulator.cli.qobject import qdict_items
    return qdict_items(options)[0][0]


def unsupported(options: dict, driver: str, protocol: bool) -> BlockError:
    """The error for options no one consumed (bdrv_open_inherit's last check)."""
    key = first_key(options)
    if protocol:
        return BlockError(errno.EINVAL,
                          f"Block protocol '{driver}' doesn't support the option '{key}'")
    return BlockError(errno.EINVAL, f"Block format '{driver}' does not support the option '{key}'")


def is_on(value: object) -> bool:
    """A bool option given as JSON true or as text QemuOpts reads as on."""
    return value is True or value in ("on", "yes", "true", "y")


def subdict(options: dict, prefix: str) -> dict:
    """qdict_extract_subqdict: pop the keys starting with ``prefix``, prefix removed,
    inserted in the source's QDict order (which later QDict orders depend on)."""
    keys = [k for k in options if k.startswith(prefix)]
    if not keys:
        return {}
    from emulator.cli.qobject import qdict_items
    return {k[len(prefix):]: options.pop(k) for k, _ in qdict_items(options)
            if k.startswith(prefix)}
