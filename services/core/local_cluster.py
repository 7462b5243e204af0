"""A throwaway sharded, replicated ClickHouse cluster on loopback, for tests and benches.

ZooKeeper (Debian's ``zookeeper`` package, run stand-alone on Java) plus ``shards`` x
``replicas`` clickhouse-server processes, each with its own config (``remote_servers`` with
``internal_replication`` on, ``macros``, ``zookeeper``, ``distributed_ddl``), data directory
and free ports. Every child is tied to our lifetime like the local broker and server, so a
killed test run leaves nothing behind. Single members can be killed and restarted on the same
ports and data, which is what the replica and coordinator failure tests need.
"""

from __future__ import annotations

import glob
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import structlog

from services.core.broker import (
    PortTaken,
    die_with_parent,
    free_port,
    stop_child,
    wait_for_listener,
)
from services.core.local_clickhouse import LocalClickHouse

log = structlog.get_logger(__name__)

_ZOO_CFG = """tickTime=500
initLimit=10
syncLimit=5
dataDir={root}/data
clientPort={port}
clientPortAddress=127.0.0.1
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=srvr,mntr
"""

_MEMBER = """  <interserver_http_host>127.0.0.1</interserver_http_host>
  <interserver_http_port>{interserver}</interserver_http_port>
  <remote_servers><{cluster}>
{shards}
  </{cluster}></remote_servers>
  <zookeeper>
    <node><host>127.0.0.1</host><port>{zk_port}</port></node>
    <session_timeout_ms>10000</session_timeout_ms>
  </zookeeper>
  <macros><cluster>{cluster}</cluster><shard>{shard}</shard><replica>{replica}</replica></macros>
  <distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>
"""


