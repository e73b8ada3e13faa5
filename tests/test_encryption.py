"""Encryption against QEMU 7.2: LUKS (in qcow2 and standalone), legacy qcow AES, secrets.

Interoperability both ways (images the emulator encrypts are read by QEMU and
vice versa, with ``read -P``), identical outputs and exit codes, and byte
identity of everything that is not random: created images are compared with
their salts, digests, iteration counts, UUID and key material masked, and
images written by both tools from the same starting image (same master key)
must be byte-identical, data clusters included.
"""
from __future__ import annotations

import re
import shutil
import struct
from pathlib import Path
from typing import List, Tuple

import pytest

from tests.cli_support import mask_timing, needs_qemu, run_ours, run_qemu

pytestmark = needs_qemu

SECRETS = ["--object", "secret,id=sec0,data=hunter2", "--object", "secret,id=sec1,data=other"]
#: (cipher-alg, cipher-mode, ivgen-alg, ivgen-hash-alg, hash-alg, iter-time)
COMBOS = [
    ("aes-256", "xts", "plain64", None, "sha256", 10),
    ("aes-128", "cbc", "essiv", "sha256", "sha1", 30),
    ("aes-192", "xts", "plain", None, "sha512", 60),
    ("cast5-128", "cbc", "plain64", None, "sha1", 10),
    ("aes-256", "ctr", "essiv", "sha256", "sha384", 20),
    ("aes-128", "ecb", "plain64", None, "md5", 10),
    ("aes-256", "cbc", "plain", None, "ripemd160", 10),
]
WRITES = ["write -P 0x11 0 3k", "write -P 0x22 70k 9k", "write -z 200k 8k",
          "write -P 0x33 300k 700k", "discard 128k 64k", "write -z 1k 1k",
          "write -P 0x44 1020k 4k"]
READS = ["read -P 0x11 2k 1k", "read -P 0 1k 1k", "read -P 0x22 70k 9k", "read -P 0 200k 8k",
         "read -P 0x33 300k 700k", "read -P 0x44 1020k 4k", "read -P 0 1000k 20k"]


def _cmds(cmds: List[str]) -> List[str]:
    return [a for c in cmds for a in ("-c", c)]


def qemu_retry(tool: str, args: List[str], cwd: Path) -> Tuple[str, int]:
    """QEMU's PBKDF benchmark reads tick-granular CPU time and now and then fails with
    'Unable to get accurate CPU usage' (about 1 run in 10): run it again then."""
    for _ in range(20):
        out, rc = run_qemu(tool, args, cwd)
        if "Unable to get accurate CPU usage" not in out:
            return out, rc
    raise AssertionError("QEMU's PBKDF benchmark kept failing")


def luks_opts(combo, prefix: str = "encrypt.") -> str:
    alg, mode, ivgen, ivhash, hash_alg, iter_time = combo
    parts = ["key-secret=sec0", f"cipher-alg={alg}", f"cipher-mode={mode}",
             f"ivgen-alg={ivgen}", f"hash-alg={hash_alg}", f"iter-time={iter_time}"]
    if ivhash:
        parts.append(f"ivgen-hash-alg={ivhash}")
    head = "encrypt.format=luks," if prefix else ""
    return head + ",".join(prefix + p for p in parts)


def qcow2_spec(name: str, secret: str = "sec0") -> str:
    return f"driver=qcow2,file.filename={name},encrypt.key-secret={secret}"


def luks_spec(name: str, secret: str = "sec0") -> str:
    return f"driver=luks,file.filename={name},key-secret={secret}"


def mask(text: str) -> str:
    """mask_timing, and also the h:mm:ss.ss form qemu-io uses for a second or more."""
    return mask_timing(re.sub(r"\b\d+:\d\d:\d\d\.\d\d \(", "TT sec (", text))


def both(tool: str, args: List[str], qdir: Path, odir: Path) -> Tuple[str, int]:
    """The same command with QEMU in ``qdir`` and the emulator in ``odir``: same output."""
    qout, qrc = qemu_retry(tool, args, qdir)
    oout, orc = run_ours(tool, args, odir)
    assert mask(oout) == mask(qout), (args, qout, oout)
    assert orc == qrc, (args, qout, oout)
    assert "Traceback" not in oout and "unrecognized option" not in qout
    return qout, qrc


