"""The one settings object for every service, read from ``VOC_*`` environment variables.

Every service, the CLI and the tests build their configuration through :func:`load_settings`
so a deployment configures the whole pipeline with one documented set of names.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


INGEST_BATCH_LIMIT = 10_000
"""The most VOC_INGEST_BATCH_MAX may allow: the input shapes cap their lists at it."""


class Settings(BaseSettings):
    """Pipeline configuration; each field maps to ``VOC_<FIELD NAME IN CAPITALS>``."""

    model_config = SettingsConfigDict(env_prefix="VOC_", extra="ignore", frozen=True)

    kafka_bootstrap: str = Field(
        default="",
        description="host:port[,host:port] of the Kafka brokers. Empty with `voc up` starts a "
        "local broker; the single-service commands default to 127.0.0.1:9092.",
    )
    clickhouse_url: str = Field(
        default="",
        description="clickhouse://user:pass@host:9000/db for a server, chdb:///abs/path or "
        "chdb://relative/path for the embedded engine. Empty means chdb under data_dir.",
    )
    data_dir: Path = Field(default=Path(".voc"), description="Where embedded mode keeps its data.")
    topic_prefix: str = Field(default="voc", description="Prefix of every topic name.")
    topic_partitions: int = Field(default=4, ge=1, description="Partitions for created topics.")
    topic_replication: int = Field(default=1, ge=1, description="Replication factor.")
    group_prefix: str = Field(default="voc", description="Prefix of consumer group ids.")

    http_host: str = Field(default="127.0.0.1", description="Ingest API bind address.")
    http_port: int = Field(default=8000, ge=0, le=65535, description="Ingest API port (0: any).")
    ops_port: int | None = Field(
        default=None, ge=0, le=65535,
        description="Port for /metrics, /healthz, /readyz in processes without the API (unset: off).",
    )
    ingest_batch_max: int = Field(default=1000, ge=1, le=INGEST_BATCH_LIMIT,
                                  description="Max events per batch POST.")
    ingest_api_keys_file: Path | None = Field(
        default=None, description="YAML mapping source -> sha256 hex of its API key (or a list "
        "of them, for rotation). Unset: the API accepts requests without keys.")
    ingest_max_body_bytes: int = Field(
        default=2 * 1024 * 1024, ge=1024, description="Largest request body; larger gets 413.")
    api_rate_limit: str | None = Field(
        default="50/second", description="Write requests allowed per API key (or client "
        "address), e.g. 50/second or 1000/minute; empty: no limit.")
    cors_origins: list[str] = Field(
        default_factory=list, description="Origins allowed to call the API from a browser "
        '(JSON list, e.g. ["https://voc.example.com"]); empty: CORS off.')
    ingest_dedupe_window: int = Field(
        default=100_000, ge=0, description="Recent event ids ingest remembers to answer "
        "re-sends as duplicates without writing them again (0: off).")

    nlp_batch_size: int = Field(default=256, ge=1, description="Events per NLP batch.")
    nlp_batch_wait_s: float = Field(default=0.2, gt=0, description="Max wait to fill a batch.")
    sentiment_backend: Literal["default", "snownlp"] = Field(
        default="default",
        description="default: the shipped char n-gram model; snownlp: the SnowNLP baseline.",
    )
    neutral_band: float = Field(
        default=0.2, ge=0, lt=1, description="|score| below this is labelled neutral."
    )
    taxonomy_path: Path | None = Field(default=None, description="Topic taxonomy YAML.")
    urgency_path: Path | None = Field(default=None, description="Urgency cue YAML.")
    jieba_user_dict: Path | None = Field(
        default=None, description="Extra jieba user dictionary, loaded after the shipped one.")

    max_event_age_s: int = Field(
        default=30 * 86400, ge=60, le=20 * 365 * 86400, description="Oldest `occurred_at` "
        "accepted, in seconds before now; older events get 422 at ingest and are dead-lettered "
        "on the topics. Raise it for a backfill of an older export.")
    max_clock_skew_s: int = Field(
        default=300, ge=0, le=86400, description="How far `occurred_at` and `received_at` may "
        "lie ahead of this server's clock (a sender's clock is never exact).")
    max_touchpoints: int = Field(
        default=1000, ge=1, le=1_000_000, description="Most distinct touchpoints: events of "
        "a new one beyond it get 422 at ingest and are dead-lettered by scoring, so a sender "
        "cannot grow scores, tiles and alert state without end.")

    sink_batch_size: int = Field(default=5000, ge=1, description="Most records per sink batch.")
    sink_batch_wait_s: float = Field(default=0.5, gt=0, description="Longest poll wait.")
    scoring_batch_fill_s: float = Field(
        default=1.0, ge=0, description="How long scoring keeps reading after a batch's first "
        "record: its cost is mostly per batch, so fewer, larger batches cost less per event.")
    window_seconds: int = Field(
        default=60, ge=1, description="Base score window; must divide 300 so 5m/1h/1d roll up.")
    allowed_lateness_s: int = Field(
        default=3600, ge=0, description="How far behind a touchpoint's newest event time a "
        "window still accepts events; later ones are stored but flagged too late.")
    expectations_path: Path | None = Field(default=None, description="Expectation targets YAML.")

    alert_rules_path: Path | None = Field(default=None, description="Alert rules YAML.")
    alert_rules_poll_s: float = Field(
        default=2.0, gt=0, description="How often the rules file is checked for changes.")
    webhook_max_attempts: int = Field(
        default=5, ge=1, description="Tries per webhook delivery before it is dead-lettered.")
    webhook_backoff_s: float = Field(
        default=0.5, ge=0, description="First retry delay; doubles per attempt (max 60 s).")
    case_sla_check_s: float = Field(
        default=15.0, gt=0, description="How often open cases are checked against their SLA.")
    webhook_timeout_s: float = Field(default=5.0, gt=0, description="Per-request timeout.")
    case_page_max_age_s: float = Field(
        default=900.0, gt=0, description="Case events older than this page nobody, so a new "
        "consumer group reading the cases topic from its start does not page its history.")

    shutdown_timeout_s: float = Field(
        default=20.0, gt=0, description="Time services get to flush and commit on stop.")

    log_level: str = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR.")
    log_format: Literal["console", "json"] = Field(default="console", description="Log format.")

    demo_rate: float = Field(default=8.0, gt=0, description="Demo feed events per second.")

    @field_validator("window_seconds")
    @classmethod
    def _rolls_up(cls, value: int) -> int:
        if 300 % value:
            raise ValueError(f"VOC_WINDOW_SECONDS={value}: use a divisor of 300 (e.g. 60) so "
                             "windows roll up exactly into 5 minutes, 1 hour and 1 day")
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        upper = value.upper()
        if upper not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError(f"VOC_LOG_LEVEL={value!r}: use DEBUG, INFO, WARNING or ERROR")
        return upper

    @field_validator("api_rate_limit")
    @classmethod
    def _parsable_rate(cls, value: str | None) -> str | None:
        if not value:
            return None
        from limits import parse

        try:
            parse(value)
        except ValueError as exc:
            raise ValueError(f"VOC_API_RATE_LIMIT={value!r}: use e.g. 50/second or "
                             f"1000/minute ({exc})") from exc
        return value

    def topic(self, name: str) -> str:
        """Full topic name, so a deployment can share one Kafka cluster between pipelines."""
        return f"{self.topic_prefix}.{name}"

    def group(self, service: str) -> str:
        """Consumer group of one service: each service scales as its own group."""
        return f"{self.group_prefix}-{service}"

    @property
    def store_url(self) -> str:
        """The store URL, defaulting to an embedded chdb directory under ``data_dir``."""
        return self.clickhouse_url or f"chdb://{self.data_dir / 'chdb'}"

    @property
    def bootstrap(self) -> str:
        """Broker list for services that need an existing broker."""
        return self.kafka_bootstrap or "127.0.0.1:9092"


TOPICS = ("feedback.raw", "feedback.enriched", "scores", "alerts", "cases", "deadletter")


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with explicit overrides (CLI flags, tests) winning."""
    return Settings(**overrides)  # type: ignore[arg-type]
