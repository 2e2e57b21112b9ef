"""A small D-Bus client (and the marshalling a test peer needs): enough to ask systemd for its units.

The wire format is the D-Bus specification's: a 16-byte fixed header, header fields ``a(yv)``, a body
marshalled by signature with natural alignment; authentication is ``EXTERNAL`` (the peer reads our uid
from the socket). Only what the systemd collector uses is here: method calls and their replies, over a
``unix:path=`` or ``unix:abstract=`` address. Why not a library: dbus-python and jeepney would be the
agent's first compiled or extra dependency for one collector, and the agent must stay within
node_exporter's memory.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Sequence
from typing import Any

METHOD_CALL, METHOD_RETURN, ERROR, SIGNAL = 1, 2, 3, 4
PATH, INTERFACE, MEMBER, ERROR_NAME, REPLY_SERIAL, DESTINATION, SENDER, SIGNATURE = range(1, 9)
_FIELD_SIG = {PATH: "o", INTERFACE: "s", MEMBER: "s", ERROR_NAME: "s", REPLY_SERIAL: "u", DESTINATION: "s",
              SENDER: "s", SIGNATURE: "g"}
_ALIGN = {"y": 1, "b": 4, "n": 2, "q": 2, "i": 4, "u": 4, "x": 8, "t": 8, "d": 8, "s": 4, "o": 4, "g": 1, "a": 4,
          "(": 8, "{": 8, "v": 1, "h": 4}
_FIXED = {"y": "B", "n": "h", "q": "H", "i": "i", "u": "I", "x": "q", "t": "Q", "d": "d", "h": "I"}


class DBusError(OSError):
    """The peer answered with an error, or the connection failed; ``name`` is the D-Bus error name."""

    def __init__(self, message: str, name: str = "") -> None:
        super().__init__(message)
        self.name = name


def split(signature: str) -> list[str]:
    """A signature's complete types: ``"sa{sv}(ii)"`` -> ``["s", "a{sv}", "(ii)"]``."""
    out, i = [], 0
    while i < len(signature):
        end = _complete(signature, i)
        out.append(signature[i:end])
        i = end
    return out


def _complete(sig: str, i: int) -> int:
    c = sig[i]
    if c == "a":
        return _complete(sig, i + 1)
    if c in "({":
        close, depth, j = ")" if c == "(" else "}", 0, i
        while True:
            if sig[j] in "({":
                depth += 1
            elif sig[j] in ")}":
                depth -= 1
                if depth == 0:
                    if sig[j] != close:
                        raise ValueError(f"bad D-Bus signature {sig!r}")
                    return j + 1
            j += 1
    if c not in _ALIGN:
        raise ValueError(f"unknown D-Bus type {c!r} in {sig!r}")
    return i + 1


class Writer:
    def __init__(self, endian: str = "<") -> None:
        self.buf = bytearray()
        self.endian = endian

    def pad(self, n: int) -> None:
        self.buf += b"\0" * (-len(self.buf) % n)

    def write(self, sig: str, value: Any) -> None:
        c = sig[0]
        self.pad(_ALIGN[c])
        if c in _FIXED:
            self.buf += struct.pack(self.endian + _FIXED[c], value)
        elif c == "b":
            self.buf += struct.pack(self.endian + "I", 1 if value else 0)
        elif c in "so":
            data = value.encode()
            self.buf += struct.pack(self.endian + "I", len(data)) + data + b"\0"
        elif c == "g":
            data = value.encode()
            self.buf += bytes([len(data)]) + data + b"\0"
        elif c == "v":
            inner, inner_value = value
            self.write("g", inner)
            self.write(inner, inner_value)
        elif c == "a":
            at = len(self.buf)
            self.buf += b"\0\0\0\0"
            self.pad(_ALIGN[sig[1]])
            start = len(self.buf)
            items = value.items() if sig[1] == "{" else value
            for item in items:
                self.write(sig[1:], item)
            struct.pack_into(self.endian + "I", self.buf, at, len(self.buf) - start)
        elif c in "({":
            for inner, item in zip(split(sig[1:-1]), value, strict=True):
                self.write(inner, item)


class Reader:
    def __init__(self, data: bytes, pos: int = 0, endian: str = "<") -> None:
        self.data, self.pos, self.endian = data, pos, endian

    def align(self, n: int) -> None:
        self.pos += -self.pos % n

    def read(self, sig: str) -> Any:
        c = sig[0]
        self.align(_ALIGN[c])
        if c in _FIXED:
            fmt = self.endian + _FIXED[c]
            (value,) = struct.unpack_from(fmt, self.data, self.pos)
            self.pos += struct.calcsize(fmt)
            return value
        if c == "b":
            return self.read("u") != 0
        if c in "so":
            n = self.read("u")
            text = self.data[self.pos : self.pos + n].decode()
            self.pos += n + 1
            return text
        if c == "g":
            n = self.data[self.pos]
            text = self.data[self.pos + 1 : self.pos + 1 + n].decode()
            self.pos += n + 2
            return text
        if c == "v":
            inner = self.read("g")
            return self.read(inner)
        if c == "a":
            n = self.read("u")
            self.align(_ALIGN[sig[1]])
            end = self.pos + n
            items = []
            while self.pos < end:
                items.append(self.read(sig[1:]))
            return dict(items) if sig[1] == "{" else items
        if c in "({":
            return tuple(self.read(inner) for inner in split(sig[1:-1]))
        raise ValueError(f"unknown D-Bus type {c!r}")