# --------------------------------------------------------- masked comparison
def _luks_random_ranges(buf: bytes, base: int) -> List[Tuple[int, int]]:
    """Byte ranges of a LUKS header at ``base`` that QEMU fills with random data."""
    ranges = [(base + 112, 20), (base + 132, 32), (base + 164, 4), (base + 168, 40)]
    mk_len = struct.unpack_from(">I", buf, base + 108)[0]
    for i in range(8):
        slot = base + 208 + 48 * i
        active, _, _, key_sector, stripes = struct.unpack_from(">II32sII", buf, slot)
        ranges += [(slot + 4, 4), (slot + 8, 32)]
        if active == 0x00AC71F3:
            ranges.append((base + key_sector * 512, mk_len * stripes))
    return ranges


def _qcow2_luks_base(buf: bytes) -> int:
    pos = struct.unpack_from(">I", buf, 100)[0]
    while pos + 8 <= len(buf):
        magic, length = struct.unpack_from(">II", buf, pos)
        if magic == 0:
            break
        if magic == 0x0537BE77:
            return struct.unpack_from(">Q", buf, pos + 8)[0]
        pos += 8 + (length + 7) // 8 * 8
    raise AssertionError("no crypto header extension")


def assert_same_but_random(a: Path, b: Path, qcow2: bool) -> None:
    """Equal files once the random parts of their LUKS headers are masked."""
    x, y = bytearray(a.read_bytes()), bytearray(b.read_bytes())
    assert len(x) == len(y)
    base_x = _qcow2_luks_base(x) if qcow2 else 0
    assert base_x == (_qcow2_luks_base(y) if qcow2 else 0)
    for buf in (x, y):
        for off, n in _luks_random_ranges(bytes(buf), base_x):
            buf[off:off + n] = bytes(n)
    assert x == y


# ------------------------------------------------------------------ qcow2+LUKS
#: every combination once, alternately with and without extended L2 entries
INTEROP = [(c, "on" if i % 2 else "off") for i, c in enumerate(COMBOS)]


@pytest.mark.parametrize("combo,extl2", INTEROP,
                         ids=["-".join(str(p) for p in c if p) + f"-extl2={e}"
                              for c, e in INTEROP])
def test_qcow2_luks_interop(tmp_path: Path, combo, extl2: str) -> None:
    """Ours creates and writes, QEMU reads (and the other way round); created
    images are identical but for the random parts."""
    q, o = tmp_path / "q", tmp_path / "o"
    q.mkdir(), o.mkdir()
    opts = f"{luks_opts(combo)},extended_l2={extl2},cluster_size=64k"
    create = SECRETS + ["-o", opts, "-f", "qcow2", "t.qcow2", "1M"]
    qout, qrc = qemu_retry("img", ["create"] + create, q)
    oout, orc = run_ours("img", ["create"] + create, o)
    assert (oout, orc) == (qout, qrc) and qrc == 0
    assert_same_but_random(q / "t.qcow2", o / "t.qcow2", qcow2=True)
    # each tool writes its own image, the other reads it
    w = SECRETS + _cmds(WRITES) + ["--image-opts", qcow2_spec("t.qcow2")]
    r = SECRETS + _cmds(READS) + ["--image-opts", qcow2_spec("t.qcow2")]
    wq = run_qemu("io", w, q)
    wo = run_ours("io", w, o)
    assert mask(wo[0]) == mask(wq[0]) and wo[1] == wq[1] == 0
    for reader_dir in (q, o):
        other = o if reader_dir is q else q
        shutil.copy(other / "t.qcow2", reader_dir / "x.qcow2")
    r = SECRETS + _cmds(READS) + ["--image-opts", qcow2_spec("x.qcow2")]
    rq = run_qemu("io", r, q)  # QEMU reads the emulator's image
    ro = run_ours("io", r, o)  # the emulator reads QEMU's image
    assert "Pattern verification failed" not in rq[0] + ro[0]
    assert mask(ro[0]) == mask(rq[0]) and ro[1] == rq[1] == 0
    # same metadata, same map, same check, same info on both images
    for name in ("t.qcow2", "x.qcow2"):
        for args in (["info", "t.qcow2"], ["check", "--output=json", "t.qcow2"]):
            args = [a.replace("t.qcow2", name) for a in args]
            both("img", args, q, q)
        both("img", ["map"] + SECRETS + ["--output=json", "--image-opts", qcow2_spec(name)], q, q)
        both("img", ["check"] + SECRETS + ["--image-opts", qcow2_spec(name)], q, q)


