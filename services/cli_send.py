"""``voc feedback send``: backfill feedback from JSON lines, through the API or straight to the
raw topic, with a line-by-line account of what was accepted, repeated or refused.

A contact center's export is hostile input like any other: a line may be huge, not JSON, not
an object, or not feedback. Such a line is reported with its number and reason and the rest
goes on; nothing in a line can crash the command or make it hold more than one line, one batch
and a bounded memory of event ids. Lines are read with a length bound, so a file without
newlines costs no more memory than one line.

Delivery follows the pipeline's rule: a line counts as accepted only once the API answered
202 (which it does only after the broker acknowledged) or, with ``--raw``, once the broker
acknowledged it. 429 and 503 are retried after the server's ``Retry-After``, transport errors
with a doubling backoff; after ``--max-attempts`` tries the command stops and says from which
line to resume, because a destination that refuses one batch that long refuses the next too.
"""

from __future__ import annotations

import asyncio
import email.utils
import sys
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import click
import structlog

from services.cli_tail import Stop

log = structlog.get_logger("voc.send")

MAX_REJECTS_LISTED = 1000
"""Rejected lines kept for the ``--json`` summary; each is also printed to stderr as it
happens, so a file with more loses none of them."""
REMEMBERED_IDS = 200_000
"""Event ids of accepted lines kept to spot a line repeated within the file (about 30 MB).
Repeats further apart are still caught by ingest's window and the sinks' id checks."""
MAX_RETRY_WAIT_S = 60.0
"""Longest wait between two tries, whatever ``Retry-After`` asks for."""
BATCH_OVERHEAD = len(b'{"events":[]}')
RETRYABLE = {429, 500, 502, 503, 504}
BOM = b"\xef\xbb\xbf"


@dataclass(frozen=True)
class Line:
    """One input line that passed local checks, ready to send."""

    number: int
    body: bytes  # the line's JSON as sent (HTTP) or the record value (raw)
    key: bytes | None
    event_id: str | None


@dataclass
class Tally:
    """What happened to the lines so far; counts change only after the destination answered."""

    lines: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: int = 0
    without_external_id: int = 0
    rejects: list[dict[str, Any]] = field(default_factory=list)
    stopped_at_line: int | None = None
    stopped_because: str | None = None

    def reject(self, number: int, reason: str) -> None:
        self.rejected += 1
        if len(self.rejects) < MAX_REJECTS_LISTED:
            self.rejects.append({"line": number, "reason": reason})
        click.echo(f"line {number}: rejected: {reason}", err=True)

    def summary(self) -> dict[str, Any]:
        return {"lines": self.lines, "accepted": self.accepted, "duplicates": self.duplicates,
                "rejected": self.rejected, "rejected_lines": self.rejects,
                "rejected_not_listed": self.rejected - len(self.rejects),
                "without_external_id": self.without_external_id,
                "stopped_at_line": self.stopped_at_line, "stopped_because": self.stopped_because}


class Stopped(Exception):
    """The destination refuses everything from here on (auth, gave up retrying, interrupted)."""


@dataclass
class Outcome:
    """A destination's answer for one batch."""

    accepted: list[Line] = field(default_factory=list)
    duplicates: int = 0
    rejected: list[tuple[Line, str]] = field(default_factory=list)


def read_lines(stream: IO[bytes], max_bytes: int) -> Iterator[tuple[int, bytes | None, int]]:
    """(line number, line or None when longer than ``max_bytes``, bytes read so far).

    ``readline`` with a limit never holds more than ``max_bytes`` + 1 bytes; the rest of an
    overlong line is read and dropped in small pieces.
    """
    number = offset = 0
    while True:
        chunk = stream.readline(max_bytes + 1)
        if not chunk:
            return
        number += 1
        offset += len(chunk)
        if len(chunk) > max_bytes and not chunk.endswith(b"\n"):
            while chunk and not chunk.endswith(b"\n"):
                chunk = stream.readline(65536)
                offset += len(chunk)
            yield number, None, offset
            continue
        if number == 1 and chunk.startswith(BOM):  # spreadsheet exports start with one
            chunk = chunk[len(BOM):]
        yield number, chunk, offset


def describe(exc: Any) -> str:
    """A pydantic error as one bounded line: field paths and messages, never the input values
    (they are customer text and may hold personal data)."""
    parts = [f"{'.'.join(str(p) for p in e['loc']) or 'line'}: {e['msg']}"
             for e in exc.errors(include_url=False)[:5]]
    more = len(exc.errors()) - 5
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


