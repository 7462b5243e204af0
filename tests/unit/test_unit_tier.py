"""The unit tier's guard (tests/unit/conftest.py) refuses what would make the tier need more
than pip; without these checks a broken guard would let the tier drift silently."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys

import pytest

from services.core.store import open_store
from tests.conftest import run
from tests.unit.conftest import OutsideTheUnitTier


def test_a_tcp_connection_is_refused() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock, \
            pytest.raises(OutsideTheUnitTier, match="TCP connection to"):
        sock.connect(("127.0.0.1", 9))


def test_a_process_is_refused() -> None:
    with pytest.raises(OutsideTheUnitTier, match="started a process"):
        subprocess.run([sys.executable, "-c", "pass"], check=False)

    async def spawn() -> None:
        await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")

    with pytest.raises(OutsideTheUnitTier, match="started a process"):
        run(spawn())


def test_a_chdb_store_is_refused(tmp_path: object) -> None:
    with pytest.raises(OutsideTheUnitTier, match="chdb store"):
        run(open_store(f"chdb://{tmp_path}/chdb"))


def test_an_event_loop_still_works() -> None:
    """asyncio's own socketpair is not a TCP connection and must stay allowed."""
    async def answer() -> int:
        await asyncio.sleep(0)
        return 42

    assert run(answer()) == 42
