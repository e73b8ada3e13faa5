"""blkdebug against qemu-io 7.2: injected errors, config files, breakpoints.

Every case runs the same commands under QEMU and qcowlab on alike images and
compares the output, the exit status and the image bytes (so ``qemu-img check``
finds the same leaks or corruption in both).
"""
from __future__ import annotations

import pytest

from tests.cli_support import differential, needs_qemu, qemu_setup

pytestmark = needs_qemu


def conf(event: str, errno: int = 5, once: str = "off", extra: str = "") -> str:
    return (f'[inject-error]\nevent = "{event}"\nerrno = "{errno}"\nimmediately = "off"\n'
            f'once ="{once}"\n{extra}')


def image(config: str, size: str = "1G", opts: str = "cluster_size=1024", *io: list):
    """Setup: the config file and a new image (then optional qemu-io runs)."""
    base = qemu_setup(["img", "create", "-q", "-f", "qcow2", "-o", opts, "t.qcow2", size],
                      *io)

    def setup(d):
        (d / "bd.conf").write_text(config)
        base(d)
    return setup


def c(*cmds: str) -> list:
    out = []
    for cmd in cmds:
        out += ["-c", cmd]
    return out


#: the metadata events of qemu-iotests 026, each with both errnos and once on/off
EVENTS_026 = ["l1_update", "l2_load", "l2_update", "l2_alloc_write", "write_aio",
              "refblock_load", "refblock_update_part", "refblock_alloc", "cluster_alloc"]
#: other events a 128k write, read or compressed write reaches
EVENTS_MORE = ["l2_alloc_cow_read", "cow_read", "cow_write", "read_aio", "read_compressed",
               "write_compressed", "l2_update_compressed", "cluster_alloc_bytes",
               "cluster_free", "vmstate_save", "vmstate_load", "refblock_alloc_hookup",
               "refblock_alloc_write", "l1_grow_alloc_table", "l1_grow_write_table",
               "l1_grow_activate_table", "pwritev", "flush_to_os"]


@pytest.mark.parametrize("event", EVENTS_026)
@pytest.mark.parametrize("errno", [5, 28])
@pytest.mark.parametrize("once", ["on", "off"])
@pytest.mark.parametrize("vmstate", ["", "-b "])
def test_026_events(tmp_path, event, errno, once, vmstate):
    pre = [["io", "-c", f"write {vmstate}0 512", "t.qcow2"]] if event == "l2_update" else []
    setup = image(conf(event, errno, once), "1G", "cluster_size=1024", *pre)
    cmds = c(f"write {vmstate}0 128k")
    if event == "l2_load":
        cmds += c(f"write {vmstate}0 128k", f"read {vmstate}0 128k")
    differential(tmp_path, setup, "io", cmds + ["blkdebug:bd.conf:t.qcow2"])


@pytest.mark.parametrize("event", EVENTS_MORE)
@pytest.mark.parametrize("once", ["on", "off"])
def test_more_events(tmp_path, event, once):
    setup = image(conf(event, 5, once), "4M", "cluster_size=4096",
                  ["io", "-c", "write -P 1 0 64k", "-c", "write -c -P 2 1M 4k", "t.qcow2"])
    cmds = c("write -P 3 1k 2k", "read -P 2 1M 4k", "write -c -P 4 2M 4k", "write -P 5 1M 1k",
             "write -b 0 8k", "read -b 0 8k", "write -P 6 3M 512k", "read 0 64k")
    differential(tmp_path, setup, "io", cmds + ["blkdebug:bd.conf:t.qcow2"])


@pytest.mark.parametrize("event", ["refblock_alloc_hookup", "refblock_alloc_write",
                                   "refblock_alloc_write_blocks", "refblock_alloc_write_table",
                                   "refblock_alloc_switch_table"])
@pytest.mark.parametrize("once", ["on", "off"])
def test_refcount_table_growth(tmp_path, event, once):
    setup = image(conf(event, 28, once), "1G", "cluster_size=512")
    differential(tmp_path, setup, "io", c("write 0 8M") + ["blkdebug:bd.conf:t.qcow2"])