@pytest.mark.parametrize("extl2", ["off", "on"])
def test_qcow2_luks_same_key_same_bytes(tmp_path: Path, extl2: str) -> None:
    """From one QEMU-made image (so one master key), the same writes leave
    byte-identical files: data clusters are encrypted at the same host offsets."""
    q, o = tmp_path / "q", tmp_path / "o"
    q.mkdir(), o.mkdir()
    opts = f"{luks_opts(COMBOS[1])},extended_l2={extl2},cluster_size=32k"
    qemu_retry("img", ["create"] + SECRETS + ["-f", "qcow2", "-o", opts, "t.qcow2", "2M"], q)
    shutil.copy(q / "t.qcow2", o / "t.qcow2")
    cmds = WRITES + ["write -P 0x55 33k 2k", "write -P 0x66 1500k 300k", "write -z -u 64k 32k"]
    both("io", SECRETS + _cmds(cmds + READS) + ["--image-opts", qcow2_spec("t.qcow2")], q, o)
    assert (q / "t.qcow2").read_bytes() == (o / "t.qcow2").read_bytes()
    both("img", ["map"] + SECRETS + ["--output=json", "--image-opts", qcow2_spec("t.qcow2")],
         q, o)
    both("img", ["convert"] + SECRETS + ["-O", "qcow2", "-o", "encrypt.format=aes,"
                           "encrypt.key-secret=sec1", "--image-opts", qcow2_spec("t.qcow2"),
                           "c.qcow2"], q, o)
    assert (q / "c.qcow2").read_bytes() == (o / "c.qcow2").read_bytes()


# -------------------------------------------------------------- standalone luks
@pytest.mark.parametrize("combo", COMBOS[:3], ids=lambda c: "-".join(str(p) for p in c if p))
def test_luks_format_interop(tmp_path: Path, combo) -> None:
    q, o = tmp_path / "q", tmp_path / "o"
    q.mkdir(), o.mkdir()
    create = ["create", "-f", "luks"] + SECRETS + ["-o", luks_opts(combo, ""), "t.luks", "1M"]
    qout, qrc = qemu_retry("img", create, q)
    oout, orc = run_ours("img", create, o)
    assert (oout, orc) == (qout, qrc) and qrc == 0
    assert_same_but_random(q / "t.luks", o / "t.luks", qcow2=False)
    w = SECRETS + _cmds(WRITES[:2] + ["write -P 0x33 300k 700k"]) + \
        ["--image-opts", luks_spec("t.luks")]
    assert run_qemu("io", w, q)[1] == 0 and run_ours("io", w, o)[1] == 0
    shutil.copy(q / "t.luks", o / "x.luks")
    shutil.copy(o / "t.luks", q / "x.luks")
    r = SECRETS + _cmds(["read -P 0x11 0 3k", "read -P 0x22 70k 9k", "read -P 0x33 300k 700k"]) \
        + ["--image-opts", luks_spec("x.luks")]
    rq, ro = run_qemu("io", r, q), run_ours("io", r, o)
    assert "Pattern verification failed" not in rq[0] + ro[0]
    assert mask(ro[0]) == mask(rq[0]) and ro[1] == rq[1] == 0
    for name in ("t.luks", "x.luks"):
        both("img", ["info", name], q, q)
        both("img", ["info", "--output=json", name], q, q)


