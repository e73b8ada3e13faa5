"""The QMP monitors: sockets (or stdio), the greeting, negotiation, dispatch.

One select() loop serves every monitor.  A message is checked like QEMU's
qmp_dispatch (JSON object, ``execute`` string, ``arguments`` object, ``id``
echoed); before ``qmp_capabilities`` only that command exists.  Events go to
every negotiated connection; work a command defers (a job finishing) runs
once its reply is sent.
"""
from __future__ import annotations

import os
import select
import signal
import socket
from typing import Any, Optional

from emulator.qsd import protocol as proto
from emulator.qsd.cmdline import Chardev
from emulator.qsd.protocol import QmpError


class Connection:
    """One client of a monitor."""

    def __init__(self, rfd: int, wfd: int, sock: Optional[socket.socket] = None) -> None:
        self.rfd, self.wfd, self.sock = rfd, wfd, sock
        self.decoder = proto.StreamDecoder()
        self.negotiated = False

    def send(self, msg: dict[str, Any]) -> None:
        data = proto.encode(msg)
        try:
            while data:
                data = data[os.write(self.wfd, data):]
        except OSError:
            pass  # the client went away; its EOF closes the connection

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()


class Server:
    """Serves the monitors of ``chardevs`` for ``daemon`` until it quits."""

    def __init__(self, daemon: Any, chardevs: list[Chardev]) -> None:
        self.daemon = daemon
        self.listeners: list[socket.socket] = []
        self.conns: list[Connection] = []
        self.paths: list[str] = []
        for dev in chardevs:
            if dev.backend == "stdio":
                self._greet(Connection(0, 1))
                continue
            if os.path.exists(dev.path):
                os.unlink(dev.path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.bind(dev.path)
            sock.listen(1)
            self.listeners.append(sock)
            self.paths.append(dev.path)
        daemon.emit = self.broadcast
        signal.signal(signal.SIGTERM, lambda *_: daemon.request_quit())
        signal.signal(signal.SIGINT, lambda *_: daemon.request_quit())

    def _greet(self, conn: Connection) -> None:
        self.conns.append(conn)
        conn.send(proto.greeting())

    def broadcast(self, msg: dict[str, Any]) -> None:
        for conn in self.conns:
            if conn.negotiated:
                conn.send(msg)

    def run(self) -> None:
        while not self.daemon.quitting:
            fds: list[Any] = list(self.listeners) + [c.rfd for c in self.conns]
            try:
                ready, _, _ = select.select(fds, [], [])
            except InterruptedError:
                continue
            for item in ready:
                if isinstance(item, socket.socket):
                    sock, _ = item.accept()
                    self._greet(Connection(sock.fileno(), sock.fileno(), sock))
                    continue
                conn = next(c for c in self.conns if c.rfd == item)
                try:
                    data = os.read(conn.rfd, 65536)
                except OSError:
                    data = b""
                if not data:
                    self.conns.remove(conn)
                    conn.close()
                    if conn.sock is None:  # stdio closed: nothing left to serve
                        self.daemon.request_quit()
                    continue
                for msg in conn.decoder.feed(data):
                    self.handle(conn, msg)
                    if self.daemon.quitting:
                        break
        self.shutdown()

    def handle(self, conn: Connection, msg: Any) -> None:
        """Dispatch one message and send its reply (then run deferred work)."""
        has_id = isinstance(msg, dict) and "id" in msg
        msg_id = msg.get("id") if has_id else None
        try:
            if isinstance(msg, QmpError):
                raise msg
            name, args = _check_request(msg)
            if not conn.negotiated:
                if name != "qmp_capabilities":
                    raise QmpError("Expecting capabilities negotiation with "
                                   "'qmp_capabilities'", "CommandNotFound")
                self.daemon.negotiate(args)
                conn.negotiated = True
                value: Any = {}
            elif name == "qmp_capabilities":
                raise QmpError("Capabilities negotiation is already complete, command ignored",
                               "CommandNotFound")
            else:
                value = self.daemon.execute(name, args)
        except QmpError as err:
            self.daemon.deferred.clear()
            conn.send(proto.error(err, msg_id, has_id))
        else:
            conn.send(proto.reply(value, msg_id, has_id))
        self.daemon.run_deferred()

    def shutdown(self) -> None:
        self.daemon.close_all()
        for sock in self.listeners:
            sock.close()
        for path in self.paths:
            if os.path.exists(path):
                os.unlink(path)
        for conn in self.conns:
            conn.close()


def _check_request(msg: Any) -> tuple[str, dict[str, Any]]:
    """qmp_dispatch_check_obj: (command, arguments) or QEMU's error."""
    if not isinstance(msg, dict):
        raise QmpError("QMP input must be a JSON object")
    for key in proto.qdict_order(msg):
        value = msg[key]
        if key == "execute":
            if not isinstance(value, str):
                raise QmpError("QMP input member 'execute' must be a string")
        elif key == "arguments":
            if not isinstance(value, dict):
                raise QmpError("QMP input member 'arguments' must be an object")
        elif key != "id":
            raise QmpError(f"QMP input member '{key}' is unexpected")
    if "execute" not in msg:
        raise QmpError("QMP input lacks member 'execute'")
    return msg["execute"], dict(msg.get("arguments", {}))
