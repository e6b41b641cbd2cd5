"""Loaded by every Python subprocess the tests start (PYTHONPATH): refuse non-loopback connections.

Proves that ragkeep's API and worker processes reach nothing outside this machine:
model hubs, telemetry, spaCy/NLTK downloaders would all fail loudly here.
"""

from __future__ import annotations

import ipaddress
import os
import socket

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _allowed(address: object) -> bool:
    if not isinstance(address, tuple):  # AF_UNIX paths (PostgreSQL socket, etc.)
        return True
    host = str(address[0])
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _refuse(address: object) -> ConnectionRefusedError:
    # Libraries swallow connection errors (telemetry does), so every attempt is also logged.
    record = os.environ.get("RAGKEEP_NETGUARD_LOG")
    if record:
        with open(record, "a", encoding="utf-8") as fh:
            fh.write(f"{os.getpid()} {address!r}\n")
    return ConnectionRefusedError(f"ragkeep test network guard: connection to {address!r} refused")


def _guarded_connect(self: socket.socket, address: object) -> None:
    if not _allowed(address):
        raise _refuse(address)
    _real_connect(self, address)  # type: ignore[arg-type]


def _guarded_connect_ex(self: socket.socket, address: object) -> int:
    if not _allowed(address):
        raise _refuse(address)
    return _real_connect_ex(self, address)  # type: ignore[arg-type]


def install() -> None:
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]


install()