class Checker:
    """Turns a line into a :class:`Line` or a reason, with the destination's own models."""

    def __init__(self, raw: bool, settings: Any) -> None:
        self.raw = raw
        self.settings = settings

    def check(self, number: int, chunk: bytes) -> Line | str:
        import orjson
        from pydantic import ValidationError

        text = chunk.strip()
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            return f"not JSON (UTF-8): {exc}"
        if not isinstance(value, dict):
            return f"expected a JSON object, got {type(value).__name__}"
        try:
            return self._raw(number, value) if self.raw else self._generic(number, value, text)
        except ValidationError as exc:
            return describe(exc)

    def _generic(self, number: int, value: dict[str, Any], text: bytes) -> Line:
        from services.core.events import stable_event_id
        from services.ingest.channels.generic import FeedbackIn

        item = FeedbackIn.model_validate(value)
        event_id = stable_event_id(item.source, item.external_id) if item.external_id else None
        return Line(number, text, None, event_id)

    def _raw(self, number: int, value: dict[str, Any]) -> Line | str:
        from services.core.bounds import entrance_problem
        from services.core.events import RawFeedback, utc_now

        event = RawFeedback.model_validate(value)
        problem = entrance_problem(event, self.settings, utc_now())
        if problem is not None:
            return f"{problem[0]}: {problem[1]}"
        return Line(number, event.to_bytes(), event.touchpoint.encode(), event.event_id)


def retry_after(value: str | None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _wait(seconds: float, stop: Stop) -> None:
    deadline = time.monotonic() + seconds
    while not stop.requested and time.monotonic() < deadline:
        time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))


def _detail(response: Any) -> str:
    try:
        detail = response.json().get("detail", response.text)
    except ValueError:
        detail = response.text
    return str(detail)[:300]


class HttpSink:
    """Posts batches to ``/v1/feedback/batch``; the API answers duplicates per batch itself."""

    counts_batch_duplicates = True

    def __init__(self, url: str, api_key: str | None, max_attempts: int, stop: Stop) -> None:
        import httpx

        headers = {"content-type": "application/json", "user-agent": "voc-feedback-send"}
        if api_key:
            headers["x-api-key"] = api_key
        self.url = f"{url}/v1/feedback/batch"
        self._client = httpx.Client(headers=headers, timeout=httpx.Timeout(30.0, connect=5.0))
        self._max_attempts = max_attempts
        self._stop = stop

    def close(self) -> None:
        self._client.close()

    def send(self, lines: list[Line]) -> Outcome:
        """Post ``lines``; the lines the API refuses are found by the index in a 422's error
        paths, else by halving the batch until single lines are left (a 413, or a 422 the
        API could not place), so one bad line never holds back the others."""
        outcome = Outcome()
        parts = [lines]
        while parts:
            part = parts.pop(0)
            response = self._post(part)
            status = response.status_code
            if status == 202:
                try:
                    outcome.duplicates += int(response.json()["duplicates"])
                except (ValueError, KeyError, TypeError) as exc:
                    raise Stopped(f"the API at {self.url} answered 202 with an unexpected "
                                  "body; is it a Tingjian API?") from exc
                outcome.accepted += part
            elif status in (401, 403):
                raise Stopped(f"the API refused the key ({status}: {_detail(response)}); set "
                              "VOC_API_KEY (or --api-key) to a key that may post for these "
                              "sources")
            elif status in (413, 422) and len(part) == 1:
                outcome.rejected.append((part[0], "larger than the API accepts (413)"
                                         if status == 413 else
                                         f"the API refused it (422): {_errors(response)}"))
            elif status in (413, 422):
                refused = _indexed_errors(response, len(part)) if status == 422 else {}
                outcome.rejected += [(part[i], f"the API refused it (422): {why}")
                                     for i, why in sorted(refused.items())]
                rest = [line for i, line in enumerate(part) if i not in refused]
                half = len(part) // 2
                parts[:0] = ([rest] if refused and rest else [] if refused
                             else [part[:half], part[half:]])
            else:
                raise Stopped(f"the API at {self.url} answered {status}: {_detail(response)}")
        return outcome

    def _post(self, lines: list[Line]) -> Any:
        import httpx

        body = b'{"events":[' + b",".join(line.body for line in lines) + b"]}"
        delay = 0.5
        for attempt in range(1, self._max_attempts + 1):
            if self._stop.requested:
                raise Stopped("interrupted")
            try:
                response = self._client.post(self.url, content=body)
            except httpx.TransportError as exc:
                problem, wait = f"{type(exc).__name__}: {exc}", delay
            else:
                if response.status_code not in RETRYABLE:
                    return response
                problem = f"{response.status_code}: {_detail(response)}"
                wait = retry_after(response.headers.get("retry-after")) or delay
            if attempt == self._max_attempts:
                raise Stopped(f"{self.url} still failing after {attempt} tries ({problem})")
            wait = min(wait, MAX_RETRY_WAIT_S)
            log.warning("batch not accepted, retrying", lines=f"{lines[0].number}-"
                        f"{lines[-1].number}", problem=problem[:200], retry_in_s=round(wait, 2),
                        attempt=attempt)
            _wait(wait, self._stop)
            delay = min(delay * 2, 30.0)
        raise AssertionError("unreachable: the loop returns or raises")


