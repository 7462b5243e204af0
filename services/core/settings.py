"""The one settings object for every service, read from ``VOC_*`` environment variables.

Every service, the CLI and the tests build their configuration through :func:`load_settings`
so a deployment configures the whole pipeline with one documented set of names.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_CLUSTER_NAME = re.compile(r"\w{1,100}")


INGEST_BATCH_LIMIT = 10_000
"""The most VOC_INGEST_BATCH_MAX may allow: the input shapes cap their lists at it."""


class Settings(BaseSettings):
    """Pipeline configuration; each field maps to ``VOC_<FIELD NAME IN CAPITALS>``."""

    model_config = SettingsConfigDict(env_prefix="VOC_", extra="ignore", frozen=True)

    kafka_bootstrap: str = Field(
        default="",
        description="host:port[,host:port] of the Kafka brokers. Empty with `voc up` starts a "
        "local broker on 127.0.0.1:<local_broker_port>, where the single-service commands and "
        "the CLI clients look for it.",
    )
    clickhouse_url: str = Field(
        default="",
        description="clickhouse://user:pass@host:9000/db for a server (?alt_hosts=h2:9000,h3:9000: "
        "servers to go on with when the first cannot be reached), chdb:///abs/path or "
        "chdb://relative/path for the embedded engine. Empty means chdb under data_dir.",
    )
    clickhouse_cluster: str = Field(
        default="", description="Cluster (the servers' remote_servers name) the schema is "
        "sharded and replicated over. `voc db migrate` then applies the cluster schema through "
        "VOC_CLICKHOUSE_URL and services only check that it is current. Empty: one server.")
    data_dir: Path = Field(default=Path(".voc"), description="Where embedded mode keeps its data.")
    topic_prefix: str = Field(default="voc", description="Prefix of every topic name.")
    topic_partitions: int = Field(default=4, ge=1, description="Partitions for created topics.")
    topic_replication: int = Field(default=1, ge=1, description="Replication factor.")
    group_prefix: str = Field(default="voc", description="Prefix of consumer group ids.")

    http_host: str = Field(default="127.0.0.1", description="Ingest API bind address.")
    http_port: int = Field(default=8000, ge=0, le=65535, description="Ingest API port (0: any).")
    ops_port: int | None = Field(
        default=None, ge=0, le=65535,
        description="Port for /metrics, /healthz, /readyz without credentials, in every process "
        "(the API's own /metrics needs an admin); keep it off the public network (unset: off).",
    )
    ingest_batch_max: int = Field(default=1000, ge=1, le=INGEST_BATCH_LIMIT,
                                  description="Max events per batch POST.")
    ingest_api_keys_file: Path | None = Field(
        default=None, description="YAML mapping source -> sha256 hex of its API key (or a list "
        "of them, for rotation): ingest-only keys, one source each. The older, simpler form of "
        "api_keys_file.")
    api_keys_file: Path | None = Field(
        default=None, description="YAML of principals: name -> roles, sha256 hex of each key, "
        "and optional touchpoints, teams and sources they are limited to (docs/security.md).")
    oidc_issuer: str | None = Field(
        default=None, description="OpenID Connect issuer whose bearer tokens are accepted "
        "(the `iss` claim must equal it). Unset: no tokens are accepted.")
    oidc_audience: str | None = Field(
        default=None, description="The `aud` a token must carry (this API's client id).")
    oidc_jwks_url: str | None = Field(
        default=None, description="URL of the issuer's JSON Web Key Set (its jwks_uri).")
    oidc_jwks_file: Path | None = Field(
        default=None, description="JWKS file instead of a URL, for offline setups; re-read "
        "when it changes.")
    oidc_jwks_cache_s: float = Field(
        default=600.0, gt=0, description="How long fetched signing keys are used before they "
        "are fetched again (an unknown key id fetches sooner, at most every 30 s).")
    oidc_algorithms: list[str] = Field(
        default_factory=lambda: ["RS256", "ES256"], description="Signature algorithms accepted "
        "(asymmetric only).")
    oidc_roles_claim: str = Field(
        default="roles", description="Claim holding the roles (a list or a space-separated "
        "string; dots reach into objects, e.g. realm_access.roles).")
    session_secret: SecretStr | None = Field(
        default=None, description="Key that signs dashboard session cookies; unset: a new "
        "one per process (sessions end on restart and do not cross replicas).")
    session_max_age_s: int = Field(
        default=8 * 3600, ge=60, description="Longest a dashboard session lasts (an OIDC "
        "session also ends when its token expires).")
    insecure_no_auth: bool = Field(
        default=False, description="Serve without authentication on a non-loopback address "
        "(the --insecure-no-auth flag); every caller may then read and act.")
    ingest_max_body_bytes: int = Field(
        default=2 * 1024 * 1024, ge=1024, description="Largest request body; larger gets 413.")
    api_rate_limit: str | None = Field(
        default="50/second", description="Write requests allowed per authenticated principal "
        "(or client address without credentials), e.g. 50/second or 1000/minute; empty: no "
        "limit.")
    api_read_rate_limit: str | None = Field(
        default="50/second", description="Read requests allowed per authenticated principal "
        "(or client address without credentials); empty: no limit.")
    api_auth_failure_rate_limit: str | None = Field(
        default="10/minute", description="Requests with credentials that fail to authenticate "
        "allowed per client address; more such requests get 429 until the window passes "
        "(valid credentials are still served); empty: no limit.")
    stream_max_per_principal: int = Field(
        default=10, ge=1, description="Open /v1/stream connections allowed per principal (or "
        "client address in open mode).")
    query_max_range_days: int = Field(
        default=366, ge=1, le=3660, description="Longest from-to range one query may scan.")
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

    consumer_max_retries: int = Field(
        default=3, ge=0, le=100, description="Retries of a batch that failed with an error of "
        "no known kind before it is split to find and dead-letter the records that fail.")
    consumer_backoff_s: float = Field(
        default=0.5, gt=0, le=10, description="First delay before a failed batch is retried; "
        "doubles per retry, to at most 10 s.")

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
    scoring_touchpoint_cache: int = Field(
        default=10_000, ge=1, description="Touchpoints whose newest event time scoring keeps in "
        "memory (least recently used beyond this are re-read from the store when seen again).")
    expectations_path: Path | None = Field(default=None, description="Expectation targets YAML.")

    alert_rules_path: Path | None = Field(default=None, description="Alert rules YAML.")
    alert_rules_poll_s: float = Field(
        default=2.0, gt=0, description="How often the rules file is checked for changes.")
    alert_max_keys: int = Field(
        default=100_000, ge=100, description="Alert lifecycle keys (rule x subject) kept in "
        "memory; beyond it the least recently used keys without an open alert are forgotten.")
    alert_max_per_rule: int = Field(
        default=20, ge=1, description="Most alerts one rule may fire per VOC_ALERT_CAP_PERIOD_S; "
        "the excess is counted in one summary alert of that rule instead of paging.")
    alert_cap_period_s: int = Field(
        default=3600, ge=60, le=7 * 86400, description="Period of VOC_ALERT_MAX_PER_RULE, "
        "aligned to the UTC epoch (3600: each clock hour).")
    webhook_max_attempts: int = Field(
        default=5, ge=1, description="Tries per webhook delivery before it is dead-lettered.")
    webhook_backoff_s: float = Field(
        default=0.5, ge=0, description="First retry delay; doubles per attempt (max 60 s).")
    alert_customer_text: Literal["snippet", "none"] = Field(
        default="snippet", description="What webhooks (third parties: DingTalk, WeCom, Feishu, "
        "generic receivers) get of the customer's words: snippet (redacted, at most 120 "
        "characters, markup made inert) or none (left out, with people's case comments).")
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

    local_broker_port: int = Field(
        default=9092, ge=0, le=65535, description="Port of the local broker `voc up` starts "
        "when kafka_bootstrap is empty: a fixed port lets `voc alerts tail` and other Kafka "
        "tools find it (0: any free port, printed at start).")
    api_url: str = Field(
        default="", description="Base URL of the API that `voc feedback send` posts to; "
        "empty: http://127.0.0.1:<http_port>.")
    api_key: SecretStr | None = Field(
        default=None, description="API key `voc feedback send` sends in X-API-Key (needed "
        "once the API has keys configured).")

    @field_validator("window_seconds")
    @classmethod
    def _rolls_up(cls, value: int) -> int:
        if 300 % value:
            raise ValueError(f"VOC_WINDOW_SECONDS={value}: use a divisor of 300 (e.g. 60) so "
                             "windows roll up exactly into 5 minutes, 1 hour and 1 day")
        return value

    @field_validator("clickhouse_cluster")
    @classmethod
    def _identifier(cls, value: str) -> str:
        if value and not _CLUSTER_NAME.fullmatch(value):
            raise ValueError(f"VOC_CLICKHOUSE_CLUSTER={value!r}: use the cluster's name from the "
                             "servers' remote_servers (letters, digits, underscores)")
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        upper = value.upper()
        if upper not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError(f"VOC_LOG_LEVEL={value!r}: use DEBUG, INFO, WARNING or ERROR")
        return upper

    @field_validator("api_rate_limit", "api_read_rate_limit", "api_auth_failure_rate_limit")
    @classmethod
    def _parsable_rate(cls, value: str | None, info: ValidationInfo) -> str | None:
        if not value:
            return None
        from limits import parse

        try:
            parse(value)
        except ValueError as exc:
            raise ValueError(f"VOC_{str(info.field_name).upper()}={value!r}: use e.g. "
                             f"50/second or 1000/minute ({exc})") from exc
        return value

    @field_validator("oidc_algorithms")
    @classmethod
    def _asymmetric(cls, value: list[str]) -> list[str]:
        allowed = {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
                   "ES512", "EdDSA"}
        wrong = [a for a in value if a not in allowed]
        if wrong or not value:
            raise ValueError(f"VOC_OIDC_ALGORITHMS={value!r}: use asymmetric algorithms from "
                             f"{sorted(allowed)} (shared-secret HS* and 'none' are refused)")
        return value

    @model_validator(mode="after")
    def _oidc_complete(self) -> Settings:
        if self.oidc_issuer and not (self.oidc_audience
                                     and (self.oidc_jwks_url or self.oidc_jwks_file)):
            raise ValueError("VOC_OIDC_ISSUER is set: also set VOC_OIDC_AUDIENCE and "
                             "VOC_OIDC_JWKS_URL (or VOC_OIDC_JWKS_FILE)")
        if not self.oidc_issuer and (self.oidc_jwks_url or self.oidc_jwks_file):
            raise ValueError("VOC_OIDC_JWKS_URL / VOC_OIDC_JWKS_FILE need VOC_OIDC_ISSUER too")
        return self

    @property
    def auth_configured(self) -> bool:
        """Whether any credential is configured; without one the API is open (loopback demo)."""
        return bool(self.api_keys_file or self.ingest_api_keys_file or self.oidc_issuer)

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
        return self.kafka_bootstrap or f"127.0.0.1:{self.local_broker_port or 9092}"

    @property
    def client_api_url(self) -> str:
        """The API the CLI clients call: ``api_url``, else this machine's API port."""
        return (self.api_url or f"http://127.0.0.1:{self.http_port or 8000}").rstrip("/")


TOPICS = ("feedback.raw", "feedback.enriched", "scores", "alerts", "cases", "deadletter")


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment, with explicit overrides (CLI flags, tests) winning."""
    return Settings(**overrides)  # type: ignore[arg-type]
