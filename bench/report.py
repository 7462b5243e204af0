"""Combine the bench scripts' JSON into docs/benchmarks.md and docs/benchmarks.json.

Headline figures are ratios against a baseline measured in the same run (SnowNLP and jieba for
the NLP model, the direct Kafka path for HTTP ingest, chdb for clickhouse-server), because on a
shared 2-core machine absolute figures move with whatever else runs; ratios move much less.
The targets of issue 9 are checked here, and when one is missed the report names the stage
that limits it, from per-stage rates and CPU per event.

    python bench/report.py --dir build/bench --out docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import REPO_ROOT, percentile, write_json  # noqa: E402

TARGET_SUSTAINED = 3000.0
TARGET_SCORE_P99_S = 2.0
TARGET_SCORE_RATE = 1000.0
TARGET_ALERT_P95_S = 5.0
PIPELINE_STAGES = ("ingest", "nlp", "scoring", "alerting")

KNOWN = {"nlp.json", "e2e.json", "sink.json", "profile.json"}


def _load(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def fmt(value: Any, digits: int = 2, unbounded: str = "never seen") -> str:
    """Numbers for tables; None (an event never seen before the deadline) says so."""
    if value is None:
        return unbounded
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def seconds(value: Any) -> str:
    """A latency for the targets table: "2.402 s", or "never seen" without a unit."""
    return "never seen" if value is None else f"{fmt(value, 3)} s"


def targets(e2e: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """Each issue-9 target with the measured figure and a verdict; plus bottleneck notes."""
    runs = e2e["separate"]["runs"]
    allout = [r for r in runs if r["offered_rate"] is None]
    fixed = [r for r in runs if r["offered_rate"] is not None]
    rows = []
    for run in allout:
        value = run["sustained_events_per_s"]
        rows.append({"target": f"sustained end to end ≥ {TARGET_SUSTAINED:,.0f} events/s",
                     "run": run["name"], "measured": f"{value:,.0f} events/s",
                     "met": value >= TARGET_SUSTAINED})
    for run in fixed:
        if run["offered_rate"] == TARGET_SCORE_RATE:
            p99 = run["latency_s"]["to_score_row"]["p99"]
            rows.append({"target": f"p99 ingest→score row ≤ {TARGET_SCORE_P99_S:g} s at "
                                   f"{TARGET_SCORE_RATE:,.0f} events/s",
                         "run": run["name"], "measured": seconds(p99),
                         "met": p99 is not None and p99 <= TARGET_SCORE_P99_S})
    for run in fixed:
        samples = run["alerts"].get("latencies_s", [])
        p95 = percentile([math.inf if v is None else v for v in samples], 95)
        p95 = None if p95 is None or math.isinf(p95) else p95
        rows.append({"target": f"alert event p95 ≤ {TARGET_ALERT_P95_S:g} s after the breaching "
                               "event", "run": f"{run['name']} ({len(samples)} bursts)",
                     "measured": seconds(p95),
                     "met": bool(samples) and p95 is not None and p95 <= TARGET_ALERT_P95_S})
    return rows, bottleneck_notes(allout)


def bottleneck_notes(allout: list[dict[str, Any]]) -> list[str]:
    """Name the limiting stage of each all-out run, with the evidence."""
    notes = []
    for run in allout:
        cpu = run["cpu_ms_per_event"]
        per_core = {s: 1000 / cpu[s] for s in PIPELINE_STAGES if cpu.get(s, 0) > 0}
        stages = run["stages"]
        queued = max(((name, v["finished_after_previous_s"]) for name, v in stages.items()
                      if not name.startswith("ingest")), key=lambda kv: kv[1])
        slowest = min(per_core, key=per_core.get) if per_core else "unknown"
        total_cpu = sum(cpu.values())
        notes.append(
            f"**{run['name']}**: sustained {run['sustained_events_per_s']:,.0f} events/s. The "
            f"longest queue built up in front of **{queued[0]}** (it finished "
            f"{queued[1]:.1f} s after the stage before it). CPU per event: "
            + ", ".join(f"{name} {ms:.3f} ms" for name, ms in cpu.items())
            + f" (total {total_cpu:.3f} ms, so two cores allow at most "
            f"~{2000 / total_cpu:,.0f} events/s for everything on this machine together). "
            f"Single-process ceiling per stage (1 core each, events/s = 1000 / CPU ms): "
            + ", ".join(f"{s} {v:,.0f}" for s, v in per_core.items())
            + f"; the lowest is **{slowest}**.")
    if allout:
        run = max(allout, key=lambda r: r["sustained_events_per_s"])
        cpu = run["cpu_ms_per_event"]
        budget = 2000 / TARGET_SUSTAINED
        costliest = sorted(cpu.items(), key=lambda item: -item[1])[:3]
        notes.append(
            f"**Next step.** {TARGET_SUSTAINED:,.0f} events/s on 2 cores leaves "
            f"{budget:.3f} CPU ms per event for every process together; {run['name']} spent "
            f"{sum(cpu.values()):.3f} ms. The costliest per event: "
            + ", ".join(f"{name} {ms:.3f} ms" for name, ms in costliest)
            + "; every process has to shrink, these first.")
    return notes


def nlp_section(nlp: dict[str, Any]) -> list[str]:
    from bench.nlp_bench import markdown

    results = nlp["results"]
    lines = ["## NLP (one process pinned to one core)", "",
             f"Data: `{Path(nlp['data']).name}` inner hold-out ({nlp['holdout']}, seed "
             f"{nlp['seed']}); SnowNLP scored on at most {nlp['limit_snownlp'] or 'all'} rows "
             "that are not in its own training data.", "",
             markdown(results, nlp["speed_ratio_default_over_snownlp"]), ""]
    default = next((r for r in results if r["backend"].startswith("default")
                    and "batch" in r["backend"]), None)
    jieba_off = next((r for r in results if "HMM=off" in r["backend"]), None)
    snow = next((r for r in results if r["backend"].startswith("snownlp")), None)
    same = next((r for r in results if r["backend"].startswith("default on SnowNLP")), None)
    if default and jieba_off:
        lines.append(f"The default model runs at **{default['msgs_per_s'] / jieba_off['msgs_per_s']:.2f}x** "
                     "the speed of jieba tokenization alone (HMM off), the practical ceiling of any "
                     "jieba-based path.")
    if default and jieba_off:
        lines.append("The NLP service segments with rjieba (jieba's dictionary and algorithm in "
                     "Rust, see the rjieba row), so the Python jieba row is no longer its ceiling; "
                     "the *Stage profile* and the end-to-end CPU per event show what bounds it now.")
    if snow and same and "accuracy" in snow and "accuracy" in same:
        lines.append(f"On SnowNLP's own rows the default model's accuracy is "
                     f"{same['accuracy']:.4f} vs SnowNLP's {snow['accuracy']:.4f} "
                     f"({same['accuracy'] - snow['accuracy']:+.4f}).")
    lines.append("")
    return lines


def e2e_section(e2e: dict[str, Any]) -> list[str]:
    sep = e2e["separate"]
    runs = sep["runs"]
    lines = ["## End to end", "",
             f"Mode: {sep['mode']} (ClickHouse {sep['clickhouse_server_version']}); each run "
             "starts a fresh broker, fresh topics and fresh service processes, warmed up with "
             "200 events before the clock starts; the load generator runs on the same 2 cores. Fixed-rate runs last "
             f"{e2e['config']['duration']:g} s each; all-out runs send "
             f"{e2e['config']['allout_events']:,} events as fast as the path accepts them.", "",
             "Latency in seconds from each event's due time (see *Definitions*): "
             "p50 / p95 / p99.", "",
             "| run | offered events/s | events | sustained events/s | ingest ack | "
             "→ enriched row | → score row | alert (bursts) | unseen |",
             "|---|---:|---:|---:|---|---|---|---|---:|"]
    for r in runs:
        lat = r["latency_s"]

        def three(p: dict[str, Any]) -> str:
            return " / ".join(fmt(p[k], 3) for k in ("p50", "p95", "p99"))

        alerts = r["alerts"]
        alert = (f"p50 {fmt(alerts['p50'], 2)}, p95 {fmt(alerts['p95'], 2)} "
                 f"({alerts.get('breaching_bursts', 0)})" if alerts.get("n") else "—")
        unseen = lat["to_score_row"]["missing"]
        lines.append(f"| {r['name']} | {fmt(r['offered_rate'], 0) if r['offered_rate'] else 'all-out'} "
                     f"| {r['events']:,} | {r['sustained_events_per_s']:,.0f} | {three(lat['ingest_ack'])} "
                     f"| {three(lat['to_enriched_row'])} | {three(lat['to_score_row'])} | {alert} "
                     f"| {unseen} |")
    lines += ["", "Where the time goes (p50 / p99 seconds per hop):", "",
              "| run | due → received (client + ingest) | received → enriched (broker + NLP) "
              "| enriched → stored (broker + scoring) |", "|---|---|---|---|"]
    for r in runs:
        hops = list(r["latency_breakdown_p50_p99_s"].values())
        lines.append(f"| {r['name']} | " + " | ".join(
            f"{fmt(a, 3)} / {fmt(b, 3)}" for a, b in hops) + " |")
    lines += ["", "Per-stage throughput (events/s between a stage's first and last output; "
              "\"after\" = seconds it finished after the stage before it):", "",
              "| run | ingest | NLP | scoring sink |", "|---|---|---|---|"]
    for r in runs:
        lines.append(f"| {r['name']} | " + " | ".join(
            f"{fmt(v['events_per_s'], 0)} (after {fmt(v['finished_after_previous_s'], 1)} s)"
            for v in r["stages"].values()) + " |")
    names = list(runs[0]["cpu_ms_per_event"])
    lines += ["", "CPU milliseconds per event, per process (user + system, /proc):", "",
              "| run | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for r in runs:
        lines.append(f"| {r['name']} | " + " | ".join(
            fmt(r["cpu_ms_per_event"][n], 3) for n in names) + " |")
    lines.append("")
    return lines


def profile_section(profile: dict[str, Any]) -> list[str]:
    """Why the limiting stage is slow: its per-event CPU by step and by library."""
    lines = ["## Stage profile (one process, one core, no broker or store)", "",
             f"{profile['events']:,} events in batches of {profile['batch_size']} through the same "
             f"code the services run (model `{profile['model']}`).", "",
             "| stage | step | µs per event |", "|---|---|---:|"]
    for stage, steps in profile["us_per_event"].items():
        for step, us in steps.items():
            lines.append(f"| {stage} | {step} | {us:,.1f} |")
    lines += ["", "Single-core ceiling of the stage's own Python work: " + ", ".join(
        f"{stage} {rate:,.0f} events/s" for stage, rate in
        profile["single_core_events_per_s"].items()) + ".", "",
        "Share of the analyzer's self time by library (cProfile): " + ", ".join(
            f"{name} {share:.0%}" for name, share in
            profile["analyze_self_share_by_package"].items()) + ". Builtins (`max`, "
        "`dict.get`, generator steps) are mostly called from jieba's DAG search.", "",
        "| function | calls | self µs/event | cumulative µs/event |", "|---|---:|---:|---:|"]
    for row in profile["analyze_top_functions_by_self_time"]:
        lines.append(f"| `{row['function']}` | {row['calls']:,} | {row['self_us_per_event']:,.1f} "
                     f"| {row['cumulative_us_per_event']:,.1f} |")
    lines.append("")
    return lines


def memory_section(e2e: dict[str, Any]) -> list[str]:
    runs = [r for r in e2e["separate"]["runs"] if r["offered_rate"] is None] or \
        e2e["separate"]["runs"][-1:]
    names = list(runs[0]["peak_rss_mb"])
    lines = ["## Memory (peak RSS, VmHWM)", "",
             f"One process per service; scope: {runs[0]['peak_rss_scope']}.", "",
             "| process | " + " | ".join(r["name"] for r in runs) + " |",
             "|---|" + "---:|" * len(runs)]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(f"{r['peak_rss_mb'][name]:,.0f}" for r in runs)
                     + " |")
    lines.append("| **four services together** | " + " | ".join(
        f"**{sum(r['peak_rss_mb'].get(s, 0) for s in PIPELINE_STAGES):,.0f}**" for r in runs)
        + " |")
    emb = e2e.get("embedded")
    if emb:
        lines += ["", f"Embedded (`{emb['mode']}`), HTTP all-out run of {emb['events']:,} "
                  f"events: peak RSS **{emb['peak_rss_mb']:,.0f} MiB** ({emb['peak_rss_scope']}), "
                  f"sustained **{emb['sustained_events_per_s']:,.0f} events/s** (all events in a "
                  f"window score), {emb['cpu_ms_per_event']:.3f} CPU ms per event, ingest "
                  f"acknowledged {emb['ingest_ack_events_per_s']:,.0f} events/s."]
    lines.append("")
    return lines


def sink_section(sink: dict[str, Any]) -> list[str]:
    lines = ["## Sink (ClickHouse inserts of `feedback` rows through the Store API)", "",
             "| backend | batch size | rows/s | ms per batch |", "|---|---:|---:|---:|"]
    by: dict[tuple[str, int], float] = {}
    for r in sink["results"]:
        by[(r["backend"], r["batch_size"])] = r["rows_per_s"]
        lines.append(f"| {r['backend']} ({r['server_version']}) | {r['batch_size']:,} "
                     f"| {fmt(r['rows_per_s'], 0)} | {fmt(r['ms_per_batch'], 1)} |")
    lines.append("")
    for size in sorted({s for _, s in by}):
        if ("chdb", size) in by and ("clickhouse-server", size) in by:
            lines.append(f"- batch {size:,}: clickhouse-server / chdb = "
                         f"**{by[('clickhouse-server', size)] / by[('chdb', size)]:.2f}x**")
    lines.append("")
    return lines


def headline(nlp: dict[str, Any] | None, e2e: dict[str, Any] | None,
             sink: dict[str, Any] | None) -> list[str]:
    lines = ["## Headline ratios (baseline measured in the same run)", ""]
    if nlp:
        lines.append(f"- NLP: default model / SnowNLP speed = "
                     f"**{nlp['speed_ratio_default_over_snownlp']:.1f}x** per core.")
    if e2e:
        runs = {r["name"]: r for r in e2e["separate"]["runs"]}
        http, kafka = runs.get("http-allout"), runs.get("kafka-allout")
        if http and kafka and kafka["sustained_events_per_s"]:
            lines.append(f"- End to end all-out: HTTP path / direct Kafka path = "
                         f"**{http['sustained_events_per_s'] / kafka['sustained_events_per_s']:.2f}x** "
                         f"({http['sustained_events_per_s']:,.0f} vs "
                         f"{kafka['sustained_events_per_s']:,.0f} events/s).")
        emb = e2e.get("embedded")
        if emb and http and http["sustained_events_per_s"]:
            lines.append(f"- Embedded `voc up` / one process per service (HTTP all-out) = "
                         f"**{emb['sustained_events_per_s'] / http['sustained_events_per_s']:.2f}x**.")
    if sink:
        by = {(r["backend"], r["batch_size"]): r["rows_per_s"] for r in sink["results"]}
        for size in sorted({s for _, s in by}):
            if ("chdb", size) in by and ("clickhouse-server", size) in by:
                lines.append(f"- Sink at batch {size:,}: clickhouse-server / chdb = "
                             f"**{by[('clickhouse-server', size)] / by[('chdb', size)]:.2f}x**.")
    lines.append("")
    return lines


DEFINITIONS = """## Definitions