@pytest.mark.parametrize("config", [
    # sector-targeted, iotype-restricted, state machine, immediately
    conf("write_aio", 5, "on", 'sector = "130"\n'),
    conf("l2_update", 5, "off", 'iotype = "flush"\n'),
    conf("write_aio", 28, "off", 'iotype = "read"\n'),
    '[set-state]\nevent = "l2_update"\nnew_state = "2"\n'
    '[inject-error]\nevent = "write_aio"\nstate = "2"\nerrno = "5"\n',
    '[inject-error]\nevent = "cluster_alloc"\nimmediately = "on"\nonce = "on"\n',
    '# comment\n\n[inject-error]\nevent = "l2_load"\nerrno = "0x1c"\nonce = "yes"\n',
], ids=["sector", "iotype-flush", "iotype-read", "set-state", "immediately", "hex-errno"])
def test_rule_options(tmp_path, config):
    setup = image(config, "1M", "cluster_size=65536",
                  ["io", "-c", "write -P 1 0 128k", "t.qcow2"])
    cmds = c("write -P 2 64k 4k", "write -P 3 256k 4k", "read -P 2 64k 4k", "flush",
             "write -z 512k 64k", "discard 0 64k", "read 0 128k")
    differential(tmp_path, setup, "io", cmds + ["blkdebug:bd.conf:t.qcow2"])


@pytest.mark.parametrize("config", [
    '[inject-error]\nevent = "bogus"\n', '[inject-error]\nevent = bogus\n',
    'event = "l2_load"\n', '[inject-error]\nerrno = "5"\n',
    '[inject-error]\nevent = "l2_load"\nonce = "maybe"\n',
    '[inject-error]\nevent = "l2_load"\nerrno = "x"\n', '[foo]\nevent = "l2_load"\n',
    '[inject-error]\nevent = "l2_load"\nfoo = "1"\n', '[inject-error]\nevent = "l2_load"\n   \n',
    '[inject-error]\nevent = "l2_load"\niotype = "bogus"\n',
    '[set-state]\nevent = "l2_load"\nnew_state = "2"\n[inject-error]\nevent="l2_load"\n',
])
def test_config_errors(tmp_path, config):
    differential(tmp_path, image(config, "1M"), "io",
                 c("read 0 1") + ["blkdebug:bd.conf:t.qcow2"])


@pytest.mark.parametrize("args", [
    c("read 0 1") + ["blkdebug:missing.conf:t.qcow2"],
    c("read 0 1") + ["blkdebug:t.qcow2"],
    c("read 0 1") + ["blkdebug::missing.qcow2"],
    c("break foo A", "resume A", "remove_break A", "break l2_load A", "remove_break A",
      "info") + ["blkdebug::t.qcow2"],
    ["-f", "qcow2"] + c("write -P 7 0 64k", "read -P 7 0 64k", "map") + ["blkdebug::t.qcow2"],
    c("open -o driver=qcow2 blkdebug::t.qcow2", "write 0 4k", "close", "open blkdebug::t.qcow2",
      "read 0 4k"),
    # rules given as options of the blkdebug node instead of a config file
    ["--image-opts"] + c("write 0 4k", "write 0 4k") + [
        "driver=qcow2,file.driver=blkdebug,file.image.filename=t.qcow2,"
        "file.inject-error.0.event=write_aio,file.inject-error.0.errno=28,"
        "file.inject-error.0.once=on"],
    c("write 0 4k", "write 64k 4k") + [
        'json:{"driver":"qcow2","file":{"driver":"blkdebug","image":{"driver":"file",'
        '"filename":"t.qcow2"},"set-state":[{"event":"l2_update","new_state":"2"}],'
        '"inject-error":[{"event":"write_aio","state":"2"}]}}'],
    ["--image-opts"] + c("read 0 1") + [
        "driver=qcow2,file.driver=blkdebug,file.image.filename=t.qcow2,"
        "file.inject-error.0.event=bogus"],
    c("open -o driver=qcow2,file.driver=blkdebug,file.config=bd.conf,"
      "file.image.filename=t.qcow2", "write 0 4k"),
])
def test_filenames_and_commands(tmp_path, args):
    differential(tmp_path, image("", "1M"), "io", args)