def _error_list(response: Any) -> list[dict[str, Any]]:
    """The inputs an error answer names: ``errors`` of the API's one error shape
    (services/core/errors.py), or the ``detail`` list of an API from before it."""
    body = response.json()
    errors = body.get("errors") or body.get("detail")
    if not isinstance(errors, list):
        raise ValueError("no list of errors in the answer")
    return errors


def _errors(response: Any) -> str:
    try:
        errors = _error_list(response)
        return "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                         for e in errors[:5])[:500]
    except (ValueError, KeyError, TypeError):
        return _detail(response)


def _indexed_errors(response: Any, size: int) -> dict[int, str]:
    """Index in the batch -> error, for 422 errors located at body.events[i]."""
    found: dict[int, str] = {}
    try:
        errors = _error_list(response)
        for error in errors:
            loc = error["loc"]
            if (len(loc) > 2 and loc[0] == "body" and loc[1] == "events"
                    and isinstance(loc[2], int) and 0 <= loc[2] < size):
                where = ".".join(str(p) for p in loc[3:]) or "item"
                found.setdefault(loc[2], f"{where}: {error['msg']}")
    except (ValueError, KeyError, TypeError):
        return {}
    return found


class KafkaSink:
    """Produces raw records to the raw topic, keyed by touchpoint, acknowledged (acks=all)."""

    counts_batch_duplicates = False

    def __init__(self, bootstrap: str, topic: str, max_attempts: int, stop: Stop) -> None:
        from aiokafka.errors import KafkaError

        from services.core.kafka import Producer

        self.topic = topic
        self._max_attempts = max_attempts
        self._stop = stop
        # aiokafka binds its producer to the loop it is made in: one loop for its whole life.
        self._runner = asyncio.Runner()

        async def started() -> Producer:
            producer = Producer(bootstrap, client_id="voc-feedback-send")
            try:
                await producer.start()
            except KafkaError:
                await producer.stop()
                raise
            return producer

        try:
            self._producer = self._runner.run(started())
        except KafkaError as exc:
            self._runner.close()
            raise Stopped(f"no Kafka broker answers at {bootstrap} ({exc}): start the pipeline "
                          "(`voc up`) or set VOC_KAFKA_BOOTSTRAP") from exc

    def close(self) -> None:
        try:
            self._runner.run(self._producer.stop())
        finally:
            self._runner.close()

    def send(self, lines: list[Line]) -> Outcome:
        from aiokafka.errors import KafkaError

        messages = [(line.key, line.body) for line in lines]
        delay = 0.5
        for attempt in range(1, self._max_attempts + 1):
            if self._stop.requested:
                raise Stopped("interrupted")
            try:
                self._runner.run(self._producer.send_many(self.topic, messages))
                return Outcome(accepted=lines)
            except KafkaError as exc:
                if attempt == self._max_attempts:
                    raise Stopped(f"{self.topic} still failing after {attempt} tries "
                                  f"({exc})") from exc
                log.warning("batch not acknowledged, retrying", topic=self.topic,
                            error=str(exc)[:200], retry_in_s=delay, attempt=attempt)
                _wait(delay, self._stop)
                delay = min(delay * 2, 30.0)
        raise AssertionError("unreachable: the loop returns or raises")


