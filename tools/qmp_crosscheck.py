"""Cross-check qcowlab-qsd against qemu-storage-daemon over QMP.

Both daemons start with the same command line (a QMP socket, a --blockdev
node) in scratch directories holding the same freshly created images; a
``qemu.qmp.QMPClient`` on each side sends the same messages (from before the
capabilities negotiation on).  The greetings, replies and events are compared
after filtering (timestamps, automatic node names, the scratch directory,
allocated file sizes), then the image files byte for byte.

    python -m tools.qmp_crosscheck [--qsd PROG] [--keep] [-v]

Exit status 0 when everything matches, 1 otherwise.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from harness.imagediff import file_difference  # noqa: E402

JOB_COMMANDS = ("blockdev-create", "x-blockdev-amend")


def sequence(d: str) -> list[dict[str, Any]]:
    """The messages both daemons get; ``d`` is the scratch directory."""
    disk = {"driver": "qcow2", "node-name": "disk",
            "file": {"driver": "file", "filename": f"{d}/disk.qcow2"}}
    return [
        {"execute": "query-version", "id": "early"},
        {"execute": "qmp_capabilities", "arguments": {"enable": ["oob"]}, "id": "1"},
        {"execute": "qmp_capabilities", "id": "2"},
        {"execute": "query-version", "id": "3"},
        {"execute": "no-such-command", "id": "x"},
        {"execute": 5},
        {"exec": "query-version"},
        {"execute": "query-version", "arguments": []},
        {"execute": "query-version", "arguments": {"extra": 1}},
        {"execute": "blockdev-add", "arguments": {"node-name": "n"}},
        {"execute": "blockdev-add", "arguments": {**disk, "discard": "maybe"}},
        {"execute": "blockdev-add", "arguments": {**disk, "file": 1}},
        {"execute": "blockdev-add", "arguments": disk},
        {"execute": "blockdev-add", "arguments": disk},
        {"execute": "query-named-block-nodes", "arguments": {"flat": True}},
        {"execute": "block_resize", "arguments": {"node-name": "disk", "size": 1000}},
        {"execute": "block_resize", "arguments": {"node-name": "disk", "size": 4194304}},
        {"execute": "block-dirty-bitmap-add", "arguments": {"node": "disk", "name": "b0"}},
        {"execute": "block-dirty-bitmap-add", "arguments": {"node": "disk", "name": "b0"}},
        {"execute": "block-dirty-bitmap-add",
         "arguments": {"node": "disk", "name": "p0", "persistent": True, "granularity": 16384}},
        {"execute": "block-dirty-bitmap-clear", "arguments": {"node": "disk", "name": "b0"}},
        {"execute": "block-dirty-bitmap-remove", "arguments": {"node": "disk", "name": "b0"}},
        {"execute": "block-dirty-bitmap-remove", "arguments": {"node": "disk", "name": "b0"}},
        {"execute": "blockdev-snapshot-internal-sync",
         "arguments": {"device": "disk", "name": "s0"}},
        {"execute": "blockdev-snapshot-internal-sync",
         "arguments": {"device": "disk", "name": "s0"}},
        {"execute": "x-blockdev-amend",
         "arguments": {"job-id": "am", "node-name": "disk", "options": {"driver": "qcow2"}}},
        {"execute": "blockdev-del", "arguments": {"node-name": "disk"}},
        {"execute": "job-dismiss", "arguments": {"id": "am"}},
        {"execute": "blockdev-del", "arguments": {"node-name": "disk"}},
        {"execute": "blockdev-create", "arguments": {"job-id": "f", "options": {
            "driver": "file", "filename": f"{d}/new.qcow2", "size": 0}}},
        {"execute": "blockdev-add",
         "arguments": {"driver": "file", "node-name": "proto", "filename": f"{d}/new.qcow2"}},
        {"execute": "blockdev-create", "arguments": {"job-id": "bad", "options": {
            "driver": "qcow2", "file": "proto", "size": 1048576, "cluster-size": 4096,
            "extended-l2": True}}},
        {"execute": "blockdev-create", "arguments": {"job-id": "c", "options": {
            "driver": "qcow2", "file": "proto", "size": 2097152, "extended-l2": True,
            "backing-file": f"{d}/base.raw", "backing-fmt": "raw"}}},
        {"execute": "query-jobs"},
        {"execute": "job-dismiss", "arguments": {"id": "bad"}},
        {"execute": "job-dismiss", "arguments": {"id": "bad"}},
        {"execute": "blockdev-add", "arguments": {
            "driver": "qcow2", "node-name": "ovl", "file": "proto",
            "backing": {"driver": "raw", "read-only": True,
                        "file": {"driver": "file", "filename": f"{d}/base.raw"}}}},
        {"execute": "blockdev-add", "arguments": {
            "driver": "qcow2", "node-name": "ovl", "file": "proto"}},
        {"execute": "query-named-block-nodes"},
        {"execute": "blockdev-del", "arguments": {"node-name": "proto"}},
        {"execute": "block_resize", "arguments": {"node-name": "ovl", "size": 3145728}},
        {"execute": "blockdev-del", "arguments": {"node-name": "ovl"}},
        {"execute": "blockdev-del", "arguments": {"node-name": "proto"}},
        {"execute": "query-jobs"},
        {"execute": "quit"},
    ]


def filter_message(msg: Any, scratch: str) -> str:
    """One message as text, without what may differ between two runs."""
    text = json.dumps(msg if isinstance(msg, (dict, list)) else json.loads(bytes(msg)))
    text = text.replace(scratch, "TEST_DIR")
    text = re.sub(r'("(micro)?seconds": )[0-9]+', r"\1TIMESTAMP", text)
    text = re.sub(r'"#block[0-9]+"', '"#blockNNN"', text)
    return re.sub(r'"actual-size": [0-9]+', '"actual-size": SIZE', text)


async def _session(argv: list[str], scratch: str) -> list[str]:
    """Start the daemon, replay the sequence; the filtered transcript."""
    from qemu.qmp import EventListener, QMPClient
    sock = os.path.join(scratch, "qmp.sock")
    argv = argv + ["--chardev", f"socket,id=m0,path={sock},server=on,wait=off",
                   "--monitor", "chardev=m0",
                   "--blockdev", json.dumps({"driver": "file", "node-name": "base-file",
                                             "filename": f"{scratch}/base.raw"})]
    log = open(os.path.join(scratch, "daemon.log"), "w")
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
    out: list[str] = []
    try:
        for _ in range(600):
            if os.path.exists(sock) or proc.poll() is not None:
                break
            await asyncio.sleep(0.05)
        client = QMPClient("crosscheck")
        client.negotiate = False  # the sequence negotiates itself, errors first
        listener = EventListener()
        client.register_listener(listener)
        await client.connect(sock)
        out.append("greeting " + filter_message(client.greeting._raw, scratch))
        for step in sequence(scratch):
            reply = await client._raw(step, assign_id=False)
            out.append("reply " + filter_message(reply, scratch))
            if step.get("execute") in JOB_COMMANDS and "return" in reply:
                job = step["arguments"]["job-id"]
                while True:
                    event = await asyncio.wait_for(listener.get(), 30)
                    out.append("event " + filter_message(event, scratch))
                    if event["data"] == {"status": "concluded", "id": job}:
                        break
            while not listener.empty():
                out.append("event " + filter_message(await listener.get(), scratch))
        try:
            await client.disconnect()
        except EOFError:  # the daemon closed the connection as it quit
            pass
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    return out


def _image_difference(root: str, fname: str) -> str:
    """How the two sides' copies of ``fname`` differ ('' if not at all); the
    backing file names stored in headers name each side's own directory."""
    ours = Path(root, "emul", fname)
    theirs = Path(root, "qemu", fname)
    data = ours.read_bytes().replace(f"{root}/emul/".encode(), f"{root}/qemu/".encode())
    with tempfile.NamedTemporaryFile(dir=root, suffix=fname) as tmp:
        tmp.write(data)
        tmp.flush()
        return file_difference(theirs, Path(tmp.name)) or ""