def test_break_aio_request(tmp_path):
    """A breakpoint hit by an aio request is announced and released by resume."""
    differential(tmp_path, image("", "1M", "extended_l2=on"), "io",
                 c("break write_aio A", "aio_write -P 1 0 4k", "wait_break A", "resume A",
                   "aio_flush", "read -P 1 0 4k") + ["blkdebug::t.qcow2"])


#: events of the generic block layer and of rarely taken qcow2 paths
@pytest.mark.parametrize("event", ["flush_to_disk", "reftable_load"])
@pytest.mark.parametrize("once", ["on", "off"])
def test_flush_and_open_events(tmp_path, event, once):
    """flush_to_disk: a qcow2 flush reaches the disk only when the node was written
    since its last flush (qemu-io's writethrough flushes before counting the write)."""
    setup = image(conf(event, 28, once), "1M", "cluster_size=4096",
                  ["io", "-c", "write -P 1 0 8k", "t.qcow2"])
    cmds = c("write -P 2 0 4k", "write -P 3 64k 4k", "flush", "write -z 8k 4k", "discard 0 4k",
             "flush", "read -P 3 64k 4k")
    differential(tmp_path, setup, "io", cmds + ["blkdebug:bd.conf:t.qcow2"])


@pytest.mark.parametrize("event,once", [
    ("pwritev_rmw_head", "off"), ("pwritev_rmw_tail", "off"),
    ("pwritev_rmw_after_head", "on"), ("pwritev_rmw_after_head", "off"),
    ("pwritev_rmw_after_tail", "on"), ("pwritev_rmw_after_tail", "off")])
def test_rmw_events(tmp_path, event, once):
    """Unaligned writes through blkdebug ``align``. QEMU 7.2 ignores a failed padding
    read and writes its uninitialised buffer (not compared: with once=on at
    pwritev_rmw_head/tail the bytes QEMU writes vary from run to run)."""
    setup = image("", "1M", "cluster_size=4096", ["io", "-c", "write -P 0x11 0 8k", "t.qcow2"])
    cmds = c("write -P 3 512 1k", "write -P 4 20k 1k", "write -P 5 1536 5k", "write -z 6k 3k",
             "write -z 10k 512", "read -P 4 20k 1k")
    differential(tmp_path, setup, "io", ["--image-opts"] + cmds + [
        "driver=qcow2,file.driver=blkdebug,file.image.filename=t.qcow2,file.align=4k,"
        f"file.inject-error.0.event={event},file.inject-error.0.errno=28,"
        f"file.inject-error.0.once={once}"])


@pytest.mark.parametrize("once", ["on", "off"])
def test_cor_write_event(tmp_path, once):
    """Copy-on-read done by a blkdebug node over an overlay (qemu-io -C)."""
    setup = qemu_setup(["img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=4096",
                        "b.qcow2", "1M"],
                       ["io", "-c", "write -P 0x22 0 16k", "b.qcow2"],
                       ["img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=4096",
                        "-b", "b.qcow2", "-F", "qcow2", "o.qcow2"])
    cmds = c("read -P 0x22 0 4k", "read -P 0x22 4k 4k", "read -P 0 64k 4k", "read -P 0x22 8k 8k")
    differential(tmp_path, setup, "io", ["-C", "--image-opts"] + cmds + [
        "driver=blkdebug,image.driver=qcow2,image.file.filename=o.qcow2,"
        f"inject-error.0.event=cor_write,inject-error.0.errno=28,inject-error.0.once={once}"])


@pytest.mark.parametrize("event", ["l1_update", "empty_image_prepare", "reftable_update",
                                   "refblock_alloc"])
def test_empty_image_events(tmp_path, event):
    """qemu-img commit empties the overlay (make_completely_empty) through blkdebug."""
    setup = qemu_setup(["img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=4096",
                        "b.qcow2", "1M"],
                       ["img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=4096",
                        "-b", "b.qcow2", "-F", "qcow2", "o.qcow2"],
                       ["io", "-c", "write -P 7 0 64k", "o.qcow2"])
    differential(tmp_path, setup, "img", [
        "commit", 'json:{"driver":"qcow2","file":{"driver":"blkdebug","inject-error":'
                  f'[{{"event":"{event}"}}],"image":{{"driver":"file","filename":"o.qcow2"}}}}}}'])


