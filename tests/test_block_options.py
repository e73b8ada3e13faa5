"""Block-layer options (issue 8) against real QEMU 7.2.

- ``test_option_form``: the table in block_option_forms.txt (--image-opts,
  json: names, runtime options of qcow2/raw/file, backing.* options, open -o,
  reopen -o, -s/-r/-U, blkdebug in option form, null-co, compress, formats
  nested in formats), each line run by qemu-io/qemu-img and by qcowlab on
  copies of the same images: combined output (timing masked), exit status
  and every resulting file must be identical.
- ``test_random_option_sequence``: seeded random sequences of
  tools/difftest/generate_opts.py compared by tools/difftest/compare.py
  (outputs, exit codes, image bytes and sparseness, final map and check).
  QCOWLAB_OPTS_SEEDS=A:B chooses the seeds (default 0:100).
"""
from __future__ import annotations

import os
import shlex
import shutil
from pathlib import Path

import pytest

from tests.cli_support import assert_same_output, make_qemu_images, needs_qemu, run_ours, \
    run_qemu, tree_files

FORMS_FILE = Path(__file__).with_name("block_option_forms.txt")
FORMS = [line for line in FORMS_FILE.read_text().splitlines()
         if line.strip() and not line.startswith("#")]
SETUP = [
    "qemu-img create -q -f qcow2 -o cluster_size=4096 img.qcow2 1M",
    "qemu-io -c 'write -P 0x11 0 8k' img.qcow2",
    "qemu-img create -q -f qcow2 -b img.qcow2 -F qcow2 top.qcow2",
    "qemu-img create -q -f raw r.raw 1M",
    "qemu-img create -q -f qcow2 -o compat=0.10 v2.qcow2 1M",
    "qemu-img create -q -f qcow2 inner.qcow2 2M",
    "qemu-img create -q -f qcow2 -o cluster_size=4096 nested.qcow2 1M",
    "qemu-io -c 'write -P 0x11 0 64k' nested.qcow2",
    "qemu-img create -q -f raw bd.conf 0",
    "qemu-img create -q -f qcow2 -o data_file=d.raw dimg.qcow2 1M",
]
_lo, _hi = (int(x) for x in os.environ.get("QCOWLAB_OPTS_SEEDS", "0:100").split(":"))
SEEDS = range(_lo, _hi)

pytestmark = needs_qemu


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """The images every form starts from, made once by real QEMU."""
    d = tmp_path_factory.mktemp("block-options-images")
    return make_qemu_images(d, SETUP)


#: injected errors whose close-time messages depend on the write generations (O4, O5),
#: file options QEMU checks before it opens the file (options seeds 458, 538), typed
#: options at reopen (seed 461)
FLUSH_FORMS = [
    "qemu-io -c 'open -o driver=qcow2,file.driver=file,file.locking=maybe missing.qcow2' "
    "-c info",
    "qemu-io -c 'open -o driver=qcow2,file.aio=bad missing.qcow2'",
    # reopen compares typed JSON values with its string options (options seed 461)
    "qemu-io -r -U -c 'reopen -o file.bogus=x,file.locking=on' 'json:{\"driver\":\"qcow2\","
    "\"file\":{\"driver\":\"file\"},\"file.filename\":\"img.qcow2\","
    "\"file.locking\":true}'",
    "qemu-io -c 'write -P 1 0 4k' -c 'write -P 2 8k 4k' -c 'write -z 0 4k' --image-opts "
    "driver=qcow2,file.driver=blkdebug,file.image.filename=img.qcow2,"
    "file.inject-error.0.event=flush_to_disk,file.inject-error.0.errno=5",
    "qemu-io -c 'write -P 1 0 4k' -c flush --image-opts "
    "driver=qcow2,file.driver=blkdebug,file.image.filename=img.qcow2,"
    "file.inject-error.0.event=flush_to_disk,file.inject-error.0.once=on",
    "qemu-io -t writeback -c 'write -P 1 0 4k' --image-opts "
    "driver=qcow2,file.driver=blkdebug,file.image.filename=img.qcow2,"
    "file.inject-error.0.event=flush_to_disk",
    # BDRV_O_NO_FLUSH: no flush reaches the disk, so flush rules never fire
    "qemu-io -t unsafe -c 'write -P 1 0 4k' -c flush -c 'write -P 1 8k 4k' --image-opts "
    "driver=qcow2,file.driver=blkdebug,file.image.filename=img.qcow2,"
    "file.inject-error.0.event=flush_to_disk",
    "qemu-io -c 'write -P 1 0 4k' -c flush -c 'write -P 1 8k 4k' --image-opts "
    "driver=qcow2,cache.no-flush=on,file.driver=blkdebug,file.image.filename=img.qcow2,"
    "file.inject-error.0.event=l2_update,file.inject-error.0.iotype=flush",
    # convert opens its target with cache=unsafe unless -t says otherwise
    "qemu-img convert -n -O qcow2 nested.qcow2 'json:{\"driver\":\"qcow2\",\"file\":"
    "{\"driver\":\"blkdebug\",\"inject-error\":[{\"event\":\"l2_update\",\"iotype\":"
    "\"flush\"}],\"image\":{\"driver\":\"file\",\"filename\":\"img.qcow2\"}}}'",
    "qemu-img convert -t writeback -n -O qcow2 nested.qcow2 'json:{\"driver\":\"qcow2\","
    "\"file\":{\"driver\":\"blkdebug\",\"inject-error\":[{\"event\":\"l2_update\","
    "\"iotype\":\"flush\"}],\"image\":{\"driver\":\"file\",\"filename\":"
    "\"img.qcow2\"}}}'",
]