- **Open loop.** Event *i* of a fixed-rate run is due at `t0 + i / rate`; the generator sends,
  every {tick_ms:g} ms, everything that is due (HTTP: batch POSTs of up to {http_batch} events,
  up to {inflight} in flight; all-out: {allout_inflight} concurrent POSTs of {allout_batch}; Kafka: a direct
  aiokafka producer, acks=all, keyed by touchpoint). Every latency is measured from the due
  time, so a stall anywhere (including in the generator) shows up instead of hiding
  (no coordinated omission). In all-out runs an event is due when its POST or send starts.
- **ingest ack**: the 202 (HTTP) or the broker acknowledgement (Kafka).
- **→ enriched row**: `inserted_ms` of the event's `feedback` row, which the sink stamps just
  before its insert (early by at most one insert; see *Sink* for how long one takes).
- **→ score row**: receipt, by a reader of the `scores` topic in the bench process, of the
  first score of the event's (touchpoint, window) computed after the event's row was stored.
  Scoring writes the score row before it publishes it, so this is late by one broker hop at most.
- **alert**: receipt of the alert for a burst touchpoint minus the due time of the burst's
  breaching event: the first event at which the stored labels of the burst satisfy the
  negative-share rule (default: share > 0.4 with at least 20 events). Each run holds {bursts} bursts of
  {burst_len} all-negative events on their own touchpoints; the baseline traffic is 85% positive texts.
