"""qcowlab-io against qemu-io 7.2: same output (2>&1 order included), exit status, images."""
from __future__ import annotations

import pytest

from tests.cli_support import differential, needs_qemu, qemu_setup, run_ours

pytestmark = needs_qemu

RAW = qemu_setup(["img", "create", "-q", "-f", "raw", "a.raw", "1M"])
QCOW2 = qemu_setup(["img", "create", "-q", "-f", "qcow2", "-o", "extended_l2=on", "z.qcow2", "1M"])
CHAIN = qemu_setup(
    ["img", "create", "-q", "-f", "qcow2", "base.qcow2", "1M"],
    ["io", "-c", "write -P 7 0 128k", "base.qcow2"],
    ["img", "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", "top.qcow2", "2M"],
)


def c(*cmds: str) -> list:
    out = []
    for cmd in cmds:
        out += ["-c", cmd]
    return out


RAW_CASES = [
    ["-f", "raw"] + c("write -P 1 0 4k", "open x", "read -P 2 0 4k", "readx", "read -Z 0 1",
                      "alloc 0 1M", "map", "length", "info", "read -v 0 40") + ["a.raw"],
    c("help", "help r", "help open", "help nope", "help map") + ["a.raw"],
    ["-r", "-f", "raw"] + c("write 0 1", "discard 0 1", "truncate 2M", "read 0 1") + ["a.raw"],
    c("read 0 1"),
    ["-f", "raw"] + c("read", "alloc", "map 1", "truncate", "truncate -m foo 1M", "sleep x")
    + ["a.raw"],
    ["-f", "raw", "nonexist"] + c("read 0 1"),
    ["-f", "qcow2", "a.raw"] + c("read 0 1"),
    c("open -o driver=raw,,x a.raw"),
    c("open -o driver=raw,nodriver a.raw"),
    c("open", "open -r -f raw a.raw"),
    ["-f", "raw"] + c("read -P 0x a 1", "read -P 256 0 1", "read -P -1 0 1", "read -P 09 0 1",
                      "write -P 0377 0 1", "read -P +255 0 1", "read 0 1.5", "read 0 1e3",
                      "read 0 16E", "read 0 0x10k", "read 1.k 1b", "read 0 99999999999999999999k",
                      "read -l 5 0 10", "read -P 1 -s 8 0 4", "read -b 1 512", "write -b 0 1",
                      "write -u 0 1", "write -n 0 1", "write -z -P 1 0 1",
                      "write -c -f 0 512", "write -c 1 512", "write 0 3G",
                      "write -s nonexist 0 1", "discard 0 3G") + ["a.raw"],
    ["-f", "raw"] + c("read -C 0 4k", "write -C -q 0 4k", "readv 0 1k 1k", "writev -P 3 0 1k 2k",
                      "aio_write -P 4 0 4k", "aio_flush", "aio_read -P 4 0 4k", "aio_read -i 0 1",
                      "readv -P 3 0 1k 2k") + ["a.raw"],
    ["-f", "raw"] + c("sleep 1", "quit", "read 0 1") + ["a.raw"],
    ["-f", "raw"] + c("break a b", "remove_break a", "resume a") + ["a.raw"],
    ["-V"], ["-h"], ["--c", "read 0 1", "a.raw"], ["-x"], ["a.raw", "b.raw"],
    ["-f", "raw", "--image-opts", "a.raw"], ["-t", "bogus", "a.raw"], ["-i", "bogus", "a.raw"],
    ["-d", "bogus", "a.raw"],
    ["--image-opts", "driver=raw,file.filename=a.raw"] + c("read -P 0 0 1k"),
    ["-f", "raw"] + c("read -v 0 64k", "write -z 0 1M", "read -P 1 0 1") + ["a.raw"],
    # nothing written: no fdatasync at close (which /dev/null refuses)
    ["-f", "raw"] + c("read 0 1", "flush") + ["/dev/null"],
    # open flags the tools set internally are not options a user may give
    c("open -o x-check=on a.raw", "read 0 1"),
    ["--image-opts", "driver=raw,file.filename=a.raw,x-no-io=on"] + c("read 0 1"),
]


@pytest.mark.parametrize("args", RAW_CASES, ids=lambda a: " ".join(a)[:60])
def test_raw(tmp_path, args):
    differential(tmp_path, RAW, "io", args)


QCOW2_CASES = [
    c("write -P 0x11 8k 4k", "write -z 64k 64k", "write -c 128k 64k", "map", "alloc 0 1M",
      "info", "read -v 8k 32", "discard 0 64k", "length", "truncate 2M", "length") + ["z.qcow2"],
    c("write -P 1 0 128k", "write -z -u 0 64k", "write 8704 1k", "map") + ["z.qcow2"],
    c("write 0 2M", "write -c 0 1k", "truncate -m full 3M") + ["z.qcow2"],
    ["-r"] + c("write 0 1", "read -P 0 0 64k") + ["z.qcow2"],
    c("reopen -r", "write 0 1", "reopen -w", "write -q 0 1", "reopen -r -w",
      "reopen -o read-only=on -r", "reopen -o read-only=on", "write 0 1",
      "reopen -o read-only=off", "write -q 0 1", "reopen -c none", "reopen -c bogus", "reopen x",
      "reopen -o foo=bar", "reopen -o cache.direct=on -c none") + ["z.qcow2"],
    ["-r"] + c("reopen -w", "write -q 0 1", "reopen -o read-only=maybe") + ["z.qcow2"],
]