# ------------------------------------------------------------------ legacy AES
def test_legacy_aes(tmp_path: Path) -> None:
    """qcow AES is deterministic: creation and writes are byte-identical."""
    q, o = tmp_path / "q", tmp_path / "o"
    q.mkdir(), o.mkdir()
    for args in (["create", "-f", "qcow2", "-o", "encryption=on", "a.qcow2", "1M"],
                 ["create", "-f", "qcow2"] + SECRETS + ["-o", "encryption=on,"
                  "encrypt.key-secret=sec0,cluster_size=4k", "a.qcow2", "1M"],
                 ["create", "-f", "qcow2"] + SECRETS + ["-o", "encrypt.format=aes,"
                  "encrypt.key-secret=sec1,compat=0.10", "b.qcow2", "1M"]):
        both("img", args, q, o)
    for name, secret in (("a.qcow2", "sec0"), ("b.qcow2", "sec1")):
        assert (q / name).read_bytes() == (o / name).read_bytes()
        both("io", SECRETS + _cmds(WRITES + READS) + ["--image-opts",
             qcow2_spec(name, secret)], q, o)
        assert (q / name).read_bytes() == (o / name).read_bytes()
        for args in (["info", name], ["info", "--output=json", name], ["check", name],
                     ["check"] + SECRETS + ["--image-opts", qcow2_spec(name, secret)]):
            both("img", args, q, o)
    # QEMU-written data read by the emulator with a wrong and the right key
    both("io", SECRETS + _cmds(["read -P 0x11 0 3k"]) + ["--image-opts",
         qcow2_spec("a.qcow2", "sec1")], q, o)


# ---------------------------------------------------------------------- amend
def test_amend_keyslots(tmp_path: Path) -> None:
    q, o = tmp_path / "q", tmp_path / "o"
    q.mkdir(), o.mkdir()
    qemu_retry("img", ["create", "-f", "qcow2"] + SECRETS +
               ["-o", luks_opts(COMBOS[0]), "t.qcow2", "1M"], q)
    qemu_retry("img", ["create", "-f", "luks"] + SECRETS +
               ["-o", luks_opts(COMBOS[0], ""), "t.luks", "1M"], q)
    shutil.copy(q / "t.qcow2", o / "t.qcow2")
    shutil.copy(q / "t.luks", o / "t.luks")
    for spec, pre in ((qcow2_spec("t.qcow2"), "encrypt."), (luks_spec("t.luks"), "")):
        steps = [
            "keyslot=1", "state=foo", "state=active", "state=active,keyslot=9",
            "state=active,new-secret=sec1,old-secret=sec0", "state=active,new-secret=nope",
            "state=active,new-secret=sec1,iter-time=10,keyslot=3",
            "state=active,new-secret=sec1,keyslot=3", "state=inactive,keyslot=5",
            "state=inactive,keyslot=3,iter-time=9", "state=inactive",
            "state=inactive,old-secret=sec0,keyslot=3", "state=inactive,old-secret=sec1",
            "state=inactive,keyslot=0", "state=active,new-secret=sec1,iter-time=10",
            "state=inactive,keyslot=5,iter-time=10", "state=inactive,keyslot=0",
        ]
        for step in steps:
            opts = ",".join(pre + kv for kv in step.split(","))
            both("img", ["amend"] + SECRETS + ["-o", opts, "--image-opts", spec], q, o)
        # forced erase of the last key slot, both tools from the same state
        force = ["amend"] + SECRETS + ["--force", "-o", f"{pre}state=inactive,{pre}keyslot=1",
                                       "--image-opts", spec]
        both("img", force, q, o)
    for name in ("t.qcow2", "t.luks"):
        both("img", ["info", name], q, q)
        both("img", ["info", name], o, o)
    # keys added by one tool open the image with the other
    qemu_retry("img", ["create", "-f", "luks"] + SECRETS + ["-o", luks_opts(COMBOS[0], ""),
                                                            "n.luks", "1M"], q)
    shutil.copy(q / "n.luks", o / "n.luks")
    add = ["amend"] + SECRETS + ["-o", "state=active,new-secret=sec1,iter-time=10",
                                 "--image-opts", luks_spec("n.luks")]
    run_ours("img", add, o)
    shutil.copy(o / "n.luks", q / "m.luks")
    read = SECRETS + _cmds(["read -P 0 0 512"]) + ["--image-opts", luks_spec("m.luks", "sec1")]
    assert "Invalid password" not in run_qemu("io", read, q)[0]
    erase = ["amend"] + SECRETS + ["-o", "state=inactive,old-secret=sec0",
                                   "--image-opts", luks_spec("m.luks", "sec1")]
    assert run_qemu("img", erase, q)[1] == 0
    shutil.copy(q / "m.luks", o / "m.luks")
    for d in (q, o):
        for secret in ("sec0", "sec1"):
            both("io", SECRETS + _cmds(["read 0 512"]) + ["--image-opts",
                 luks_spec("m.luks", secret)], d, d)