class Progress:
    """A status line on stderr every few seconds, so a long file shows it is moving."""

    EVERY_S = 2.0

    def __init__(self, total_bytes: int | None, enabled: bool) -> None:
        self._total = total_bytes
        self._enabled = enabled
        self._started = self._last = time.monotonic()
        self._tty = sys.stderr.isatty()
        self._shown = False

    def update(self, tally: Tally, number: int, offset: int) -> None:
        now = time.monotonic()
        if not self._enabled or now - self._last < self.EVERY_S:
            return
        self._last = now
        share = f" ({100 * offset / self._total:.0f}%)" if self._total else ""
        rate = number / max(now - self._started, 1e-9)
        text = (f"line {number:,}{share}: {tally.accepted:,} accepted, {tally.duplicates:,} "
                f"duplicate, {tally.rejected:,} rejected, {rate:,.0f} lines/s")
        click.echo(("\r" + text + "\x1b[K") if self._tty else text, err=True, nl=not self._tty)
        self._shown = True

    def done(self) -> None:
        if self._shown and self._tty:
            click.echo("", err=True)


class Batcher:
    """Collects checked lines into batches bounded by count and bytes and sends them."""

    def __init__(self, sink: HttpSink | KafkaSink, tally: Tally, size: int, max_bytes: int) -> None:
        self._sink = sink
        self._tally = tally
        self._size = size
        self._max_bytes = max_bytes
        self._lines: list[Line] = []
        self._bytes = BATCH_OVERHEAD
        self._batch_ids: set[str] = set()
        self._accepted_ids: OrderedDict[str, int] = OrderedDict()

    def add(self, line: Line) -> None:
        if line.event_id is not None:
            if line.event_id in self._accepted_ids:
                self._tally.duplicates += 1
                return
            if line.event_id in self._batch_ids and not self._sink.counts_batch_duplicates:
                self._tally.duplicates += 1
                return
        if self._lines and (len(self._lines) >= self._size
                            or self._bytes + len(line.body) + 1 > self._max_bytes):
            self.flush()
        self._lines.append(line)
        self._bytes += len(line.body) + 1
        if line.event_id is not None:
            self._batch_ids.add(line.event_id)

    def flush(self) -> None:
        """Send what is collected; raises :class:`Stopped` with the batch's lines untouched."""
        if not self._lines:
            return
        outcome = self._sink.send(self._lines)
        self._tally.accepted += len(outcome.accepted) - outcome.duplicates
        self._tally.duplicates += outcome.duplicates
        for line, reason in outcome.rejected:
            self._tally.reject(line.number, reason)
        for line in outcome.accepted:
            if line.event_id is None:
                self._tally.without_external_id += 1
            else:
                self._accepted_ids[line.event_id] = line.number
                if len(self._accepted_ids) > REMEMBERED_IDS:
                    self._accepted_ids.popitem(last=False)
        self._lines, self._bytes, self._batch_ids = [], BATCH_OVERHEAD, set()

    @property
    def first_pending(self) -> int | None:
        return self._lines[0].number if self._lines else None


def send_lines(stream: IO[bytes], total_bytes: int | None, checker: Checker,
               sink: HttpSink | KafkaSink, *, batch_size: int, max_line_bytes: int,
               max_batch_bytes: int, from_line: int, progress: Progress, stop: Stop) -> Tally:
    """Read, check, batch and send every line from ``from_line`` on; returns the tally."""
    tally = Tally()
    batcher = Batcher(sink, tally, batch_size, max_batch_bytes)
    number = from_line - 1
    try:
        for number, chunk, offset in read_lines(stream, max_line_bytes):
            if number < from_line:
                continue
            if stop.requested:
                raise Stopped("interrupted")
            if chunk is not None and not chunk.strip():
                continue  # blank lines carry nothing to send
            tally.lines += 1
            if chunk is None:
                tally.reject(number, f"longer than {max_line_bytes:,} bytes; not read")
                continue
            checked = checker.check(number, chunk)
            if isinstance(checked, str):
                tally.reject(number, checked)
            else:
                batcher.add(checked)
            progress.update(tally, number, offset)
        batcher.flush()
    except Stopped as exc:
        tally.stopped_at_line = batcher.first_pending or number
        tally.stopped_because = str(exc)
    except KeyboardInterrupt:  # a second Ctrl-C, during a request
        stop.requested = True
        tally.stopped_at_line = batcher.first_pending or number
        tally.stopped_because = "interrupted"
    finally:
        progress.done()
    return tally


