"""qcowlab-qsd's entry point: parse the command line, open --blockdev nodes, serve."""
from __future__ import annotations

import sys

PROG = "qemu-storage-daemon"

_HELP = """Usage: qcowlab-qsd [options]
QEMU storage daemon (qcowlab model)

  -h, --help                display this help and exit
  -V, --version             output version information and exit

  --blockdev [driver=]<driver>[,node-name=<N>][,discard=ignore|unmap]
             [,cache.direct=on|off][,cache.no-flush=on|off]
             [,read-only=on|off][,auto-read-only=on|off]
             [,force-share=on|off][,detect-zeroes=on|off|unmap]
             [,driver specific parameters...]
                         configure a block backend (file, raw or qcow2)

  --chardev socket,id=<id>,path=<path>,server=on,wait=off
  --chardev stdio,id=<id>
                         configure a character device for a monitor

  --monitor [chardev=]name[,mode=control]
                         configure a QMP monitor
"""


def main(argv: list[str]) -> int:
    """Run the daemon; returns the exit status."""
    from emulator import report
    from emulator.qsd.cmdline import UsageError, parse
    report.prog_name = PROG
    try:
        opts = parse(argv)
    except UsageError as exc:
        if exc.getopt:
            sys.stderr.write(f"{sys.argv[0]}: {exc}\n")
        else:
            report.error_report(str(exc))
        return 1
    if opts.action == "help":
        sys.stdout.write(_HELP)
        return 0
    if opts.action == "version":
        from emulator.cli.texts import COPYRIGHT, VERSION
        sys.stdout.write(f"{PROG} version {VERSION}\n{COPYRIGHT}")
        return 0
    from emulator.qsd.commands import Daemon
    from emulator.qsd.protocol import QmpError
    from emulator.qsd.server import Server
    daemon = Daemon()
    for text, args in opts.blockdevs:
        try:
            daemon.execute("blockdev-add", args)
        except QmpError as exc:
            report.error_report(f"--blockdev {text}: {exc.desc}")
            daemon.close_all()
            return 1
    server = Server(daemon, opts.monitors)
    sys.stdout.flush()
    server.run()
    return 0


def console_main() -> None:
    """Entry point of the qcowlab-qsd console script."""
    sys.exit(main(sys.argv[1:]))