# ------------------------------------------------------ keys, secrets, errors
@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("enc")
    qemu_retry("img", ["create", "-f", "qcow2"] + SECRETS +
               ["-o", luks_opts(COMBOS[0]), "l.qcow2", "1M"], d)
    qemu_retry("img", ["create", "-f", "luks"] + SECRETS +
               ["-o", luks_opts(COMBOS[0], ""), "l.luks", "1M"], d)
    run_qemu("img", ["create", "-f", "qcow2"] + SECRETS +
             ["-o", "encryption=on,encrypt.key-secret=sec0", "a.qcow2", "1M"], d)
    (d / "pw").write_bytes(b"hunter2")
    (d / "pw64").write_bytes(b"aHVudGVyMg==")
    return d


KEY_CASES = [
    ("io", ["-c", "read 0 4k", "l.qcow2"]),
    ("io", ["-c", "read 0 4k", "a.qcow2"]),
    ("io", ["-c", "read 0 4k", "l.luks"]),
    ("io", ["-c", "read 0 4k", "-f", "luks", "l.luks"]),
    ("io", SECRETS + ["-c", "read 0 4k", "--image-opts", qcow2_spec("l.qcow2", "sec1")]),
    ("io", SECRETS + ["-c", "read 0 4k", "--image-opts", qcow2_spec("l.qcow2", "nope")]),
    ("io", SECRETS + ["-c", "read 0 4k", "--image-opts", luks_spec("l.luks", "sec1")]),
    ("io", SECRETS + ["-c", "read 0 4k", "--image-opts",
                      qcow2_spec("l.qcow2") + ",encrypt.format=aes"]),
    ("io", SECRETS + ["-c", "read 0 4k", "--image-opts",
                      qcow2_spec("a.qcow2") + ",encrypt.format=luks"]),
    ("io", ["--object", "secret,id=k,file=pw", "-c", "read -P 0 0 4k", "--image-opts",
            qcow2_spec("l.qcow2", "k")]),
    ("io", ["--object", "secret,id=k,file=pw64,format=base64", "-c", "read 0 4k",
            "--image-opts", luks_spec("l.luks", "k")]),
    ("io", SECRETS + ["-c", "read 0 4k", "json:{\"driver\": \"qcow2\", \"file\": {\"driver\":"
                      " \"file\", \"filename\": \"l.qcow2\"}, \"encrypt.key-secret\": \"sec0\"}"]),
    ("img", ["info", "l.qcow2"]),
    ("img", ["info"] + SECRETS + ["--image-opts", qcow2_spec("l.qcow2")]),
    ("img", ["info", "--output=json"] + SECRETS + ["--image-opts", luks_spec("l.luks")]),
    ("img", ["info"] + SECRETS + ["--image-opts", qcow2_spec("a.qcow2") + ",encrypt.format=aes"]),
    ("img", ["info", "--output=json", "l.qcow2"]),
    ("img", ["info", "a.qcow2"]),
    ("img", ["check", "l.qcow2"]),
    ("img", ["check", "a.qcow2"]),
    ("img", ["map", "l.luks"]),
    ("img", ["compare", "l.qcow2", "a.qcow2"]),
    ("img", ["compare"] + SECRETS + ["--image-opts", qcow2_spec("l.qcow2"),
                       qcow2_spec("a.qcow2")]),
    ("img", ["amend", "-o", "encrypt.state=active,encrypt.new-secret=sec1", "l.qcow2"]),
    ("img", ["amend"] + SECRETS + ["-o", "encrypt.state=active,encrypt.new-secret=sec1",
                       "--image-opts", qcow2_spec("a.qcow2")]),
]


@pytest.mark.parametrize("tool,args", KEY_CASES, ids=range(len(KEY_CASES)))
def test_key_messages(images: Path, tool: str, args: List[str]) -> None:
    """Wrong, missing and mismatching keys give QEMU's messages and exit codes."""
    both(tool, args, images, images)


