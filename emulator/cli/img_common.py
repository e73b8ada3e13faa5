"""Helpers shared by the qemu-img subcommands: option scanning, exits, sizes."""
from __future__ import annotations

import errno
import sys

from emulator.cli.getopt import Getopt, LongOpt
from emulator.report import error_report, warn_report
from emulator.units import INT64_MAX, strtosz

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence


class ImgExit(Exception):
    """exit(code) from anywhere inside a qemu-img command."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def error_exit(msg: str) -> None:
    """error_exit(): the message, the --help hint, exit status 1."""
    error_report(msg)
    sys.stderr.write("Try 'qemu-img --help' for more information\n")
    sys.stderr.flush()
    raise ImgExit(1)


def show_help() -> None:
    from emulator.cli.texts import IMG_HELP
    sys.stdout.write(IMG_HELP)
    raise ImgExit(0)


class ImgGetopt(Getopt):
    """getopt_long loop of a subcommand: ':' and '?' exit like QEMU, 'h' prints help."""

    def __iter__(self) -> Iterator[object]:
        while True:
            c = self.next()
            if c == -1:
                return
            if c == ":":
                error_exit(f"missing argument for option '{self.argv[self.optind - 1]}'")
            elif c == "?":
                error_exit(f"unrecognized option '{self.argv[self.optind - 1]}'")
            elif c == "h":
                show_help()
            else:
                if self.optarg is not None and self._is_object_option(c):
                    from emulator.cli.objects import process_object
                    rc = process_object(self.optarg)
                    if rc is not None:
                        raise ImgExit(rc)
                yield c

    def _is_object_option(self, c: object) -> bool:
        """True for the value the subcommand gave its --object long option."""
        return any(o.name == "object" and o.val == c for o in self.longopts)


def img_getopt(argv: list[str], optstring: str,
               longopts: Sequence[tuple[str, int, object]]) -> ImgGetopt:
    return ImgGetopt(argv, optstring, [LongOpt(*o) for o in longopts], prog="qemu-img")


def parse_size_arg(name: str, value: str, minimum: int = 0, maximum: int = INT64_MAX) -> int:
    """cvtnum_full(): the size, or a negative errno after printing QEMU's messages."""
    rc, res = strtosz(value, warn_report)
    if rc < 0 and rc != -errno.ERANGE:
        error_report(f"Invalid {name} specified. You may use k, M, G, T, P or E suffixes for")
        error_report("kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.")
        return rc
    if rc == -errno.ERANGE or res > maximum or res < minimum:
        error_report(f"Invalid {name} specified. Must be between {minimum} and {maximum}.")
        return -errno.ERANGE
    return res


def output_format(output) -> int:
    """--output: 0 for human, 1 for json, else report and return -1."""
    if output is None or output == "human":
        return 0
    if output == "json":
        return 1
    error_report("--output must be used with human or json as argument.")
    return -1
