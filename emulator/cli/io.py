"""qcowlab-io: a drop-in for QEMU 7.2's qemu-io (options, output, exit codes).

``main(argv)`` runs one qemu-io invocation in process and returns its exit
status; ``console_main`` is the console-script entry point.
"""
from __future__ import annotations

import sys

PROG = "qemu-io"


def _long_options():
    from emulator.cli.getopt import LongOpt
    return [
        LongOpt("help", 0, "h"), LongOpt("version", 0, "V"), LongOpt("cmd", 1, "c"),
        LongOpt("format", 1, "f"), LongOpt("read-only", 0, "r"), LongOpt("snapshot", 0, "s"),
        LongOpt("nocache", 0, "n"), LongOpt("copy-on-read", 0, "C"), LongOpt("misalign", 0, "m"),
        LongOpt("native-aio", 0, "k"), LongOpt("aio", 1, "i"), LongOpt("discard", 1, "d"),
        LongOpt("cache", 1, "t"), LongOpt("trace", 1, "T"), LongOpt("object", 1, "object"),
        LongOpt("image-opts", 0, "image-opts"), LongOpt("force-share", 0, "U"),
    ]


def _usage() -> None:
    from emulator.cli.texts import IO_USAGE
    sys.stdout.write(IO_USAGE.format(prog=PROG))


def main(argv: list[str]) -> int:
    """Run qemu-io with ``argv`` (without the program name); returns the exit code."""
    from emulator import report
    from emulator.cli.stdio import redirected_stdout
    saved_prog = report.prog_name
    report.prog_name = PROG
    nodes = sys.modules.get("emulator.block.node")  # a new process numbers nodes from 0
    if nodes is not None:
        nodes.reset_auto_names()
    try:
        with redirected_stdout():
            try:
                return _run(argv)
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
    from emulator.cli import blockopts
    from emulator.cli.getopt import Getopt
    from emulator.cli.io_cmds import IoSession
    from emulator.report import AssertFailed, SignalRaised, error_report

    read_only = False
    unmap = True
    fmt: str | None = None
    force_share = False
    image_opts = False
    snapshot = False
    writethrough = True
    nocache = copy_on_read = native_aio = no_flush = False
    commands: list[str] = []
    trace: dict = {}
    g = Getopt([PROG] + list(argv), "hVc:d:f:rsnCmki:t:T:U", _long_options())
    for c in g:
        if c == "m":  # no effect on the model's results
            pass
        elif c == "k":
            native_aio = True
        elif c == "object":
            from emulator.cli.objects import process_object
            rc = process_object(g.optarg)
            if rc is not None:
                return rc
        elif c == "n":
            nocache, writethrough = True, False
        elif c == "C":
            copy_on_read = True
        elif c == "s":
            snapshot = True
        elif c == "T":
            from emulator.cli.trace import trace_opt_parse
            rc = trace_opt_parse(PROG, g.optarg, trace)
            if rc is not None:
                return rc
        elif c == "d":
            if g.optarg not in blockopts.DISCARD_MODES:
                error_report(f"Invalid discard option: {g.optarg}")
                return 1
            unmap = g.optarg in ("on", "unmap")
        elif c == "f":
            fmt = g.optarg
        elif c == "c":
            commands.append(g.optarg)
        elif c == "r":
            read_only = True
        elif c == "i":
            if g.optarg not in blockopts.AIO_MODES:
                error_report(f"Invalid aio option: {g.optarg}")
                return 1
            native_aio = native_aio or g.optarg == "native"
        elif c == "t":
            if g.optarg not in blockopts.CACHE_MODES:
                error_report(f"Invalid cache option: {g.optarg}")
                return 1
            nocache = blockopts.cache_nocache(g.optarg)
            writethrough = blockopts.cache_writethrough(g.optarg)
            no_flush = g.optarg == "unsafe"
        elif c == "V":
            from emulator.cli.texts import COPYRIGHT, VERSION
            sys.stdout.write(f"{PROG} version {VERSION}\n{COPYRIGHT}")
            return 0
        elif c == "h":
            _usage()
            return 0
        elif c == "U":
            force_share = True
        elif c == "image-opts":
            image_opts = True
        else:
            _usage()
            return 1
    args = g.argv[g.optind:]
    if len(args) > 1:
        _usage()
        return 1
    if fmt is not None and image_opts:
        error_report("--image-opts and -f are mutually exclusive")
        return 1
    if trace:
        from emulator.cli.trace import init_trace_file
        rc = init_trace_file(PROG, trace)
        if rc is not None:
            return rc

    session = IoSession(image_opts=image_opts)
    try:
        if args:
            if image_opts:
                from emulator.cli.qemuopts import OptsError, QemuOpts
                qopts = QemuOpts()
                try:
                    qopts.parse(args[0], warn_on_flag=True)
                except OptsError as e:
                    from emulator.cli.errors import report_err
                    report_err(e.message, e.hint)
                    return 1
                if session.openfile(None, read_only, force_share, qopts.to_dict(), unmap,
                                    snapshot, writethrough, nocache, copy_on_read,
                                    native_aio, no_flush):
                    return 1
            else:
                opts = {"driver": fmt} if fmt is not None else None
                if session.openfile(args[0], read_only, force_share, opts, unmap, snapshot,
                                    writethrough, nocache, copy_on_read, native_aio,
                                    no_flush):
                    return 1
        ret = _command_loop(session, commands)
    except SignalRaised as e:
        if not e.flushed:
            sys.stdout.discard()
        session.abandon()
        return 128 + e.signum
    except AssertFailed:  # abort(): stdout is not flushed
        sys.stdout.discard()
        session.abandon()
        return 128 + 6
    except BaseException:
        session.abandon()  # an internal error: release the files, write nothing more
        raise
    session.close()
    return 1 if ret < 0 else 0


def _command_loop(session, commands: list[str]) -> int:
    last_error = 0
    if commands:
        for line in commands:
            if session.quit:
                break
            ret = session.command(line)
            if ret < 0:
                last_error = ret
        return last_error
    stdin = sys.stdin
    while not session.quit:
        sys.stdout.write(f"{PROG}> ")
        sys.stdout.flush()
        line = stdin.readline(1023) if stdin is not None else ""
        if not line:
            break
        if line.endswith("\n"):
            line = line[:-1]
        ret = session.command(line)
        if ret < 0:
            last_error = ret
    return last_error


def console_main() -> None:
    """Entry point of the qcowlab-io console script."""
    from emulator.cli.stdio import exit_like_qemu
    exit_like_qemu(main(sys.argv[1:]))
