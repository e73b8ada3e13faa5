"""The daemon's state and its command table."""
from __future__ import annotations

from typing import Any, Callable

from emulator.qsd import schema
from emulator.qsd.protocol import VERSION, QmpError
from emulator.qsd.qapi import visit

#: query-commands order: the reverse of registration, as qemu-storage-daemon lists them
_LISTED = ("object-del", "object-add", "quit", "query-commands", "query-version",
           "qmp_capabilities", "query-jobs", "job-dismiss", "x-blockdev-amend", "blockdev-create", "blockdev-del",
           "blockdev-add", "block-dirty-bitmap-clear", "block-dirty-bitmap-remove",
           "block-dirty-bitmap-add", "query-named-block-nodes", "block_resize",
           "blockdev-snapshot-internal-sync",
           "human-monitor-command")


class Daemon:
    """Open nodes, jobs, pending events; ``emit`` is set by the server."""

    def __init__(self) -> None:
        from emulator.qsd.blockdev import Graph
        from emulator.qsd.jobs import Jobs
        self.graph = Graph()
        self.jobs = Jobs(self)
        self.emit: Callable[[dict[str, Any]], None] = lambda msg: None
        self.deferred: list[Callable[[], None]] = []
        self.quitting = False

    # --- lifecycle ----------------------------------------------------------
    def negotiate(self, args: dict[str, Any]) -> None:
        """qmp_capabilities: "oob" may be enabled (commands still run in order)."""
        visit(schema.ARGUMENTS["qmp_capabilities"], args)

    def request_quit(self) -> None:
        self.quitting = True

    def close_all(self) -> None:
        self.graph.close_all()

    def run_deferred(self) -> None:
        """Work that follows a reply (a job that completes asynchronously in QEMU)."""
        work, self.deferred = self.deferred, []
        for fn in work:
            fn()

    # --- dispatch -------------------------------------------------------------
    def execute(self, name: str, args: dict[str, Any]) -> Any:
        handler = _HANDLERS.get(name)
        if handler is None:
            raise QmpError(f"The command {name} has not been found", "CommandNotFound")
        visit(schema.ARGUMENTS[name], args)
        try:
            return handler(self, args)
        except QmpError:
            raise
        except Exception as exc:  # a model bug: report it, keep serving
            import traceback
            traceback.print_exc()
            raise QmpError(f"qcowlab internal error: {type(exc).__name__}: {exc}") from None


def _query_version(d: Daemon, args: dict[str, Any]) -> Any:
    return VERSION


def _query_commands(d: Daemon, args: dict[str, Any]) -> Any:
    return [{"name": name} for name in _LISTED]


def _quit(d: Daemon, args: dict[str, Any]) -> Any:
    d.jobs.dismiss_all()
    d.request_quit()
    return {}


def _graph(method: str) -> Callable[[Daemon, dict[str, Any]], Any]:
    return lambda d, args: getattr(d.graph, method)(args)


def _jobs(method: str) -> Callable[[Daemon, dict[str, Any]], Any]:
    return lambda d, args: getattr(d.jobs, method)(args)


def _object_add(d: Daemon, args: dict[str, Any]) -> Any:
    """object-add: secrets only (what the encrypted images need)."""
    from emulator.crypto.errors import CryptoError
    from emulator.crypto.secret import add_secret
    if args["qom-type"] != "secret":
        raise QmpError(f"qcowlab does not model object type '{args['qom-type']}'")
    props = {k: v for k, v in args.items() if k not in ("qom-type", "id")}
    try:
        add_secret(args["id"], props)
    except CryptoError as exc:
        raise QmpError(exc.message) from None
    return {}


def _object_del(d: Daemon, args: dict[str, Any]) -> Any:
    from emulator.crypto.errors import CryptoError
    from emulator.crypto.secret import delete_object
    try:
        delete_object(args["id"])
    except CryptoError as exc:
        raise QmpError(exc.message) from None
    return {}


def _hmp(d: Daemon, args: dict[str, Any]) -> Any:
    from emulator.qsd.hmp import human_monitor_command
    return human_monitor_command(d.graph, args["command-line"])


_HANDLERS: dict[str, Callable[[Daemon, dict[str, Any]], Any]] = {
    "query-version": _query_version,
    "query-commands": _query_commands,
    "quit": _quit,
    "blockdev-add": _graph("add"),
    "blockdev-del": _graph("delete"),
    "query-named-block-nodes": _graph("query_named_block_nodes"),
    "block_resize": _graph("resize"),
    "blockdev-snapshot-internal-sync": _graph("snapshot_internal"),
    "block-dirty-bitmap-add": _graph("bitmap_add"),
    "block-dirty-bitmap-remove": _graph("bitmap_remove"),
    "block-dirty-bitmap-clear": _graph("bitmap_clear"),
    "blockdev-create": _jobs("create"),
    "x-blockdev-amend": _jobs("amend"),
    "query-jobs": _jobs("query"),
    "job-dismiss": _jobs("dismiss"),
    "object-add": _object_add,
    "object-del": _object_del,
    "human-monitor-command": _hmp,
}
