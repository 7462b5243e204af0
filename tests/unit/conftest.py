"""Keeps the unit tier honest: it must run with pip alone, so a unit test that opens a TCP
connection, starts a process or opens a chdb store fails here instead of quietly needing a
broker, a ClickHouse server or a tool on PATH. Move such a test to tests/integration/ or
tests/e2e/ (the tiers are described in tests/conftest.py)."""

from __future__ import annotations

import socket
import subprocess
from collections.abc import Iterator
from typing import Any, NoReturn

import pytest

from services.core import store_chdb


class OutsideTheUnitTier(AssertionError):
    """A unit test reached for something only the integration and e2e tiers may use."""


@pytest.fixture(autouse=True)
def _pure(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[None]:
    def refuse(what: str) -> NoReturn:
        raise OutsideTheUnitTier(
            f"{request.node.nodeid} {what}: unit tests run with pip alone; move it to "
            "tests/integration/ (broker, ClickHouse, chdb) or tests/e2e/ (processes, browser)")

    connect, connect_ex = socket.socket.connect, socket.socket.connect_ex

    def guarded_connect(self: socket.socket, address: Any) -> None:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            refuse(f"opened a TCP connection to {address!r}")
        connect(self, address)

    def guarded_connect_ex(self: socket.socket, address: Any) -> int:
        if self.family in (socket.AF_INET, socket.AF_INET6):
            refuse(f"opened a TCP connection to {address!r}")
        return connect_ex(self, address)

    def no_process(self: subprocess.Popen[Any], args: Any, *_: Any, **__: Any) -> None:
        refuse(f"started a process {args!r}")

    def no_chdb(self: store_chdb.ChdbStore, url: Any) -> None:
        refuse(f"opened a chdb store at {url}")

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    monkeypatch.setattr(socket.socket, "connect_ex", guarded_connect_ex)
    monkeypatch.setattr(subprocess.Popen, "__init__", no_process)
    monkeypatch.setattr(store_chdb.ChdbStore, "__init__", no_chdb)
    yield