- **sustained events/s**: stored events / (last `inserted_ms` − first send), i.e. until every
  row is in ClickHouse.
- **unseen**: events with no score row before the drain deadline; they count as infinitely late
  (a percentile that reaches them reads "never seen").
- **CPU per event**: user + system CPU of each process during the run (including its drain)
  divided by the run's events. Texts are real reviews from the NLP dev data (mean ~54 chars).
"""


def topics_section(datasets: list[dict]) -> list[str]:
    """Topic tagging micro/macro-F1 per dataset, as ``bench/topics_eval.py`` measured it."""
    lines = ["Inner hold-out of each dev file (`bench/topics_eval.py`); micro / macro-F1.", "",
             "| dataset | hold-out rows | keywords | model | combined | target (micro) |",
             "|---|---:|---|---|---|---|"]
    for d in datasets:
        cells = [f"{d[k]['micro_f1']:.4f} / {d[k]['macro_f1']:.4f}"
                 for k in ("keywords", "model", "combined")]
        met = "met" if d["combined"]["micro_f1"] >= d["target_micro_f1"] else "**missed**"
        lines.append(f"| {d['dataset']} | {d['holdout_rows']:,} | {' | '.join(cells)} | "
                     f"{d['target_micro_f1']} ({met}) |")
    return lines


def voc_section(voc: dict[str, Any]) -> list[str]:
    """Issue 16's figures on the multi-channel evaluation set, as ``bench/voc_eval.py`` measured them."""
    lines = ["Every figure of issue 16 on realistic multi-channel feedback (surveys, chat, calls, "
             "emails, social posts, app reviews and web forms, a fifth in traditional Chinese; "
             "[annotation guide](annotation-guide.md)), read from the enriched records the NLP stage "
             "returns. The tuning data is every author's file (`voc_eval.jsonl`, the retired "
             "held-out sets `voc_heldout2.jsonl` to `voc_heldout9ae…ah.jsonl`, listed in "
             "`bench/voc_eval.py` as `RETIRED_FILES`, and `voc_train_*.jsonl`); evidence is "
             "read over returned and over gold topics, with the share of the text one topic's "
             "spans cover as its counter-figure; the honest estimate is "
             "leave-one-author-out (each author scored by models fitted without them), while "
             "`tuning` and `retired` are in-sample; `heldout` is separate sets written by other "
             "authors and never looked at while tuning "
             "([model card](model-card.md#multi-channel-evaluation-set-issue-16)).", ""]
    lines.append(voc["markdown"])
    return lines