@pytest.mark.parametrize("line", FORMS + FLUSH_FORMS)
def test_option_form(line: str, images: Path, tmp_path: Path) -> None:
    words = shlex.split(line)
    tool = words[0][5:]
    dirs = tmp_path / "qemu", tmp_path / "ours"
    for d in dirs:
        shutil.copytree(images, d)
    q_out, q_rc = run_qemu(tool, words[1:], dirs[0])
    p_out, p_rc = run_ours(tool, words[1:], dirs[1])
    assert_same_output(p_out, q_out)
    assert p_rc == q_rc
    assert tree_files(dirs[1]) == tree_files(dirs[0])


def test_close_after_errors_on_lazy_refcounts(tmp_path: Path) -> None:
    """O4 (options seed 281): QEMU's close fails to flush both caches; it counts
    every write request (failed ones and zero-write fallbacks too) on the node
    receiving it, so the flushes at close still reach blkdebug's rules."""
    from tests.cli_support import differential, qemu_setup
    setup = qemu_setup(
        ["img", "create", "-q", "-f", "qcow2", "base.qcow2", "1M"],
        ["io", "-f", "qcow2", "-c", "write -P 0x5a 0 1536", "base.qcow2"],
        ["img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=512,lazy_refcounts=on",
         "-b", "base.qcow2", "-F", "qcow2", "img.qcow2", "1M"],
        ["io", "-f", "qcow2", "-c", "write -P 0x11 0 8k", "img.qcow2"],
        ["io", "-c", "write -z 4096 512", "-c", "discard 61440 512",
         'json:{"driver":"qcow2","file.driver":"blkdebug","file":{"image":'
         '{"filename":"img.qcow2"}}}'])
    differential(tmp_path, setup, "io", [
        "-c", "length", "-c", "write -z 524288 512", "-c", "discard 196608 512",
        "-c", "write -z 61440 8192", "--image-opts",
        "driver=qcow2,file.driver=blkdebug,file.image.filename=img.qcow2,file.align=4k,"
        "file.inject-error.0.event=refblock_alloc,file.inject-error.0.errno=1,"
        "file.inject-error.1.event=write_aio,file.inject-error.1.once=off"])


def test_map_with_corrupt_reftable(tmp_path: Path) -> None:
    """Options seed 523: block status ignores a failed metadata preallocation check
    (a corrupt refcount table entry); map goes on after the corruption message."""
    from tests.cli_support import differential, qemu_setup
    setup = qemu_setup(
        ["img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=65536", "img.qcow2", "1M"],
        ["io", "-f", "qcow2", "-c", "write -P 0x11 0 8k", "img.qcow2"],
        ["io", "-f", "raw", "-c", "write -P 0x7 4096 65536", "img.qcow2"])
    differential(tmp_path, setup, "img", ["map", "--output=json", "-f", "qcow2", "img.qcow2"])


@pytest.mark.parametrize("seed", SEEDS)
def test_random_option_sequence(seed: int) -> None:
    from tools.difftest.choices import RandomChooser
    from tools.difftest.compare import differential
    from tools.difftest.generate_opts import options_sequence
    from tools.difftest.runners import ForkRunner, qemu_runner
    scratch = Path(os.environ.get("DIFFTEST_DIR", "/tmp/difftest"))
    seq = options_sequence(RandomChooser(seed), f"options seed {seed}")
    out = differential(seq, qemu_runner(), ForkRunner(),
                       scratch / f"pytest-{os.getpid()}-opts{seed}")
    assert out.ok, out.report()
