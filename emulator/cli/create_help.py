"""qemu-img create -o help (print_block_option_help + qemu_opts_print_help)."""
from __future__ import annotations

import sys

from emulator.cli import create_opts
from emulator.cli.qemuopts import BOOL, NUMBER, SIZE, OptDesc
from emulator.report import error_report

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

_TYPE_NAMES = {BOOL: "bool (on/off)", NUMBER: "num", SIZE: "size"}


def help_lines(descs: Sequence[OptDesc]) -> list:
    """One '  name=<type>  - help' line per option, sorted as strcmp would."""
    lines = []
    for d in descs:
        text = f"  {d.name}=<{_TYPE_NAMES.get(d.type, 'str')}>"
        if d.help:
            text = text.ljust(24) + f" - {d.help}"
        lines.append(text)
    return sorted(lines, key=lambda s: s.encode())


def print_help(filename: str | None, fmt: str) -> int:
    from emulator.cli.img_create import KNOWN_FORMATS
    if fmt not in KNOWN_FORMATS:
        error_report(f"Unknown file format '{fmt}'")
        return 1
    if fmt not in create_opts.FORMATS:
        error_report(f"Driver '{fmt}' is not modelled by qcowlab")
        return 1
    descs = list(create_opts.FORMATS[fmt])
    if filename is not None:
        descs = create_opts.append(descs, create_opts.FILE)
        sys.stdout.write("Supported options:\n")
    else:
        sys.stdout.write(f"Supported {fmt} options:\n")
    sys.stdout.write("".join(line + "\n" for line in help_lines(descs)))
    if filename is None:
        sys.stdout.write("\nThe protocol level may support further options.\n"
                         "Specify the target filename to include those options.\n")
    return 0
