"""The blkdebug protocol node (block/blkdebug.c): error injection and breakpoints.

A ``BlkdebugNode`` sits between a format node and its file node
(``blkdebug:CONFIG:IMAGE`` or ``blkdebug::IMAGE``). Drivers report events with
``node.debug_event(name)`` (QEMU's BLKDBG_EVENT on their file child). Rules:
- ``[inject-error]`` (event, errno, sector, once, immediately, state, iotype):
  the event activates the rule; the next request of a matching I/O type (and
  sector) on this node then fails with the errno; ``once`` removes the rule
  after one failure.
- ``[set-state]`` (event, state, new_state): the event moves the state machine.
- breakpoints (qemu-io ``break EVENT TAG``): the request reporting the event is
  suspended (``blkdebug: Suspended request 'TAG'``) until ``resume TAG``.
Requests run as :mod:`emulator.block.coroutine` coroutines can be suspended;
a request of the main thread reaching a breakpoint goes on (QEMU would wait
for ever).
"""
from __future__ import annotations

import errno
import sys

from emulator.block.node import BlockError, BlockNode, BlockStatus, BDRV_BLOCK_OFFSET_VALID, \
    BDRV_BLOCK_RAW

#: BlkdebugEvent names, in QEMU's order
EVENTS = (
    "l1_update", "l1_grow_alloc_table", "l1_grow_write_table", "l1_grow_activate_table",
    "l2_load", "l2_update", "l2_update_compressed", "l2_alloc_cow_read", "l2_alloc_write",
    "read_aio", "read_backing_aio", "read_compressed", "write_aio", "write_compressed",
    "vmstate_load", "vmstate_save", "cow_read", "cow_write", "reftable_load",
    "reftable_grow", "reftable_update", "refblock_load", "refblock_update",
    "refblock_update_part", "refblock_alloc", "refblock_alloc_hookup",
    "refblock_alloc_write", "refblock_alloc_write_blocks", "refblock_alloc_write_table",
    "refblock_alloc_switch_table", "cluster_alloc", "cluster_alloc_bytes", "cluster_free",
    "flush_to_os", "flush_to_disk", "pwritev_rmw_head", "pwritev_rmw_after_head",
    "pwritev_rmw_tail", "pwritev_rmw_after_tail", "pwritev", "pwritev_zero",
    "pwritev_done", "empty_image_prepare", "l1_shrink_write_table",
    "l1_shrink_free_l2_clusters", "cor_write", "cluster_alloc_space", "none",
)
#: BlkdebugIOType names
IO_TYPES = ("read", "write", "write-zeroes", "discard", "flush", "block-status")
_DEFAULT_IO_MASK = 0b11111  # every type but block-status


class Rule:
    """One rule: inject-error, set-state or suspend (a breakpoint)."""

    __slots__ = ("event", "action", "state", "error", "once", "immediately", "offset",
                 "iotype_mask", "new_state", "tag")

    def __init__(self, event: str, action: str, state: int = 0) -> None:
        self.event, self.action, self.state = event, action, state
        self.error, self.once, self.immediately = errno.EIO, False, False
        self.offset, self.iotype_mask = -1, _DEFAULT_IO_MASK
        self.new_state, self.tag = 0, ""


def parse_filename(name: str) -> tuple[str | None, str]:
    """``blkdebug:[CONFIG]:IMAGE`` -> (config path or None, image name)."""
    rest = name[len("blkdebug:"):]
    if ":" not in rest:
        raise BlockError(errno.EINVAL, "blkdebug requires both config file and image path")
    config, image = rest.split(":", 1)
    return (config or None), image


#: option names of the two config groups, and which of them are numbers or booleans
_GROUP_OPTS = {
    "inject-error": ("event", "state", "iotype", "errno", "sector", "once", "immediately"),
    "set-state": ("event", "state", "new_state"),
}
_NUMBERS = ("state", "errno", "sector", "new_state")
_BOOLS = ("once", "immediately")


def _config_groups(path: str) -> list[tuple[str, dict]]:
    """qemu_config_parse: ``[group]`` sections of ``key = "value"`` lines,
    each group checked against its option list when it ends."""
    try:
        with open(path, "r", encoding="utf-8", errors="surrogateescape") as f:
            lines = f.read().split("\n")
    except OSError as e:
        raise BlockError(e.errno, f"Could not read blkdebug config file: "
                                  f"{errno_text(e.errno)}") from None
    if lines and lines[-1] == "":
        lines.pop()
    groups: list[tuple[str, dict]] = []
    for line in lines:
        if not line or line[0] == "#":
            continue
        if line[0] == "[" and len(line) > 1 and line[1] != "]":
            if groups:
                _check_group(*groups[-1])
            groups.append((line[1:].split("]")[0].split(" ")[0][:63], {}))
            continue
        words = line.split()
        if not words:
            raise BlockError(errno.EINVAL, "parse error")
        if not groups:
            raise BlockError(errno.EINVAL, "no group defined")
        key = words[0][:63]
        rest = line.lstrip()[len(key):].lstrip()
        value = ""
        if rest.startswith("="):
            rest = rest[1:].lstrip()
            if rest.startswith('"') and rest[1:2] not in ("", '"'):
                value = rest[1:].split('"')[0]
        groups[-1][1][key] = value
    if groups:
        _check_group(*groups[-1])
    return groups