OBJECT_CASES = [
    "secret,id=s", "foo,id=x", "secret,data=abc", "secret,id=0bad,data=abc",
    "secret,id=s,data=abc,file=pw", "secret,id=s,data=abc,bogus=1",
    "secret,id=s,data=abc,format=hex", "secret,id=s,data", "secret,id=s,file=/nonexistent",
    "secret,id=s,data=!!!,format=base64", "secret,id=s,data=a,keyid=s", "id=s,data=a",
    "secret,id=s,data=a,loaded=on", "help", "secret,help",
]


@pytest.mark.parametrize("tool", ["img", "io"])
@pytest.mark.parametrize("obj", OBJECT_CASES)
def test_object_option(images: Path, tool: str, obj: str) -> None:
    args = ["--object", obj]
    args = (["info"] + args + ["l.luks"]) if tool == "img" else (args + ["-c", "read 0 1",
                                                                          "l.luks"])
    both(tool, args, images, images)


def test_object_duplicate_id(images: Path) -> None:
    both("img", ["info"] + SECRETS + ["--object", "secret,id=sec0,data=x", "l.luks"],
         images, images)


CREATE_ERRORS = [
    ("qcow2", "encrypt.key-secret=sec0"),
    ("qcow2", "encryption=on,encrypt.format=luks,encrypt.key-secret=sec0"),
    ("qcow2", "encrypt.format=foo"),
    ("qcow2", "encrypt.format=aes,encrypt.key-secret=sec0,encrypt.cipher-alg=aes-128"),
    ("qcow2", "encrypt.format=luks"),
    ("qcow2", "encrypt.format=luks,encrypt.key-secret=nope"),
    ("qcow2", "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.cipher-alg=foo"),
    ("qcow2", "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=abc"),
    ("qcow2", "encryption=on"),
    ("luks", "key-secret=sec0,cipher-alg=foo"),
    ("luks", "key-secret=sec0,cipher-mode=foo"),
    ("luks", "key-secret=sec0,hash-alg=foo"),
    ("luks", "key-secret=sec0,ivgen-alg=foo"),
    ("luks", "key-secret=sec0,cipher-alg=cast5-128,cipher-mode=xts"),
    ("luks", "key-secret=sec0,cipher-alg=des"),
    ("luks", "key-secret=sec0,cipher-alg=aes-128,ivgen-alg=essiv,ivgen-hash-alg=sha1"),
    ("luks", "key-secret=sec0,cipher-alg=cast5-128,cipher-mode=cbc,ivgen-alg=essiv"),
    ("luks", "key-secret=nope"),
    ("luks", "cipher-alg=aes-128"),
    ("luks", "help"),
]


@pytest.mark.parametrize("fmt,opts", CREATE_ERRORS)
def test_create_errors(tmp_path: Path, fmt: str, opts: str) -> None:
    q, o = tmp_path / "q", tmp_path / "o"
    q.mkdir(), o.mkdir()
    both("img", ["create", "-f", fmt] + SECRETS + ["-o", opts, "x.img", "1M"], q, o)
    assert sorted(p.name for p in q.iterdir()) == sorted(p.name for p in o.iterdir())


@pytest.mark.parametrize("opts", ["encrypt.format=luks,encrypt.key-secret=sec0,"
                                  "encrypt.iter-time=10",
                                  "encrypt.format=luks,encrypt.key-secret=sec0,"
                                  "encrypt.iter-time=10,encrypt.cipher-alg=aes-128,"
                                  "cluster_size=4k,extended_l2=on",
                                  "encrypt.format=luks", "encrypt.format=aes"])
def test_measure(tmp_path: Path, opts: str) -> None:
    args = ["measure"] + SECRETS + ["-O", "qcow2", "-o", opts, "--size", "10M"]
    qout, qrc = qemu_retry("img", args, tmp_path)
    oout, orc = run_ours("img", args, tmp_path)
    assert (oout, orc) == (qout, qrc)