def test_flush_error_at_cluster_alloc_lazy_refcounts(tmp_path):
    """B10: qcow2_mark_dirty's failed flush is ignored by the L2 update, which then
    depends on the refcount cache; its flushes keep failing, so both new clusters leak."""
    setup = qemu_setup(["img", "create", "-q", "-f", "qcow2", "-o",
                        "cluster_size=2048,refcount_bits=32,compat=1.1,lazy_refcounts=on",
                        "img.qcow2", "528384"])
    differential(tmp_path, setup, "io", ["--image-opts"] + c(
        "aio_write -P 0xdc 413696 2048", "aio_flush", "write -P 0x13 452608 1024") + [
        "driver=qcow2,file.driver=blkdebug,file.image.filename=img.qcow2,"
        "file.inject-error.0.event=cluster_alloc,file.inject-error.0.errno=1,"
        "file.inject-error.0.iotype=flush"])


@pytest.mark.parametrize("event", ["l1_shrink_write_table", "l1_shrink_free_l2_clusters"])
def test_shrink_events(tmp_path, event):
    """qemu-img resize --shrink through blkdebug: the discard before the L1 shrink marks
    each L2 slice dirty before every refcount update, whose cache flushes write it."""
    setup = qemu_setup(["img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=512",
                        "s.qcow2", "4M"], ["io", "-c", "write -P 1 0 4M", "s.qcow2"])
    differential(tmp_path, setup, "img", [
        "resize", "--shrink", 'json:{"driver":"qcow2","file":{"driver":"blkdebug",'
        f'"inject-error":[{{"event":"{event}"}}],"image":{{"driver":"file",'
        '"filename":"s.qcow2"}}}', "1M"])


@pytest.mark.parametrize("opt_discard", ["", ",file.opt-discard=8k"])
def test_small_discard_below_align(tmp_path, opt_discard):
    """A discard piece smaller than blkdebug's ``align``: QEMU 7.2 dies of SIGFPE
    (offset modulo a zero discard alignment) unless ``opt-discard`` is set. The
    discard comes from the clusters a failed allocation frees (options seed 2129)."""
    setup = qemu_setup(["img", "create", "-q", "-f", "qcow2", "b.qcow2", "1M"],
                       ["io", "-c", "write -P 0x5a 0 1536", "b.qcow2"],
                       ["img", "create", "-q", "-f", "qcow2", "-o",
                        "cluster_size=512,compat=0.10", "-b", "b.qcow2", "-F", "qcow2",
                        "t.qcow2", "1M"],
                       ["io", "-c", "write -P 0x11 0 8k", "t.qcow2"])
    differential(tmp_path, setup, "io", ["--image-opts"] + c(
        "read 4096 4096", "write -z 524288 8192") + [
        "driver=qcow2,file.driver=blkdebug,file.image.filename=t.qcow2,file.align=4096,"
        "file.max-transfer=8k,file.inject-error.0.event=pwritev_rmw_after_head,"
        "file.inject-error.0.errno=1" + opt_discard])


def test_map_error_ends_run(tmp_path):
    """B11: qemu-io ``map`` prints a run whose look-ahead query failed; only the next
    run's first query reports the error (the active l2_update rule fails the read
    of the second L2 table)."""
    setup = qemu_setup(["img", "create", "-q", "-f", "qcow2", "-o", "cluster_size=512",
                        "t.qcow2", "33792"], ["io", "-c", "write -P 1 32256 1024", "t.qcow2"])
    differential(tmp_path, setup, "io", ["--image-opts"] + c("write -P 2 0 512", "map") + [
        "driver=qcow2,file.driver=blkdebug,file.image.filename=t.qcow2,"
        "file.inject-error.0.event=l2_update,file.inject-error.0.errno=1,"
        "file.inject-error.0.immediately=on"])