def _prepare(scratch: str) -> None:
    os.makedirs(scratch)
    for args in (["-f", "raw", f"{scratch}/base.raw", "4M"],
                 ["-f", "qcow2", "-o", "extended_l2=on", f"{scratch}/disk.qcow2", "1M"]):
        subprocess.run(["qemu-img", "create", "-q"] + args, check=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--qsd", default=shutil.which("qemu-storage-daemon") or "",
                    help="the real qemu-storage-daemon")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directories")
    ap.add_argument("-v", "--verbose", action="store_true", help="print both transcripts")
    args = ap.parse_args(argv)
    if not args.qsd:
        print("qemu-storage-daemon not found", file=sys.stderr)
        return 1
    root = tempfile.mkdtemp(prefix="qmp-crosscheck-")
    # equally long directory names: image headers hold the backing file's path
    sides = {"qemu": [args.qsd], "emul": [sys.executable, "-m", "emulator.qsd"]}
    transcripts = {}
    for name, prog in sides.items():
        scratch = os.path.join(root, name)
        _prepare(scratch)
        transcripts[name] = asyncio.run(_session(prog, scratch))
    qemu, ours = transcripts["qemu"], transcripts["emul"]
    diffs = [(i, a, b) for i, (a, b) in enumerate(zip(qemu, ours)) if a != b]
    if len(qemu) != len(ours):
        diffs.append((min(len(qemu), len(ours)), f"{len(qemu)} messages",
                      f"{len(ours)} messages"))
    for i, a, b in diffs:
        print(f"message {i}:\n  qemu:    {a}\n  qcowlab: {b}")
    if args.verbose:
        print("\n".join(qemu))
    images = 0
    for fname in sorted(os.listdir(os.path.join(root, "qemu"))):
        if fname.endswith((".raw", ".qcow2")):
            images += 1
            msg = _image_difference(root, fname)
            if msg:
                diffs.append((-1, fname, msg))
                print(f"{fname}: {msg}")
    kinds = {k: sum(1 for m in qemu if m.startswith(k + " ")) for k in ("reply", "event")}
    print(f"{len(sequence(''))} messages sent; compared {len(qemu)} received "
          f"({kinds['reply']} replies, {kinds['event']} events) and {images} image files: "
          f"{len(diffs)} differences")
    if args.keep or diffs:
        print(f"scratch kept in {root}")
    else:
        shutil.rmtree(root)
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