@pytest.mark.parametrize("fmt,opts", [
    ("luks", "key-secret=sec0,iter-time=10"),
    ("qcow2", "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10,"
              "preallocation=metadata,cluster_size=16k"),
    ("qcow2", "encrypt.format=aes,encrypt.key-secret=sec0,preallocation=metadata"),
])
def test_convert_to_encrypted(tmp_path: Path, fmt: str, opts: str) -> None:
    """convert opens the new image with its key-secret; an encrypted target has no
    zero init (luks; qcow2 with preallocated L2 tables), so zeroes are written."""
    q, o = tmp_path / "q", tmp_path / "o"
    q.mkdir(), o.mkdir()
    for d in (q, o):
        run_qemu("img", ["create", "-f", "raw", "src.raw", "1M"], d)
        run_qemu("io", ["-f", "raw", "-c", "write -P 5 0 100k", "-c", "write -P 6 900k 4k",
                        "src.raw"], d)
    args = ["convert"] + SECRETS + ["-O", fmt, "-o", opts, "src.raw", "dst.img"]
    qout, qrc = qemu_retry("img", args, q)
    assert run_ours("img", args, o) == (qout, qrc)
    spec = luks_spec("dst.img") if fmt == "luks" else qcow2_spec("dst.img")
    for d in (q, o):
        both("img", ["compare"] + SECRETS + ["--image-opts", "driver=raw,file.filename=src.raw",
                                             spec], d, d)


#: (offset in the LUKS header, bytes) pokes and what they break
HEADER_POKES = {
    "magic": (0, b"LUKX"), "version": (6, b"\x00\x02"),
    "cipher-name-unterminated": (8, b"a" * 32), "cipher-name": (8, b"blowfish\0"),
    "cipher-mode-format": (40, b"xts\0"), "cipher-mode": (40, b"foo-plain64\0"),
    "ivgen": (40, b"xts-bogus\0"), "ivgen-hash": (40, b"xts-plain64:sha999\0"),
    "essiv-no-hash": (40, b"xts-essiv\0"), "hash": (72, b"sha999\0"),
    "payload-overlap": (104, b"\0\0\0\x01"), "key-len": (108, b"\0\0\0\x07"),
    "mk-iters": (164, b"\0\0\0\0"), "slot-stripes": (208 + 44, b"\0\0\x0f\x9f"),
    "slot-state": (208, b"\0\0\0\x01"), "slot-iters": (208 + 4, b"\0\0\0\0"),
    "slot-header-overlap": (208 + 40, b"\0\0\0\x01"),
    "slot-payload-overlap": (208 + 48 * 7 + 40, b"\0\0\x10\0"),
    "slots-overlap": (208 + 48 + 40, b"\0\0\0\x08"),
}


@pytest.mark.parametrize("what", list(HEADER_POKES))
def test_luks_header_checks(images: Path, tmp_path: Path, what: str) -> None:
    """A damaged LUKS header: the same first error, opened without I/O (info) and with
    the key (qemu-io), standalone and inside qcow2."""
    off, data = HEADER_POKES[what]
    for name, spec_of in (("l.luks", luks_spec), ("l.qcow2", qcow2_spec)):
        buf = bytearray((images / name).read_bytes())
        base = _qcow2_luks_base(buf) if name.endswith("qcow2") else 0
        buf[base + off:base + off + len(data)] = data
        (tmp_path / name).write_bytes(bytes(buf))
        both("img", ["info", name], tmp_path, tmp_path)
        both("io", SECRETS + ["-c", "read 0 512", "--image-opts", spec_of(name)],
             tmp_path, tmp_path)


def test_create_over_encrypted_backing_needs_no_key(tmp_path: Path) -> None:
    """bdrv_img_create opens the backing file with BDRV_O_NO_IO: an encrypted
    backing file gives its size without its key secret."""
    qdir, odir = tmp_path / "q", tmp_path / "o"
    for d in (qdir, odir):
        d.mkdir()
    opts = "encrypt.format=luks,encrypt.key-secret=sec0,encrypt.iter-time=10"
    out_q, rc_q = qemu_retry("img", ["create", "-q", "-f", "qcow2", *SECRETS, "-o", opts,
                                          "b.qcow2", "1M"], qdir)
    assert rc_q == 0, out_q
    shutil.copy(qdir / "b.qcow2", odir / "b.qcow2")
    for args in (["create", "-f", "qcow2", "-b", "b.qcow2", "-F", "qcow2", "o.qcow2"],
                 ["create", "-f", "qcow2", "-b", "b.qcow2", "-F", "qcow2", "p.qcow2", "2M"]):
        out, rc = both("img", args, qdir, odir)
        assert rc == 0, out
    assert (qdir / "o.qcow2").read_bytes() == (odir / "o.qcow2").read_bytes()