def _check_group(group: str, opts: dict) -> None:
    """qemu_opts_from_qdict for one group: known options, numbers and booleans."""
    if group not in _GROUP_OPTS:
        raise BlockError(errno.EINVAL, f"There is no option group '{group}'")
    for key, value in opts.items():
        if key not in _GROUP_OPTS[group]:
            raise BlockError(errno.EINVAL, f"Invalid parameter '{key}'")
        if key in _NUMBERS and _parse_number(value) is None:
            raise BlockError(errno.EINVAL, f"Parameter '{key}' expects a number")
        if key in _BOOLS and value not in ("on", "yes", "true", "y", "off", "no", "false", "n"):
            raise BlockError(errno.EINVAL, f"Parameter '{key}' expects 'on' or 'off'")


def _parse_number(text: str) -> int | None:
    """strtoull with base 0 on the whole text (0x hex, 0 octal), as QEMU_OPT_NUMBER."""
    t = text.strip()
    neg = t.startswith("-")
    digits = t[1:] if neg else t
    try:
        if digits[:2].lower() == "0x":
            n = int(digits[2:], 16)
        elif digits.startswith("0") and len(digits) > 1:
            n = int(digits[1:], 8)
        else:
            n = int(digits, 10)
    except ValueError:
        return None
    return -n if neg else n


def errno_text(err: int) -> str:
    import os
    return os.strerror(err)


def _number(opts: dict, key: str, default: int) -> int:
    return _parse_number(opts[key]) if key in opts else default


def _event_index(name: str | None) -> str:
    if name is None:
        raise BlockError(errno.EINVAL, "Missing event name for rule")
    if name not in EVENTS:
        raise BlockError(errno.EINVAL, f"invalid parameter value: {name}")
    return name


class Suspended:
    """A request held at a breakpoint."""

    __slots__ = ("co", "tag")

    def __init__(self, co, tag: str) -> None:
        self.co, self.tag = co, tag


