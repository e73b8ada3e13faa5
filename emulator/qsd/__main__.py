"""``python -m emulator.qsd``: the same as the qcowlab-qsd command."""
from emulator.qsd.main import console_main

console_main()