def distinct_free_ports(count: int) -> list[int]:
    """``count`` different free loopback ports: all sockets are held open until every port is
    picked, so no two members of one cluster get the same port."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sockets.append(sock)
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def zookeeper_classpath() -> str | None:
    """The classpath of Debian's ZooKeeper server (with slf4j's simple logger, so its warnings
    reach the log file), or None when it is not installed."""
    jars = [Path("/usr/share/java/zookeeper.jar"), Path("/usr/share/java/slf4j-simple.jar")]
    if not jars[0].is_file() or not shutil.which("java"):
        return None
    return ":".join(str(jar) for jar in jars if jar.is_file())


class LocalZooKeeper:
    """A stand-alone ZooKeeper on a free loopback port with its data under ``root``.

    The port and data are kept across :meth:`stop` and :meth:`start`, so the cluster's
    metadata survives a coordinator outage as it would in production.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def hosts(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 60) -> LocalZooKeeper:
        classpath = zookeeper_classpath()
        if classpath is None:
            raise FileNotFoundError("ZooKeeper is not installed: apt-get install -y zookeeper "
                                    "(make test does this; it needs Java, e.g. openjdk-17-jre)")
        (self.root / "data").mkdir(parents=True, exist_ok=True)
        config = self.root / "zoo.cfg"
        config.write_text(_ZOO_CFG.format(root=self.root, port=self.port))
        with open(self.root / "zookeeper.log", "ab") as out:
            self._proc = subprocess.Popen(
                ["java", "-Xmx256m", "-XX:+UseSerialGC", "-cp", classpath,
                 "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
                 "org.apache.zookeeper.server.ZooKeeperServerMain", str(config)],
                stdout=out, stderr=subprocess.STDOUT, preexec_fn=die_with_parent,
                cwd=self.root, start_new_session=True)
        deadline = time.monotonic() + timeout_s
        try:
            wait_for_listener(self._proc, self.port, timeout_s, "ZooKeeper")
        except (TimeoutError, RuntimeError) as exc:
            self.stop()
            detail = (self.root / "zookeeper.log").read_text()[-2000:]
            raise type(exc)(f"{exc}: {detail}") from None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"ZooKeeper exited with {self._proc.returncode}: "
                                   f"{(self.root / 'zookeeper.log').read_text()[-2000:]}")
            if self.serving():
                log.info("local zookeeper started", hosts=self.hosts, pid=self._proc.pid)
                return self
            time.sleep(0.2)
        self.stop()
        raise TimeoutError(f"ZooKeeper did not answer on {self.hosts} within {timeout_s}s; "
                           f"see {self.root / 'zookeeper.log'}")

    def serving(self) -> bool:
        """Whether ZooKeeper accepts sessions yet.

        ``ruok`` answers as soon as the port is open, before the database is loaded, and a
        session attempted then is dropped (clickhouse-server 18.16 may even crash on a DDL
        query after such a failed handshake); ``srvr`` says whether requests are served.
        """
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"srvr")
                return sock.recv(64).startswith(b"Zookeeper version")
        except OSError:
            return False

    @property
    def pid(self) -> int | None:
        """Process id while running, else None."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    def stop(self) -> None:
        stop_child(self._proc, timeout_s=10)

    def __enter__(self) -> LocalZooKeeper:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class LocalCluster:
    """ZooKeeper and ``shards`` x ``replicas`` clickhouse-servers forming cluster ``name``.

    ``servers[s][r]`` is replica ``r`` of shard ``s``. Each server's ``url`` (with the
    database of :meth:`url`) is a ``VOC_CLICKHOUSE_URL``; ``name`` is the
    ``VOC_CLICKHOUSE_CLUSTER``. Replica macros are unique across the whole cluster
    (``s1r1``...), which tables replicated to every server (the migrations ledger) need.
    """

    def __init__(self, root: Path, shards: int = 2, replicas: int = 2,
                 name: str = "voc_cluster") -> None:
        self.root = root
        self.name = name
        self.zookeeper = LocalZooKeeper(root / "zookeeper")
        self.servers = [[LocalClickHouse(root / f"s{s + 1}r{r + 1}") for r in range(replicas)]
                        for s in range(shards)]
        self._configure()

    def _configure(self) -> None:
        """Pick distinct free ports for every member and write each one's cluster config."""
        ports = iter(distinct_free_ports(1 + 3 * len(self.members)))
        self.zookeeper.port = next(ports)
        for server in self.members:
            server.tcp_port, server.http_port, server.interserver_port = (
                next(ports), next(ports), next(ports))
        shard_xml = "\n".join(
            "    <shard><internal_replication>true</internal_replication>"
            + "".join(f"<replica><host>127.0.0.1</host><port>{server.tcp_port}</port></replica>"
                      for server in shard)
            + "</shard>"
            for shard in self.servers)
        for s, shard in enumerate(self.servers):
            for r, server in enumerate(shard):
                server.extra_config = _MEMBER.format(
                    interserver=server.interserver_port, cluster=self.name, shards=shard_xml,
                    zk_port=self.zookeeper.port, shard=f"{s + 1:02d}",
                    replica=f"s{s + 1}r{r + 1}")

    @property
    def members(self) -> list[LocalClickHouse]:
        """Every server, shard by shard."""
        return [server for shard in self.servers for server in shard]

    def url(self, server: LocalClickHouse, database: str) -> str:
        """The ``VOC_CLICKHOUSE_URL`` of ``database`` on one member."""
        return f"clickhouse://default@127.0.0.1:{server.tcp_port}/{database}"

    def start(self, attempts: int = 3) -> LocalCluster:
        """Start ZooKeeper, then every server; when another process took one of the picked
        ports meanwhile, start over on fresh ports (up to ``attempts`` times)."""
        for attempt in range(1, attempts + 1):
            try:
                self.zookeeper.start()
                for server in self.members:
                    server.start()
                break
            except (PortTaken, RuntimeError) as exc:
                self.stop()
                if attempt == attempts or not (isinstance(exc, PortTaken)
                                               or "Address already in use" in str(exc)):
                    raise
                log.warning("a cluster port was taken meanwhile; starting over on new ports",
                            error=str(exc)[:300], attempt=attempt)
                self._configure()
            except BaseException:
                self.stop()
                raise
        log.info("local clickhouse cluster started", cluster=self.name,
                 servers=[s.tcp_port for s in self.members], zookeeper=self.zookeeper.hosts)
        return self

    def stop(self) -> None:
        for server in self.members:
            server.stop()
        self.zookeeper.stop()

    def pids(self) -> list[int]:
        """Process ids of every running member and ZooKeeper (to prove none is orphaned)."""
        return [pid for pid in [*(s.pid for s in self.members), self.zookeeper.pid]
                if pid is not None]

    def logs(self, tail: int = 3000) -> str:
        """The end of every member's error log, for a failing test's report."""
        parts = []
        for path in sorted(glob.glob(str(self.root / "*" / "log" / "error.log"))):
            parts.append(f"== {path}\n{Path(path).read_text(errors='replace')[-tail:]}")
        return "\n".join(parts)

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()




