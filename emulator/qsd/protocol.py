"""QMP messages: the greeting, replies, errors and events as QEMU 7.2 encodes them."""
from __future__ import annotations

import json
import time
from typing import Any, Optional

#: query-version and the greeting report what the real binary reports
VERSION = {"qemu": {"major": 7, "minor": 2, "micro": 22},
           "package": "Debian 1:7.2+dfsg-7+deb12u18+b3"}
#: QDict's hash table size: QEMU writes an object's members bucket by bucket
_BUCKETS = 512


class QmpError(Exception):
    """A command failed: QEMU's error class and description."""

    def __init__(self, desc: str, cls: str = "GenericError") -> None:
        super().__init__(desc)
        self.desc = desc
        self.cls = cls


def _bucket(key: str) -> int:
    """The QDict bucket of ``key`` (the tdb hash QEMU uses)."""
    data = key.encode()
    value = (0x238F13AF * len(data)) & 0xFFFFFFFF
    for i, byte in enumerate(data):
        value = (value + (byte << (i * 5 % 24))) & 0xFFFFFFFF
    return ((1103515243 * value + 12345) & 0xFFFFFFFF) % _BUCKETS


def qdict_order(value: Any) -> Any:
    """``value`` with every object's members in the order QEMU serialises them:
    by hash bucket, the last inserted first within a bucket."""
    if isinstance(value, list):
        return [qdict_order(v) for v in value]
    if not isinstance(value, dict):
        return value
    keys = list(value)
    rank = {k: (_bucket(k), -i) for i, k in enumerate(keys)}
    return {k: qdict_order(value[k]) for k in sorted(keys, key=rank.__getitem__)}


def encode(msg: dict[str, Any]) -> bytes:
    """One message on the wire: QEMU's member order and separators, CRLF-terminated."""
    return json.dumps(qdict_order(msg)).encode() + b"\r\n"


def greeting() -> dict[str, Any]:
    return {"QMP": {"version": VERSION, "capabilities": ["oob"]}}


def reply(value: Any, msg_id: Any = None, has_id: bool = False) -> dict[str, Any]:
    """A success reply; QEMU puts the id after the return value."""
    out: dict[str, Any] = {"return": value}
    if has_id:
        out["id"] = msg_id
    return out


def error(err: QmpError, msg_id: Any = None, has_id: bool = False) -> dict[str, Any]:
    """An error reply; QEMU puts the id before the error."""
    out: dict[str, Any] = {}
    if has_id:
        out["id"] = msg_id
    out["error"] = {"class": err.cls, "desc": err.desc}
    return out


def event(name: str, data: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """An event stamped with the wall-clock time, as QEMU stamps them."""
    now = time.time()
    out: dict[str, Any] = {"timestamp": {"seconds": int(now),
                                         "microseconds": int((now % 1) * 1_000_000)},
                           "event": name}
    if data is not None:
        out["data"] = data
    return out


class StreamDecoder:
    """Splits the bytes a client sends into JSON values (no framing but JSON itself)."""

    def __init__(self) -> None:
        self._buf = ""
        self._decoder = json.JSONDecoder()

    def feed(self, data: bytes) -> list[Any]:
        """Values completed by ``data``; a syntax error yields a QmpError in their place."""
        self._buf += data.decode("utf-8", "replace")
        values: list[Any] = []
        while True:
            text = self._buf.lstrip()
            if not text:
                self._buf = ""
                return values
            try:
                value, end = self._decoder.raw_decode(text)
            except json.JSONDecodeError as exc:
                if exc.pos >= len(text) or "\n" not in text[exc.pos:]:
                    self._buf = text  # incomplete: wait for more
                    return values
                # a malformed value: drop it up to the end of the line
                self._buf = text[text.index("\n", exc.pos) + 1:]
                values.append(QmpError("JSON parse error, " + _json_reason(exc)))
                continue
            self._buf = text[end:]
            values.append(value)


def _json_reason(exc: json.JSONDecodeError) -> str:
    return "invalid keyword" if exc.msg.startswith("Expecting value") else exc.msg.lower()