def _report(tally: Tally, source: str, as_json: bool) -> None:
    import json

    if as_json:
        click.echo(json.dumps(tally.summary(), ensure_ascii=False))
        return
    click.echo(f"{source}: {tally.lines:,} lines: {tally.accepted:,} accepted, "
               f"{tally.duplicates:,} duplicate, {tally.rejected:,} rejected")
    if tally.rejected:
        click.echo("  the rejected lines and why are listed on stderr (or use --json)")
    if tally.without_external_id:
        click.echo(f"  {tally.without_external_id:,} accepted lines have no external_id: sending "
                   "them again adds them again")
    if tally.stopped_at_line is not None:
        click.echo(f"  stopped at line {tally.stopped_at_line:,}: {tally.stopped_because}")
        click.echo(f"  lines from {tally.stopped_at_line:,} on were not sent; resume with "
                   f"--from-line {tally.stopped_at_line} (lines sent again count as duplicates)")


@click.group()
def feedback() -> None:
    """Send feedback into the pipeline from files."""


@feedback.command("send")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True), default="-")
@click.option("--raw", is_flag=True, help="Lines are feedback.raw.v2 records: produce them "
              "straight to <prefix>.feedback.raw (VOC_KAFKA_BOOTSTRAP) instead of the API.")
@click.option("--url", default=None, help="API base URL (default VOC_API_URL, else "
              "http://127.0.0.1:VOC_HTTP_PORT).")
@click.option("--api-key", default=None, help="Key sent as X-API-Key (default VOC_API_KEY; "
              "prefer the variable, options show up in the process list).")
@click.option("--batch-size", type=click.IntRange(1, 10000), default=500, show_default=True,
              help="Lines per request or produce batch (the API takes up to "
                   "VOC_INGEST_BATCH_MAX; larger batches are split when it says 413).")
@click.option("--max-attempts", type=click.IntRange(min=1), default=8, show_default=True,
              help="Tries per batch on 429, 5xx or connection errors before stopping.")
@click.option("--from-line", type=click.IntRange(min=1), default=1, show_default=True,
              help="Skip the lines before this one (to resume a stopped run).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@click.option("--quiet", is_flag=True, help="No progress lines on stderr.")
def feedback_send(file: str, raw: bool, url: str | None, api_key: str | None, batch_size: int,
                  max_attempts: int, from_line: int, as_json: bool, quiet: bool) -> None:
    """Send JSON lines of feedback from FILE (default: stdin), one item per line.

    Without --raw each line is the API's generic shape (see POST /v1/feedback), posted in
    batches to /v1/feedback/batch. Send `external_id` so that a re-run counts the lines as
    duplicates instead of adding them again.

    Prints a summary of accepted, duplicate and rejected lines; each rejected line is
    reported on stderr with its number and reason as it is found. Exit status: 0 all lines
    accepted or duplicate, 1 some rejected, 3 stopped before the end (the summary says from
    which line to resume), 130 interrupted.
    """
    from services.cli import _settings
    from services.core.kafka import MAX_MESSAGE_BYTES

    settings = _settings()
    stop = Stop()
    stop.install()
    if raw:
        max_line = max_batch = MAX_MESSAGE_BYTES
    else:
        max_batch = settings.ingest_max_body_bytes
        max_line = max_batch - BATCH_OVERHEAD - 1
    key = api_key or (settings.api_key.get_secret_value() if settings.api_key else None)
    try:
        sink: HttpSink | KafkaSink = (
            KafkaSink(settings.bootstrap, settings.topic("feedback.raw"), max_attempts, stop)
            if raw else HttpSink((url or settings.client_api_url).rstrip("/"), key,
                                 max_attempts, stop))
    except Stopped as exc:
        raise click.ClickException(str(exc)) from exc
    path = None if file == "-" else Path(file)
    try:
        stream = sys.stdin.buffer if path is None else path.open("rb")
    except OSError as exc:
        sink.close()
        raise click.ClickException(f"cannot read {file}: {exc.strerror}") from exc
    try:
        total = path.stat().st_size if path is not None and path.is_file() else None
        tally = send_lines(stream, total, Checker(raw, settings), sink, batch_size=batch_size,
                           max_line_bytes=max_line, max_batch_bytes=max_batch,
                           from_line=from_line, progress=Progress(total, not quiet), stop=stop)
    finally:
        if path is not None:
            stream.close()
        sink.close()
    _report(tally, "stdin" if path is None else file, as_json)
    if tally.stopped_at_line is not None:
        sys.exit(130 if stop.requested else 3)
    sys.exit(1 if tally.rejected else 0)
