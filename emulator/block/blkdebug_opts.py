"""blkdebug opened through options (blkdebug_open): ``driver=blkdebug`` with an
``image`` child, request limits and rules given as ``inject-error.N.*`` /
``set-state.N.*`` options (qemu_config_parse_qdict).

``open_blkdebug(options, open_image)`` consumes the blkdebug options, opens
the image child through ``open_image(name, child_options)`` and returns the
:class:`~emulator.block.blkdebug.BlkdebugNode`, raising BlockError with
QEMU's messages. The node itself (rules, events, breakpoints) lives in
emulator/block/blkdebug.py.
"""
from __future__ import annotations

import errno

from emulator.block.node import BlockError, BlockNode
from emulator.block.options import BOOL, NUMBER, SIZE, STRING, absorb, first_key, subdict

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

INT_MAX = (1 << 31) - 1
_RUNTIME = {"config": STRING, "x-image": STRING, "align": SIZE, "max-transfer": SIZE,
            "opt-write-zero": SIZE, "max-write-zero": SIZE, "opt-discard": SIZE,
            "max-discard": SIZE}
_SECTIONS = {
    "inject-error": {"event": STRING, "state": NUMBER, "iotype": STRING, "errno": NUMBER,
                     "sector": NUMBER, "once": BOOL, "immediately": BOOL},
    "set-state": {"event": STRING, "state": NUMBER, "new_state": NUMBER},
}


def _section_rules(options: dict, name: str) -> list[dict]:
    """config_parse_qdict_section: the ``name.N.key`` (or ``name.key``) rule groups."""
    sub = subdict(options, name + ".")
    if not sub:
        return []
    descs = _SECTIONS[name]
    plain = {k: v for k, v in sub.items() if k in descs}
    absorb(dict(plain), descs)  # values are validated before the keys
    rest = {k: v for k, v in sub.items() if k not in descs}
    if rest and plain:
        raise BlockError(errno.EINVAL, f"Unknown option '{first_key(rest)}' for [{name}]")
    if not rest:
        return [{k: _text(v) for k, v in plain.items()}]
    groups: list[dict] = []
    index = 0
    while True:
        group = subdict(rest, f"{index}.")
        if not group:
            break
        groups.append(group)
        index += 1
    if rest:
        raise BlockError(errno.EINVAL, f"Unused option '{first_key(rest)}' for [{name}]")
    rules = []
    for group in groups:
        texts = {k: _text(v) for k, v in group.items() if k in descs}
        absorb(group, descs)
        if group:
            raise BlockError(errno.EINVAL, f"[{name}] section doesn't support the option "
                                           f"'{first_key(group)}'")
        rules.append(texts)
    return rules


def _text(value: object) -> str:
    from emulator.block.options import opt_text
    return opt_text(value) or ""


def _limit(o: dict, key: str, align: int) -> int:
    value = int(o.get(key, 0))
    if value and (value >= INT_MAX or value % align):
        raise BlockError(errno.EINVAL, f"Cannot meet constraints with {key} {value}")
    return value


def open_blkdebug(options: dict,
                  open_image: Callable[[str | None, dict], BlockNode]) -> BlockNode:
    """blkdebug_open over an image child opened by ``open_image``."""
    from emulator.block.blkdebug import BlkdebugNode
    o = absorb(options, _RUNTIME)
    rules = [(action, r) for action in ("inject-error", "set-state")
             for r in _section_rules(options, action)]
    child_opts = subdict(options, "image.")
    ref = options.pop("image", None)
    if isinstance(ref, str):
        raise BlockError(errno.EINVAL, f"Cannot find device='{ref}' nor node-name='{ref}'")
    name = o.get("x-image")
    if name is None and not child_opts:
        raise BlockError(errno.EINVAL, 'A block device must be specified for "image"')
    image = open_image(name if isinstance(name, str) else None, child_opts)
    try:
        config = o.get("config")
        node = BlkdebugNode(image, None if config is None else str(config), rules)
        align = int(o.get("align", 0))
        if align and (align >= INT_MAX or align & (align - 1)):
            raise BlockError(errno.EINVAL, f"Cannot meet constraints with align {align}")
        base = max(align, image.request_alignment)
        node.request_alignment = base
        node.max_transfer = _limit(o, "max-transfer", base)
        opt_zero = _limit(o, "opt-write-zero", base)
        node.pwrite_zeroes_alignment = opt_zero
        node.max_pwrite_zeroes = _limit(o, "max-write-zero", max(opt_zero, base))
        opt_discard = _limit(o, "opt-discard", base)
        node.pdiscard_alignment = opt_discard
        node.max_pdiscard = _limit(o, "max-discard", max(opt_discard, base))
        node.debug_event("none")
    except BlockError:
        image.drv_close()
        raise
    return node
