"""--object of qemu-img and qemu-io (user_creatable_process_cmdline)."""
from __future__ import annotations

import sys


def process_object(text: str) -> int | None:
    """Create the object ``text`` describes; an exit status if the tool must stop.

    Help requests print to stdout (status 0), errors are reported (status 1).
    """
    from emulator.cli.errors import report_err
    from emulator.crypto.errors import CryptoError
    from emulator.crypto.secret import ObjectHelp, add_object
    try:
        add_object(text)
    except ObjectHelp as h:
        sys.stdout.write(h.text)
        return 0
    except CryptoError as e:
        report_err(e.message, e.hint)
        return 1
    return None