def encode(msg_type: int, serial: int, fields: dict[int, Any], signature: str = "", body: Sequence[Any] = (),
           flags: int = 0) -> bytes:
    """One message, little-endian."""
    payload = Writer()
    for sig, value in zip(split(signature), body, strict=True):
        payload.write(sig, value)
    if signature:
        fields = {**fields, SIGNATURE: signature}
    head = Writer()
    head.buf += struct.pack("<cBBBII", b"l", msg_type, flags, 1, len(payload.buf), serial)
    head.write("a(yv)", [(code, (_FIELD_SIG[code], value)) for code, value in sorted(fields.items())])
    head.pad(8)
    return bytes(head.buf) + bytes(payload.buf)


def decode(data: bytes) -> tuple[int, int, dict[int, Any], list[Any], int]:
    """(type, serial, fields, body values, bytes used) of the message at the start of ``data``; raises
    IndexError (struct.error) while ``data`` is still incomplete."""
    endian = "<" if data[0:1] == b"l" else ">"
    msg_type, _flags, _version, body_len, serial, fields_len = struct.unpack_from(endian + "BBBIII", data, 1)
    header_end = 16 + fields_len + (-(16 + fields_len) % 8)
    if len(data) < header_end + body_len:
        raise IndexError("incomplete message")
    fields = dict(Reader(data, 12, endian).read("a(yv)"))
    body_reader = Reader(data[header_end : header_end + body_len], 0, endian)
    body = [body_reader.read(sig) for sig in split(fields.get(SIGNATURE, ""))]
    return msg_type, serial, fields, body, header_end + body_len


def _address(address: str) -> str | bytes:
    for part in address.split(";"):
        kind, _, rest = part.partition(":")
        params = dict(p.split("=", 1) for p in rest.split(",") if "=" in p)
        if kind == "unix" and "path" in params:
            return params["path"]
        if kind == "unix" and "abstract" in params:
            return b"\0" + params["abstract"].encode()
    raise DBusError(f"unsupported D-Bus address {address!r} (only unix:path= and unix:abstract=)")


class Connection:
    """A blocking connection; ``bus=True`` for a message bus (sends ``Hello``), False for a peer socket
    such as systemd's private one."""

    def __init__(self, address: str, timeout: float = 10.0, bus: bool = True) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.serial = 0
        self.pending = b""
        try:
            self.sock.connect(_address(address))
            self.sock.sendall(b"\0AUTH EXTERNAL " + str(os.geteuid()).encode().hex().encode() + b"\r\n")
            line = self._line()
            if not line.startswith(b"OK "):
                raise DBusError(f"D-Bus authentication refused at {address}: {line.decode(errors='replace')}")
            self.sock.sendall(b"BEGIN\r\n")
            if bus:
                self.call("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "Hello")
        except BaseException:
            self.sock.close()
            raise

    def _line(self) -> bytes:
        while b"\r\n" not in self.pending:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise DBusError("D-Bus peer closed the connection during authentication")
            self.pending += chunk
        line, _, self.pending = self.pending.partition(b"\r\n")
        return line

    def call(self, destination: str, path: str, interface: str, member: str, signature: str = "",
             args: Sequence[Any] = ()) -> list[Any]:
        self.serial += 1
        fields = {PATH: path, INTERFACE: interface, MEMBER: member, DESTINATION: destination}
        self.sock.sendall(encode(METHOD_CALL, self.serial, fields, signature, args))
        while True:
            msg_type, _, reply_fields, body, _ = self.receive()
            if reply_fields.get(REPLY_SERIAL) != self.serial:
                continue  # a signal (NameAcquired) or another reply
            if msg_type == ERROR:
                name = reply_fields.get(ERROR_NAME, "")
                raise DBusError(f"{interface}.{member}: {name}: {body[0] if body else ''}", name)
            return body

    def receive(self) -> tuple[int, int, dict[int, Any], list[Any], int]:
        """The next message: (type, serial, header fields, body values, size)."""
        while True:
            if len(self.pending) >= 16:
                try:
                    result = decode(self.pending)
                except (IndexError, struct.error):
                    result = None
                if result is not None:
                    self.pending = self.pending[result[4] :]
                    return result
            chunk = self.sock.recv(65536)
            if not chunk:
                raise DBusError("D-Bus peer closed the connection")
            self.pending += chunk

    def send(self, message: bytes) -> None:
        self.sock.sendall(message)

    def get_property(self, destination: str, path: str, interface: str, name: str) -> Any:
        return self.call(destination, path, "org.freedesktop.DBus.Properties", "Get", "ss", (interface, name))[0]

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
