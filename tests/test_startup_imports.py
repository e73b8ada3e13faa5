"""The command lines' start-up stays lean: `qcowlab-io -c 'read 0 4k' IMG` and
`qcowlab-img info IMG` import none of the heavier standard modules (each costs
milliseconds, and test suites spawn these commands thousands of times)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HEAVY = {"typing", "dataclasses", "enum", "re", "functools", "collections", "contextlib",
         "json", "inspect", "ast", "tempfile", "shutil", "threading", "ctypes", "zlib",
         "hashlib", "yaml", "argparse", "subprocess", "pathlib", "datetime", "locale"}

PROBE = """
import sys
sys.path.insert(0, {root!r})
from emulator.cli.{tool} import main
status = main({argv!r})
print(' '.join(sorted(sys.modules)), file=sys.stderr)
"""


@pytest.mark.parametrize("tool,argv", [
    ("io", ["-c", "read 0 4k", "{img}"]),
    ("io", ["-c", "write -P 1 0 64k", "-c", "read -P 1 0 4k", "{img}"]),
    ("img", ["info", "{img}"]),
])
def test_no_heavy_module_at_start_up(tmp_path: Path, tool: str, argv: list[str]) -> None:
    img = tmp_path / "t.qcow2"
    from emulator.cli.img import main
    assert main(["create", "-q", "-f", "qcow2", "-o", "extended_l2=on", str(img), "1M"]) == 0
    argv = [a.format(img=img) for a in argv]
    # -S: the site module (and whatever .pth files import) is not ours to judge
    res = subprocess.run([sys.executable, "-S", "-c", PROBE.format(root=str(ROOT), tool=tool,
                                                                   argv=argv)],
                         capture_output=True, text=True, check=True)
    loaded = set(res.stderr.split()[-1000:])
    assert not HEAVY & loaded, sorted(HEAVY & loaded)