@pytest.mark.parametrize("args", QCOW2_CASES, ids=lambda a: " ".join(a)[:60])
def test_qcow2(tmp_path, args):
    differential(tmp_path, QCOW2, "io", args)


CHAIN_CASES = [
    c("read -P 7 0 128k", "read -P 0 128k 1M", "write -P 9 4k 4k", "map", "alloc 0 2M",
      "alloc 1M 2M") + ["top.qcow2"],
    ["-U"] + c("read -P 7 0 4k") + ["base.qcow2"],
    ["-s"] + c("write -P 9 0 4k", "read -P 9 0 4k", "info", "map", "alloc 0 64k") + ["top.qcow2"],
    c("open -s -o driver=qcow2 top.qcow2", "write -P 9 0 4k", "close", "open top.qcow2",
      "read -P 9 0 4k"),
    ["-r", "-U"] + c("read -P 7 0 4k", "open -U -r top.qcow2") + ["base.qcow2"],
    c("open -U -r -o force-share=off top.qcow2", "open -r -o driver=qcow2 top.qcow2", "close",
      "close", "open -d unmap -t none -i native -r top.qcow2", "read -P 7 0 1"),
    ["-C"] + c("read -P 7 0 4k", "read 96k 64k", "read 1M 4k", "map") + ["top.qcow2"],
    ["-s", "-C"] + c("read -P 7 0 4k", "map") + ["top.qcow2"],
    ["-r", "-C"] + c("read 0 1") + ["top.qcow2"],
    c("open -C -r top.qcow2", "open -C top.qcow2", "read 0 4k", "map"),
    ["-n"] + c("write -c -P 3 0 64k", "write -P 4 64k 1k") + ["top.qcow2"],
    ["-t", "directsync"] + c("write -c -P 3 128k 64k") + ["top.qcow2"],
    c("open -t none top.qcow2", "write -c -P 3 0 64k"),
]


@pytest.mark.parametrize("args", CHAIN_CASES, ids=lambda a: " ".join(a)[:60])
def test_backing_chain(tmp_path, args):
    differential(tmp_path, CHAIN, "io", args)


@pytest.mark.parametrize("args", [
    ["-c", "write 0 4k", "-c", "write -P 3 64k 64k", "-c", "sigraise 9", "z.qcow2"],
    ["-t", "writeback", "-c", "write 0 4k", "-c", "write -f 64k 4k", "-c", "abort", "z.qcow2"],
    ["-c", "write -z 0 4k", "-c", "write -c 64k 64k", "-c", "aio_write 128k 4k", "-c",
     "aio_flush", "-c", "sigraise 6", "z.qcow2"],
    ["-c", "open -n z.qcow2", "-c", "write 0 4k", "-c", "reopen -c writethrough", "-c",
     "write 64k 4k", "-c", "abort"],
])
def test_death_leaves_the_image_as_qemu(tmp_path, args):
    """Killed mid-session: output and image as QEMU's (writethrough flushes metadata)."""
    from tests.cli_support import tree_files, assert_same_output, run_qemu
    q, p = tmp_path / "q", tmp_path / "p"
    for d in (q, p):
        d.mkdir()
        QCOW2(d)
    q_out, q_rc = run_qemu("io", args, q)
    p_out, p_rc = run_ours("io", args, p)
    assert_same_output(p_out, q_out)
    assert q_rc > 128 and p_rc == q_rc
    assert tree_files(p) == tree_files(q)


@pytest.mark.parametrize("sig", [0, 7, 10, 13, 14, 17, 18, 23, 28, 29, 32, 33, 65])
def test_signals_qemu_io_survives(tmp_path, sig):
    differential(tmp_path, RAW, "io", ["-f", "raw", "-c", f"sigraise {sig}", "-c", "read 0 1",
                                       "a.raw"])


@pytest.mark.parametrize("args", [["-f", "raw", "-c", "sigraise 15", "a.raw"],
                                  ["-f", "raw", "-c", "sleep x", "-c", "abort", "a.raw"],
                                  ["-f", "raw", "-c", "sleep x", "-c", "truncate -m off", "a.raw"]])
def test_death_by_signal(tmp_path, args):
    """QEMU dies by the signal (shell status 128+N); stdout is lost unless flushed first."""
    from tests.cli_support import run_qemu
    RAW(tmp_path)
    q_out, q_rc = run_qemu("io", args, tmp_path)
    p_out, p_rc = run_ours("io", args, tmp_path)
    assert q_rc > 128
    assert p_rc == q_rc
    assert p_out == q_out


def test_interactive_session_without_tty(tmp_path):
    """stdin not a terminal: prompt, fgets, output order as QEMU's."""
    import subprocess

    from tests.cli_support import QEMU
    RAW(tmp_path)
    script = "read 0 1\nfoo\nwrite -P 5 0 1\n"
    q = subprocess.run([QEMU["io"], "-f", "raw", "a.raw"], cwd=tmp_path, input=script.encode(),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    from tests.cli_support import mask_timing
    p_out, p_rc = run_ours("io", ["-f", "raw", "a.raw"], tmp_path, stdin=script)
    assert mask_timing(p_out) == mask_timing(q.stdout.decode())
    assert p_rc == q.returncode