class BlkdebugNode(BlockNode):
    """The blkdebug filter over a file node."""

    format_name = "blkdebug"
    protocol_name = "blkdebug"
    #: a filter of its image child (blkdebug's is_filter; used by block-options code)
    is_filter = True

    def __init__(self, file: BlockNode, config: str | None,
                 option_groups: list[tuple[str, dict]] = ()) -> None:
        self.file = file
        self.filename = file.filename
        self.read_only = file.read_only
        self.request_alignment = file.request_alignment
        self.supports_zero_flags = file.supports_zero_flags
        self.unmap = getattr(file, "unmap", True)
        self.state = 1
        self.rules: dict[str, list[Rule]] = {}
        self.active: list[Rule] = []
        self.suspended: list[Suspended] = []
        groups = _config_groups(config) if config is not None else []
        for group in option_groups:
            _check_group(*group)
        groups += option_groups
        for action in ("inject-error", "set-state"):
            for group, opts in groups:
                if group == action:
                    self._add_rule(action, opts)

    # the host file stands behind this node (locks, preallocation checks)
    @property
    def fd(self) -> int:
        return self.file.fd

    @property
    def use_lock(self) -> bool:
        return getattr(self.file, "use_lock", True)

    @property
    def io_ops(self) -> int:
        return getattr(self.file, "io_ops", 0)

    def _add_rule(self, action: str, opts: dict) -> None:
        rule = Rule(_event_index(opts.get("event")), action, _number(opts, "state", 0))
        if action == "inject-error":
            rule.error = _number(opts, "errno", errno.EIO)
            rule.once = opts.get("once") in ("on", "yes", "true", "y")
            rule.immediately = opts.get("immediately") in ("on", "yes", "true", "y")
            sector = _number(opts, "sector", -1)
            rule.offset = -1 if sector == -1 else sector * 512
            if "iotype" in opts:
                if opts["iotype"] not in IO_TYPES:
                    raise BlockError(errno.EINVAL,  # qapi_enum_parse
                                     f"invalid parameter value: {opts['iotype']}")
                rule.iotype_mask = 1 << IO_TYPES.index(opts["iotype"])
        else:
            rule.new_state = _number(opts, "new_state", 0)
        self.rules.setdefault(rule.event, []).insert(0, rule)

    # -- events and breakpoints ------------------------------------------
    def debug_event(self, event: str) -> None:
        """blkdebug_debug_event: apply the rules of ``event`` in the current state."""
        new_state = self.state
        injected = 0
        suspends = 0
        for rule in list(self.rules.get(event, ())):
            if rule.state and rule.state != self.state:
                continue
            if rule.action == "inject-error":
                injected += 1
                if injected == 1:
                    self.active = []
                self.active.insert(0, rule)
            elif rule.action == "set-state":
                new_state = rule.new_state
            else:
                suspends += 1
                self._suspend(rule)
        self.state = new_state
        from emulator.block import coroutine
        for _ in range(suspends):
            if coroutine.current() is not None:
                coroutine.yield_()

    def _suspend(self, rule: Rule) -> None:
        from emulator.block import coroutine
        self.rules[rule.event].remove(rule)
        co = coroutine.current()
        self.suspended.insert(0, Suspended(co, rule.tag))
        out = co.main_out if co is not None else sys.stdout
        out.write(f"blkdebug: Suspended request '{rule.tag}'\n")

    def breakpoint(self, event: str, tag: str) -> int:
        """blkdebug_debug_breakpoint: 0 or -ENOENT for an unknown event."""
        if event not in EVENTS:
            return -errno.ENOENT
        rule = Rule(event, "suspend")
        rule.tag = tag
        self.rules.setdefault(event, []).insert(0, rule)
        return 0

    def resume(self, tag: str, every: bool = False) -> int:
        """Resume the (last) request suspended as ``tag``; -ENOENT if there is none.
        With ``every``, all of them, and the result is always -ENOENT (as QEMU's)."""
        from emulator.block import coroutine
        while True:
            req = next((r for r in self.suspended if r.tag == tag), None)
            if req is None:
                return -errno.ENOENT
            sys.stdout.write(f"blkdebug: Resuming request '{tag}'\n")
            self.suspended.remove(req)
            if req.co is not None:
                coroutine.enter(req.co)
            if not every:
                return 0

    def remove_breakpoint(self, tag: str) -> int:
        ret = -errno.ENOENT
        for rules in self.rules.values():
            for rule in list(rules):
                if rule.action == "suspend" and rule.tag == tag:
                    rules.remove(rule)
                    ret = 0
        self.resume(tag, every=True)
        return ret

    # -- requests --------------------------------------------------------
    def _rule_check(self, offset: int, length: int, iotype: int) -> None:
        """Fail the request with the first active rule that matches it."""
        for rule in self.active:
            if (rule.offset == -1 or (length and offset <= rule.offset < offset + length)) \
                    and rule.iotype_mask & (1 << iotype):
                break
        else:
            return
        if not rule.error:
            return
        if rule.once:
            self.active.remove(rule)
            self.rules[rule.event].remove(rule)
        from emulator.block import coroutine
        co = coroutine.current()
        if not rule.immediately and co is not None:
            # the failing request yields to a bottom half first
            from emulator.block import aio_context
            aio_context.co_schedule(co)
            coroutine.yield_()
        raise BlockError(rule.error)

    def drv_getlength(self) -> int:
        from emulator.block import io
        return io.getlength(self.file)

    def drv_preadv(self, offset: int, length: int) -> bytes:
        from emulator.block import io
        self._rule_check(offset, length, 0)
        return io.pread(self.file, offset, length)

    def drv_pwritev(self, offset: int, data: bytes, flags: int = 0) -> None:
        from emulator.block import io
        self._rule_check(offset, len(data), 1)
        io.pwrite(self.file, offset, data, flags)

    def drv_pwrite_zeroes(self, offset: int, length: int, flags: int) -> None:
        from emulator.block import io
        if length < max(self.request_alignment, self.pwrite_zeroes_alignment):
            raise BlockError(errno.ENOTSUP)
        self._rule_check(offset, length, 2)
        io.pwrite_zeroes(self.file, offset, length, flags)

    def drv_pdiscard(self, offset: int, length: int) -> None:
        from emulator.block import io
        if length < self.request_alignment:
            if not self.pdiscard_alignment:  # QEMU 7.2 takes the offset modulo 0 here
                from emulator.report import SignalRaised
                raise SignalRaised(8, flushed=False)
            raise BlockError(errno.ENOTSUP)
        self._rule_check(offset, length, 3)
        io.pdiscard(self.file, offset, length)

    def drv_flush_to_disk(self) -> None:
        from emulator.block import io
        self._rule_check(0, 0, 4)
        io.flush(self.file)

    def drv_block_status(self, want_zero: bool, offset: int, length: int) -> BlockStatus:
        self._rule_check(offset, length, 5)
        return BlockStatus(BDRV_BLOCK_RAW | BDRV_BLOCK_OFFSET_VALID, length, offset, self.file)

    def drv_truncate(self, size: int, exact: bool, prealloc: str, flags: int = 0) -> None:
        from emulator.block import io
        io.truncate(self.file, size, exact, prealloc, flags)

    def drv_close(self) -> None:
        self.file.drv_close()