def explain_section(explain: dict[str, Any]) -> list[str]:
    """Issue 17's explanation targets, as ``bench/explain_bench.py`` measured them."""
    return ["Alert explanations ([docs/alerting.md](alerting.md#explanations)): does the "
            "explanation of an alert rank the injected cause first, and what does computing "
            "it add to firing.", "", explain["markdown"]]


def emerging_section(emerging: dict[str, Any]) -> list[str]:
    """Issue 18's targets, as ``bench/emerging_bench.py`` measured them."""
    return ["Emerging topics ([docs/emerging.md](emerging.md#measured)): a simulated week of "
            "background feedback from the shared dev texts in accelerated event time (every "
            "evaluated window and the injection's hours as `feedback` rows rolled up by the "
            "real roll-up, the other hours' phrase counts drawn statistically), counted by the "
            "alerting SQL and judged by the `emerging_topic` rule kind, then a new issue at 1 % "
            "of one touchpoint's traffic; and every minute of the same week decided in process "
            "by the kind's own decision code on per-minute draws of the same background (the "
            "false-alert figure), tied window by window to the SQL path.", "",
            emerging["markdown"]]


def render(out_dir: Path, command: str, json_name: str) -> tuple[str, dict[str, Any]]:
    nlp = _load(out_dir / "nlp.json")
    e2e = _load(out_dir / "e2e.json")
    sink = _load(out_dir / "sink.json")
    profile = _load(out_dir / "profile.json")
    extra = {p.name: json.loads(p.read_text(encoding="utf-8"))
             for p in sorted(out_dir.glob("*.json")) if p.name not in KNOWN}
    machine = (e2e or sink or {}).get("machine", {})
    measured = (e2e or sink or {}).get("date")
    now = (datetime.fromisoformat(measured) if measured else datetime.now(UTC)).strftime(
        "%Y-%m-%d %H:%M UTC")
    lines = ["# Benchmarks", "",
             f"Latest results of `{command}`, measured {now} at commit "
             f"`{machine.get('git_commit', '?')}`. Rerun the same command to reproduce every "
             f"figure; every raw figure is in [{json_name}]({json_name}).", "",
             "**Noise warning.** This machine has 2 cores that were shared with other work "
             "while these figures were taken (load average at the start: "
             f"{machine.get('load_average_1_5_15', '?')}), and the load generator, the broker "
             "and ClickHouse share those cores with the services. Absolute figures are "
             "therefore noisy; ratios against a baseline from the same run are the headline.",
             "", "## Machine", "", "| | |", "|---|---|"]
    for key, value in machine.items():
        lines.append(f"| {key} | {value} |")
    lines.append("")
    lines += headline(nlp, e2e, sink)
    if e2e:
        rows, notes = targets(e2e)
        lines += ["## Targets (issue 9; 2 cores, full NLP on)", "",
                  "| target | run | measured | verdict |", "|---|---|---|---|"]
        for row in rows:
            lines.append(f"| {row['target']} | {row['run']} | {row['measured']} | "
                         f"{'met' if row['met'] else '**missed**'} |")
        lines += ["", "### Bottleneck", ""] + [f"- {note}" for note in notes] + [""]
    if nlp:
        lines += nlp_section(nlp)
    if e2e:
        lines += e2e_section(e2e)
    if sink:
        lines += sink_section(sink)
    if profile:
        lines += profile_section(profile)
    if e2e:
        lines += memory_section(e2e)
    for name, payload in extra.items():
        lines += [f"## {name}", ""]
        if name.removesuffix(".json") == "topics" and isinstance(payload, list):
            lines += topics_section(payload)
        elif name == "voc_eval.json" and isinstance(payload, dict):
            lines += voc_section(payload)
        elif name == "explain.json" and isinstance(payload, dict):
            lines += explain_section(payload)
        elif name == "emerging.json" and isinstance(payload, dict):
            lines += emerging_section(payload)
        elif isinstance(payload, dict) and isinstance(payload.get("markdown"), str):
            lines.append(payload["markdown"])
        else:
            lines += ["```json", json.dumps(payload, indent=1, ensure_ascii=False)[:4000], "```"]
        lines.append("")
    if e2e:
        config = e2e["config"]
        lines.append(DEFINITIONS.format(tick_ms=1000 * config["tick"], **config))
        lines += ["## Commands the last `make bench` ran", ""]
        if nlp:
            lines.append(f"    python bench/nlp_bench.py --data {nlp['data']} --limit-snownlp "
                         f"{nlp['limit_snownlp']} --batch-size {nlp['batch_size']}")
        lines += [f"    {part['command']}" for part in (sink, profile, e2e)
                  if part and "command" in part]
        lines.append("")
    combined = {"command": command, "date": now, "machine": machine, "nlp": nlp, "e2e": e2e,
                "sink": sink, "profile": profile, **{k.removesuffix(".json"): v for k, v in extra.items()}}
    return "\n".join(lines), combined


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=REPO_ROOT / "build/bench",
                        help="where the bench scripts wrote their JSON")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs/benchmarks.md")
    parser.add_argument("--command", default="make bench", help="the command to cite")
    args = parser.parse_args(argv)
    text, combined = render(args.dir, args.command, args.out.with_suffix(".json").name)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    write_json(args.out.with_suffix(".json"), combined)
    print(f"wrote {args.out} and {args.out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
