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

from services.core.events import MAX_META_KEY, NAME_PATTERN, NAME_RULE

_CLUSTER_NAME = re.compile(r"\w{1,100}")
_META_KEY = re.compile(NAME_PATTERN)


INGEST_BATCH_LIMIT = 10_000
"""The most VOC_INGEST_BATCH_MAX may allow: the input shapes cap their lists at it."""


class Settings(BaseSettings):
    """Pipeline configuration; each field maps to ``VOC_<FIELD NAME IN CAPITALS>``."""

    model_config = SettingsConfigDict(env_prefix="VOC_", extra="ignore", frozen=True)

    kafka_bootstrap: str = Field(
        default="",
        description="`host:port[,host:port]` of the Kafka brokers. Empty: `voc up` starts a "
        "local broker on `127.0.0.1:VOC_LOCAL_BROKER_PORT`, and the single-service commands "
        "and the CLI clients look for it there.",
    )
    clickhouse_url: str = Field(
        default="",
        description="`clickhouse://user:pass@host:9000/db` for a server (native protocol; "
        "`?alt_hosts=host2:9000,host3:9000` lists servers to go on with when the first cannot "
        "be reached), or `chdb:///abs/path` / `chdb://rel/path` for the embedded engine. "
        "Empty: chdb under `VOC_DATA_DIR`.",
    )
    clickhouse_cluster: str = Field(
        default="", description="Name of the ClickHouse cluster (the servers' "
        "`remote_servers`) the schema is sharded and replicated over: `voc db migrate` then "
        "applies the cluster schema through `VOC_CLICKHOUSE_URL`, and services only check that "
        "it is current "
        "(docs/operations.md#when-one-clickhouse-server-is-not-enough). Empty: one server.")
    data_dir: Path = Field(default=Path(".voc"), description="Where embedded mode keeps its "
                           "data (chdb, broker log).")
    topic_prefix: str = Field(default="voc", description="Prefix of every topic name, so "
                              "pipelines can share one Kafka cluster.")
    topic_partitions: int = Field(default=4, ge=1, description="Partitions of created topics: "
                                  "the most copies of one service that can share work.")
    topic_replication: int = Field(default=1, ge=1, description="Replication factor of "
                                   "created topics (3 on a real cluster).")
    group_prefix: str = Field(default="voc", description="Prefix of consumer group ids "
                              "(`<prefix>-nlp`, `-scoring`, `-alerting`).")

    http_host: str = Field(default="127.0.0.1", description="API bind address (`0.0.0.0` in "
                           "containers, which needs credentials or `VOC_INSECURE_NO_AUTH`).")
    http_port: int = Field(default=8000, ge=0, le=65535, description="API port (0: any free "
                           "port).")
    ops_port: int | None = Field(
        default=None, ge=0, le=65535,
        description="Port for `/metrics`, `/healthz`, `/readyz` without credentials, in every "
        "process (the API's own `/metrics` needs `admin`); keep it off the public network. "
        "Unset: off.",
    )
    ingest_batch_max: int = Field(default=1000, ge=1, le=INGEST_BATCH_LIMIT,
                                  description="Most items in one batch POST; more get 413.")
    ingest_api_keys_file: Path | None = Field(
        default=None, description="YAML file mapping each source to the SHA-256 hex of its "
        "API key (or a list of hashes, for rotation): ingest-only keys, one source each. The "
        "older, simpler form of `VOC_API_KEYS_FILE` (docs/api.md#authentication).")
    api_keys_file: Path | None = Field(
        default=None, description="YAML file of principals: roles, the SHA-256 hex of each of "
        "their keys, and optional touchpoints, teams and sources they are limited to "
        "(docs/security.md).")
    oidc_issuer: str | None = Field(
        default=None, description="OpenID Connect issuer whose bearer tokens are accepted "
        "(the `iss` claim must equal it). Unset: no tokens are accepted.")
    oidc_audience: str | None = Field(
        default=None, description="The `aud` a token must carry (this API's client id).")
    oidc_jwks_url: str | None = Field(
        default=None, description="URL of the issuer's JSON Web Key Set (its `jwks_uri`).")
    oidc_jwks_file: Path | None = Field(
        default=None, description="A JWKS file instead of the URL, for offline setups; re-read "
        "when it changes.")
    oidc_jwks_cache_s: float = Field(
        default=600.0, gt=0, description="How long fetched signing keys are used before they "
        "are fetched again (a token with an unknown key id fetches them sooner, at most every "
        "30 s).")
    oidc_algorithms: list[str] = Field(
        default_factory=lambda: ["RS256", "ES256"], description="JSON list of accepted "
        "signature algorithms (asymmetric only).")
    oidc_roles_claim: str = Field(
        default="roles", description="Claim holding the roles (a list or a space-separated "
        "string; dots reach into objects, e.g. `realm_access.roles`).")
    session_secret: SecretStr | None = Field(
        default=None, description="Key that signs dashboard session cookies; set the same "
        "value on every API replica. Unset: a new one per process (sessions end on restart and "
        "do not cross replicas).")
    session_max_age_s: int = Field(
        default=8 * 3600, ge=60, description="Longest a dashboard session lasts (an OpenID "
        "Connect session also ends when its token expires).")
    insecure_no_auth: bool = Field(
        default=False, description="Serve without credentials on a non-loopback address (the "
        "`--insecure-no-auth` flag); every caller may then read and act.")
    ingest_max_body_bytes: int = Field(
        default=2 * 1024 * 1024, ge=1024, description="Largest request body (2 MiB: a 1 MB "
        "transcript with room to spare); larger gets 413, with or without Content-Length.")
    api_rate_limit: str | None = Field(
        default="50/second", description="Write requests allowed per authenticated principal "
        "(or client address without credentials), e.g. `50/second` or `1000/minute`; over it "
        "is 429 with `Retry-After`. Empty: no limit.")
    api_read_rate_limit: str | None = Field(
        default="50/second", description="Read requests allowed per authenticated principal "
        "(or client address without credentials). Empty: no limit.")
    api_auth_failure_rate_limit: str | None = Field(
        default="10/minute", description="Requests with credentials that fail to authenticate "
        "allowed per client address; more such requests get 429 until the window passes "
        "(valid credentials are still served), so guessing keys gets nowhere. Empty: no "
        "limit.")
    stream_max_per_principal: int = Field(
        default=10, ge=1, description="Open `/v1/stream` connections allowed per principal (per "
        "client address in open mode); more get 429.")
    query_max_range_days: int = Field(
        default=366, ge=1, le=3660, description="Longest `from`-`to` range one query may scan; "
        "longer is a 400 naming this setting.")
    journey_order: list[str] = Field(
        default_factory=list, description="JSON list of touchpoints in the order customers "
        'meet them, e.g. `["app_browse", "app_checkout", "delivery", "hotline"]`: the journey '
        "map (`GET /v1/journey`, the dashboard) shows them left to right in this order, listed "
        "ones even without data, then any others by name. Empty: all by name.")
    dimensions: list[str] = Field(
        default_factory=list, max_length=16, description="JSON list of the metadata keys to "
        'score by besides touchpoint, channel, stage and segment, e.g. `["city", "campaign"]` '
        "(at most 16; names as touchpoints). `GET /v1/dimensions/{name}` answers the figures "
        "per value, `/v1/feedback?meta=city=上海` filters by them (docs/metrics.md#dimensions).")
    dimension_max_values: int = Field(
        default=20, ge=1, le=1000, description="Most values of one dimension answered with "
        "figures of their own (the largest by volume); the rest are folded into `other`, "
        "with the number of values folded.")
    fcr_days: int = Field(
        default=7, ge=1, le=90, description="First-contact resolution: a call counts as "
        "resolved when its customer does not contact again about one of its topics within "
        "this many days (docs/metrics.md#contact-center).")
    cors_origins: list[str] = Field(
        default_factory=list, description="JSON list of origins allowed to call the API from a "
        'browser, e.g. `["https://voc.example.com"]`. Empty: CORS off.')
    ingest_dedupe_window: int = Field(
        default=100_000, ge=0, description="Recent event ids ingest remembers, to answer a "
        "re-send as a duplicate without writing it again (0: off).")

    nlp_batch_size: int = Field(default=256, ge=1, description="Events the NLP agent analyses "
                                "together.")
    nlp_batch_wait_s: float = Field(default=0.2, gt=0, description="Longest wait to fill an "
                                    "NLP batch.")
    sentiment_backend: Literal["default", "snownlp"] = Field(
        default="default",
        description="`default`: the shipped character n-gram model; `snownlp`: the SnowNLP "
        "baseline.",
    )
    neutral_band: float = Field(
        default=0.2, ge=0, lt=1, description="Scores with absolute value below this are "
        "labelled `neutral`."
    )
    taxonomy_path: Path | None = Field(default=None, description="Topic taxonomy YAML "
                                       "(`services/nlp/taxonomy.yaml` format). Unset: the "
                                       "shipped one (docs/nlp.md).")
    urgency_path: Path | None = Field(default=None, description="Urgency cue YAML "
                                      "(`services/nlp/urgency.yaml` format). Unset: the shipped "
                                      "one.")
    jieba_user_dict: Path | None = Field(
        default=None, description="Extra jieba user dictionary (jieba's `word [freq] [tag]` "
        "lines), loaded after the shipped `services/nlp/user_dict.txt`.")

    max_event_age_s: int = Field(
        default=30 * 86400, ge=60, le=20 * 365 * 86400, description="Oldest `occurred_at` "
        "accepted, in seconds before now (default 30 days); older events get 422 at ingest and "
        "are dead-lettered on the topics. Raise it for a backfill of an older export "
        "(docs/operations.md#backfill).")
    max_clock_skew_s: int = Field(
        default=300, ge=0, le=86400, description="How far `occurred_at` and `received_at` may "
        "lie ahead of this server's clock (a sender's clock is never exact); later ones get "
        "422 at ingest and are dead-lettered on the topics.")
    max_touchpoints: int = Field(
        default=1000, ge=1, le=1_000_000, description="Most distinct touchpoints: events of "
        "a new one beyond it get 422 at ingest and are dead-lettered by scoring, so a sender "
        "cannot grow scores, tiles and alert state without end (docs/operations.md#bounds).")

    consumer_max_retries: int = Field(
        default=3, ge=0, le=100, description="Retries of a batch that failed with an error of "
        "no known kind (neither a dependency outage nor bad data) before the batch is split to "
        "find and dead-letter the records that fail (docs/operations.md#failure-policy).")
    consumer_backoff_s: float = Field(
        default=0.5, gt=0, le=10, description="First delay before a failed batch is retried; "
        "doubles per retry, to at most 10 s.")

    sink_batch_size: int = Field(
        default=5000, ge=1, description="Most records scoring and alerting handle per batch. "
        "An alerting batch holds what arrived, a scoring batch what arrived within "
        "`VOC_SCORING_BATCH_FILL_S`, so either only grows this big under load, where bigger "
        "batches cost less CPU per event.")
    sink_batch_wait_s: float = Field(default=0.5, gt=0, description="Longest poll wait of "
                                     "scoring and alerting.")
    scoring_batch_fill_s: float = Field(
        default=1.0, ge=0, description="How long scoring keeps reading after the first record "
        "of a batch before handling it (or until `VOC_SINK_BATCH_SIZE`): a batch's store work "
        "is mostly fixed, so fewer, larger batches cost far less CPU per event, in scoring and "
        "in ClickHouse. Adds up to this much latency to scores and alerts (0: handle what each "
        "fetch returned).")
    window_seconds: int = Field(
        default=60, ge=1, description="Base score window; must divide 300 so windows roll up "
        "into 5 minutes, 1 hour and 1 day.")
    allowed_lateness_s: int = Field(
        default=3600, ge=0, description="A window accepts events until its touchpoint's newest "
        "event time is this far past the window's end; later events are stored, flagged "
        "`too_late` and reported, not scored (docs/metrics.md#late-events).")
    scoring_touchpoint_cache: int = Field(
        default=10_000, ge=1, description="Touchpoints whose newest event time scoring keeps in "
        "memory; the least recently used beyond it are read from the store again when next "
        "seen.")
    expectations_path: Path | None = Field(
        default=None, description="Expectation targets and factor importance YAML "
        "(`services/scoring/expectations.yaml` format). Unset: the shipped one.")

    alert_rules_path: Path | None = Field(
        default=None, description="Alert rules YAML (docs/alerting.md). Unset: the shipped "
        "`services/alerting/rules.yaml`.")
    alert_rules_poll_s: float = Field(
        default=2.0, gt=0, description="How often the rules file is checked; a changed, valid "
        "file applies without a restart.")
    alert_max_keys: int = Field(
        default=100_000, ge=100, description="Alert lifecycle keys (rule × touchpoint, or rule "
        "× customer for event rules) kept in memory; keys with an open alert are always kept, "
        "the least recently used others are forgotten beyond it.")
    alert_customer_memory: int = Field(
        default=50_000, ge=100, description="Customers (per customer_history rule) whose recent "
        "negative contacts the alerting stage remembers in process, so two contacts meet even "
        "when the scoring stage has not stored the first yet; the least recently seen are "
        "forgotten beyond it (counted in voc_alert_customer_memory_evicted_total).")
    alert_max_per_rule: int = Field(
        default=20, ge=1, description="Most alerts one rule fires per "
        "`VOC_ALERT_CAP_PERIOD_S`; the excess opens no case and pages nobody, and is counted "
        "in one summary alert of the rule (docs/operations.md#alert-caps).")
    alert_cap_period_s: int = Field(
        default=3600, ge=60, le=7 * 86400, description="Period of `VOC_ALERT_MAX_PER_RULE`, "
        "aligned to the UTC epoch (3600: each clock hour).")
    emerging_window_s: int = Field(
        default=300, ge=60, le=86400, description="Window of event time the emerging-topic "
        "detector counts phrases in, compared with the baseline before it (docs/emerging.md).")
    emerging_baseline_s: int = Field(
        default=86400, ge=600, le=30 * 86400, description="Event time before the window a "
        "phrase's usual frequency is measured over (docs/emerging.md).")
    emerging_min_baseline_volume: int = Field(
        default=200, ge=1, description="Fewest events a touchpoint's baseline needs before "
        "anything it says is called emerging (a new touchpoint's first words are all new).")
    emerging_min_mentions: int = Field(
        default=5, ge=1, description="Fewest events in the window mentioning a phrase seen in "
        "the baseline before it can be rising.")
    emerging_min_customers: int = Field(
        default=3, ge=1, description="Fewest distinct customers among those mentions (an "
        "event without a customer id counts as its own customer).")
    emerging_new_min_mentions: int = Field(
        default=8, ge=1, description="Fewest mentions of a phrase never seen in the baseline.")
    emerging_new_min_customers: int = Field(
        default=5, ge=1, description="Fewest distinct customers among a never-seen phrase's "
        "mentions.")
    emerging_min_llr: float = Field(
        default=30.0, gt=0, description="Least log-likelihood ratio (Dunning's G², one-sided) "
        "of a phrase's window share against its baseline share when one phrase is tested (30 is "
        "p < 1e-7); the bar grows with the phrases tested in the window, Bonferroni: about 37 "
        "for 50 phrases, 42 for 500 (docs/emerging.md).")
    emerging_min_lift: float = Field(
        default=5.0, ge=1, description="Least ratio of a phrase's window share to its "
        "baseline share (one mention added to the baseline, so a never-seen phrase has one): "
        "an effect-size floor above the ordinary drift of everyday phrases, which rise to about "
        "3x over hours (docs/emerging.md).")
    emerging_max_phrases: int = Field(
        default=500, ge=10, le=10_000, description="Most candidate phrases read per touchpoint "
        "and window (the most mentioned first): bounds each detection's work.")
    emerging_bucket_s: int = Field(
        default=3600, ge=60, le=86400, description="Bucket of event time the phrase counts "
        "are rolled up in (table phrase_counts); the emerging-topic detector reads the whole "
        "rolled-up buckets of its baseline from there and only the rest from the feedback "
        "rows. One row per bucket, touchpoint and phrase (docs/emerging.md#phrase-counts).")
    emerging_cluster_hours: int = Field(
        default=24, ge=1, le=24 * 30, description="Period of untagged negative feedback the "
        "clusters of GET /v1/emerging/clusters are made of, before its end (docs/emerging.md).")
    emerging_cluster_max_events: int = Field(
        default=2000, ge=10, le=20_000, description="Most events clustered (the newest): "
        "bounds each clustering's memory and time.")
    emerging_cluster_similarity: float = Field(
        default=0.2, gt=0, lt=1, description="Least cosine similarity of a comment's "
        "character n-grams to a cluster's centroid for it to join the cluster.")
    emerging_cluster_min_size: int = Field(
        default=3, ge=2, description="Fewest comments a cluster needs to be shown.")
    webhook_max_attempts: int = Field(
        default=5, ge=1, description="Tries per webhook delivery before it is dead-lettered.")
    webhook_backoff_s: float = Field(
        default=0.5, ge=0, description="First webhook retry delay; doubles per attempt, to at "
        "most 60 s.")
    alert_customer_text: Literal["snippet", "none"] = Field(
        default="snippet", description="What webhooks (third parties: DingTalk, WeCom, Feishu, "
        "generic receivers) get of the customer's words: `snippet` (redacted, one line, at "
        "most 120 characters, markup made inert) or `none` (left out, and so are people's case "
        "comments and follow-up texts) (docs/alerting.md#webhooks).")
    case_sla_check_s: float = Field(
        default=15.0, gt=0, description="How often unresolved cases are checked against their "
        "SLA (escalation is late by at most this).")
    webhook_timeout_s: float = Field(default=5.0, gt=0, description="Timeout of one webhook "
                                     "request.")
    case_page_max_age_s: float = Field(
        default=900.0, gt=0, description="Case events older than this page nobody, so a first "
        "start, or a new consumer group reading the cases topic from its start, does not page "
        "its history.")

    shutdown_timeout_s: float = Field(
        default=20.0, gt=0, description="Time services get to flush and commit on SIGINT or "
        "SIGTERM.")

    log_level: str = Field(default="INFO", description="`DEBUG`, `INFO`, `WARNING` or "
                           "`ERROR`.")
    log_format: Literal["console", "json"] = Field(
        default="console", description="`console`, or `json` (one JSON object per line).")

    demo_rate: float = Field(default=8.0, gt=0, description="Demo feed events per second.")

    local_broker_port: int = Field(
        default=9092, ge=0, le=65535, description="Port of the local broker `voc up` starts "
        "when `VOC_KAFKA_BOOTSTRAP` is empty, so `voc alerts tail` and other Kafka tools find "
        "it; if it is taken, `voc up` takes a free port and prints it (0: always a free port).")
    api_url: str = Field(
        default="", description="Base URL of the API that `voc feedback send` posts to. "
        "Empty: `http://127.0.0.1:VOC_HTTP_PORT`.")
    api_key: SecretStr | None = Field(
        default=None, description="API key `voc feedback send` sends in `X-API-Key`, needed "
        "once the API has keys configured.")

    @field_validator("window_seconds")
    @classmethod
    def _rolls_up(cls, value: int) -> int:
        if 300 % value:
            raise ValueError(f"VOC_WINDOW_SECONDS={value}: use a divisor of 300 (e.g. 60) so "
                             "windows roll up exactly into 5 minutes, 1 hour and 1 day")
        return value

    @field_validator("dimensions")
    @classmethod
    def _dimension_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if len(name) > MAX_META_KEY or not _META_KEY.fullmatch(name):
                raise ValueError(f"VOC_DIMENSIONS: {name!r} is no metadata key; {NAME_RULE}, "
                                 f"at most {MAX_META_KEY} characters")
            if name in ("segment", "agent", "queue"):
                raise ValueError(f"VOC_DIMENSIONS: {name!r} is always a dimension (segment, "
                                 "agent, queue); list only metadata keys")
        if len(set(value)) != len(value):
            raise ValueError(f"VOC_DIMENSIONS={value}: each key once")
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