def voc_command(*args: str) -> list[str]:
    """The ``voc`` CLI next to this interpreter (the venv's), or the same CLI via -c."""
    binary = Path(sys.executable).with_name("voc")
    if binary.exists():
        return [str(binary), *args]
    return [sys.executable, "-c", "from services.cli import main; main()", *args]


@dataclass
class StageProcess:
    """One ``voc <command>`` child: its environment, log and ops (or API) port."""

    name: str
    command: str
    env: dict[str, str]
    port: int
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        """Where its ``/readyz`` and ``/metrics/`` answer (the API itself for ingest)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class StageProcesses:
    """The pipeline as separate ``voc`` processes, each tied to our lifetime.

    Ingest gets ``VOC_HTTP_PORT``, the other stages ``VOC_OPS_PORT``, each a free port, so a
    test or bench can read every process's readiness and metrics. Children must be started
    from the main thread: their parent-death signal follows the thread that forked them.
    """

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.stages: dict[str, StageProcess] = {}

    def add(self, name: str, command: str, env: dict[str, str]) -> StageProcess:
        port = free_port()
        key = "VOC_HTTP_PORT" if command == "ingest" else "VOC_OPS_PORT"
        stage = StageProcess(name, command, {**env, key: str(port)}, port,
                             self.log_dir / f"{name}.log")
        self.stages[name] = stage
        return stage

    def start(self, name: str) -> StageProcess:
        stage = self.stages[name]
        if stage.running:
            return stage
        with open(stage.log_path, "ab") as out:
            stage.proc = subprocess.Popen(voc_command(stage.command), env=stage.env, stdout=out,
                                          stderr=subprocess.STDOUT, preexec_fn=die_with_parent,
                                          start_new_session=True)
        log.info("stage process started", stage=name, pid=stage.proc.pid, port=stage.port)
        return stage

    def start_all(self) -> None:
        for name in self.stages:
            self.start(name)

    def kill(self, name: str) -> None:
        """SIGKILL, as a crash: no flush, no commit."""
        stage = self.stages[name]
        if stage.proc is not None and stage.proc.poll() is None:
            stage.proc.kill()
            stage.proc.wait()

    def exited(self) -> dict[str, int]:
        """Processes that ended without being asked to, with their exit codes."""
        return {name: stage.proc.returncode for name, stage in self.stages.items()
                if stage.proc is not None and stage.proc.poll() is not None
                and stage.proc.returncode != -signal.SIGKILL}

    def stop_all(self, timeout_s: float = 40) -> dict[str, int | None]:
        """SIGTERM every running process, SIGKILL what has not exited after ``timeout_s``;
        returns each one's exit code."""
        for stage in self.stages.values():
            if stage.running and stage.proc is not None:
                stage.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for stage in self.stages.values():
            if stage.proc is None:
                continue
            try:
                stage.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                stage.proc.kill()
                stage.proc.wait()
        return {name: stage.proc.returncode if stage.proc else None
                for name, stage in self.stages.items()}

    def pids(self) -> list[int]:
        return [stage.proc.pid for stage in self.stages.values()
                if stage.running and stage.proc is not None]

    def logs(self, tail: int = 4000) -> str:
        """The end of every process's log, for a failing test's report."""
        return "\n".join(f"== {s.name}\n{s.log_path.read_text(errors='replace')[-tail:]}"
                         for s in self.stages.values() if s.log_path.exists())
