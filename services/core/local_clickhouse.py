"""A throwaway clickhouse-server child process on free loopback ports, for tests and benches.

It writes its own minimal config (the Debian package's config assumes a system service with
fixed ports and /var/lib paths) and keeps all data under one directory. Like the local broker,
it is tied to our lifetime so a killed test run leaves no server behind.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import structlog

from services.core.broker import die_with_parent, free_port, stop_child, wait_for_listener

log = structlog.get_logger(__name__)

_CONFIG = """<?xml version="1.0"?>
<yandex>
  <logger><level>warning</level><log>{root}/log/server.log</log>
    <errorlog>{root}/log/error.log</errorlog><console>0</console></logger>
  <listen_host>127.0.0.1</listen_host>
  <tcp_port>{tcp}</tcp_port>
  <http_port>{http}</http_port>
  <path>{root}/data/</path>
  <tmp_path>{root}/tmp/</tmp_path>
  <user_files_path>{root}/user_files/</user_files_path>
  <format_schema_path>{root}/format_schemas/</format_schema_path>
  <mark_cache_size>268435456</mark_cache_size>
  <max_concurrent_queries>100</max_concurrent_queries>
  <timezone>UTC</timezone>
{extra}  <users>
    <default>
      <password></password>
      <networks><ip>127.0.0.1</ip><ip>::1</ip></networks>
      <profile>default</profile><quota>default</quota>
    </default>
  </users>
  <profiles><default></default></profiles>
  <quotas><default></default></quotas>
</yandex>
"""


def server_binary() -> str | None:
    """Path of clickhouse-server, or None when it is not installed."""
    return shutil.which("clickhouse-server") or shutil.which("clickhouse")


class LocalClickHouse:
    """clickhouse-server with its data under ``root``; ``url`` is a VOC_CLICKHOUSE_URL.

    ``extra_config`` is XML spliced into the config (a cluster member's ``remote_servers``,
    ``zookeeper`` and ``macros``). The ports are chosen once, so a stopped or killed server
    starts again on the same ports with the same data, as a restarted replica would.
    """

    def __init__(self, root: Path, database: str = "voc", extra_config: str = "") -> None:
        self.root = root
        self.database = database
        self.extra_config = extra_config
        self.tcp_port = free_port()
        self.http_port = free_port()
        self.interserver_port = free_port()
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"clickhouse://default@127.0.0.1:{self.tcp_port}/{self.database}"

    def start(self, timeout_s: float = 60) -> LocalClickHouse:
        binary = server_binary()
        if binary is None:
            raise FileNotFoundError("clickhouse-server is not installed: "
                                    "apt-get install -y clickhouse-server (make test does this)")
        for sub in ("log", "data", "tmp", "user_files", "format_schemas"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        config = self.root / "config.xml"
        config.write_text(_CONFIG.format(root=self.root, tcp=self.tcp_port, http=self.http_port,
                                         extra=self.extra_config))
        command = [binary, "--config-file", str(config)]
        if Path(binary).name == "clickhouse":
            command = [binary, "server", "--config-file", str(config)]
        with open(self.root / "log" / "stderr.log", "ab") as stderr:
            self._proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr,
                                          preexec_fn=die_with_parent, cwd=self.root,
                                          start_new_session=True)
        try:
            wait_for_listener(self._proc, self.tcp_port, timeout_s, "clickhouse-server")
        except (TimeoutError, RuntimeError) as exc:
            self.stop()
            errors = (self.root / "log" / "error.log")
            detail = errors.read_text()[-2000:] if errors.exists() else "no error log"
            raise type(exc)(f"clickhouse-server did not start: {exc}: {detail}") from None
        log.info("local clickhouse-server started", url=self.url, pid=self._proc.pid)
        return self

    @property
    def pid(self) -> int | None:
        """Process id while running, else None."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def stop(self) -> None:
        stop_child(self._proc, timeout_s=20)

    def kill(self) -> None:
        """SIGKILL, as a crashed or OOM-killed server: no shutdown, no flush."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            self._proc.wait()

    def __enter__(self) -> LocalClickHouse:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
