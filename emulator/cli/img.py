"""qcowlab-img: a drop-in for QEMU 7.2's qemu-img (options, output, exit codes).

``main(argv)`` runs one qemu-img invocation in process and returns its exit
status; ``console_main`` is the console-script entry point.  Subcommands live
in ``img_<name>`` modules and are imported only when used.
"""
from __future__ import annotations

import importlib
import sys

PROG = "qemu-img"

#: subcommand -> module implementing ``img_<name>(argv)``
COMMANDS = {
    "create": "emulator.cli.img_create",
    "info": "emulator.cli.img_info",
    "check": "emulator.cli.img_check",
    "map": "emulator.cli.img_map",
    "compare": "emulator.cli.img_compare",
    "measure": "emulator.cli.img_measure",
    "resize": "emulator.cli.img_resize",
    "convert": "emulator.cli.img_convert",
    "rebase": "emulator.cli.img_rebase",
    "dd": "emulator.cli.img_dd",
    "commit": "emulator.cli.img_commit",
    "bench": "emulator.cli.img_bench",
    "snapshot": "emulator.cli.img_snapshot",
    "amend": "emulator.cli.img_amend",
    "bitmap": "emulator.cli.img_bitmap",
}


def main(argv: list[str]) -> int:
    """Run qemu-img with ``argv`` (without the program name); returns the exit code."""
    from emulator import report
    from emulator.cli.img_common import ImgExit
    from emulator.cli.stdio import redirected_stdout
    saved_prog = report.prog_name
    report.prog_name = PROG
    nodes = sys.modules.get("emulator.block.node")  # a new process numbers nodes from 0
    if nodes is not None:
        nodes.reset_auto_names()
    try:
        with redirected_stdout():
            try:
                return _run(list(argv))
            except ImgExit as e:
                return e.code
            except (report.AssertFailed, report.SignalRaised) as e:  # stdout is not flushed
                discard = getattr(sys.stdout, "discard", None)
                if discard is not None:
                    discard()
                return 128 + getattr(e, "signum", 6)
            except Exception as e:  # never show a traceback to a user
                try:
                    report.error_report(f"internal error: {type(e).__name__}: {e}")
                except OSError:
                    pass
                return 1
    finally:
        report.prog_name = saved_prog
        secrets = sys.modules.get("emulator.crypto.secret")  # objects die with the tool
        if secrets is not None:
            secrets.reset()


def _run(argv: list[str]) -> int:
    from emulator.cli.img_common import error_exit, img_getopt
    if not argv:
        error_exit("Not enough arguments")
    trace: dict = {}
    g = img_getopt([PROG] + argv, "+:hVT:",
                   [("help", 0, "h"), ("version", 0, "V"), ("trace", 1, "T")])
    for c in g:
        if c == "V":
            from emulator.cli.texts import COPYRIGHT, VERSION
            sys.stdout.write(f"{PROG} version {VERSION}\n{COPYRIGHT}")
            return 0
        if c == "T":
            from emulator.cli.trace import trace_opt_parse
            rc = trace_opt_parse(PROG, g.optarg, trace)
            if rc is not None:
                return rc
    rest = g.argv[g.optind:]
    if not rest:
        return 0
    if trace:
        from emulator.cli.trace import init_trace_file
        rc = init_trace_file(PROG, trace)
        if rc is not None:
            return rc
    name = rest[0]
    if name in COMMANDS:
        module = importlib.import_module(COMMANDS[name])
        return getattr(module, f"img_{name}")(rest)
    error_exit(f"Command not found: {name}")
    return 1


def console_main() -> None:
    """Entry point of the qcowlab-img console script."""
    from emulator.cli.stdio import exit_like_qemu
    exit_like_qemu(main(sys.argv[1:]))
