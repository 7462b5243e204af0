"""The answers to input that is not feedback: bodies too large, not UTF-8 or with a lone
surrogate escape (``BodyGuard``, before any route parses them), and validation errors as 422s
with field paths and echoed inputs cut short (``handle_errors``).

Every byte is hostile until bounded: a 422 for 100,000 bad items lists the first
``MAX_ERRORS``, an echoed input is cut to a readable size, and a batch longer than the shapes
take is the same 413 as any batch over VOC_INGEST_BATCH_MAX.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.core.settings import Settings
from services.ingest.inputs import BATCH_LIMIT, BATCH_TOO_LONG
from services.ingest.publish import MAX_ERRORS, Loc

# In a JSON body: an escaped backslash (skipped, so "\\\\ud800" is text) or the escape of one
# UTF-16 surrogate. Two fixed tokens that start differently after the backslash: linear.
_SURROGATE_ESCAPE = re.compile(r"\\\\|\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def lone_surrogate(body: str) -> int | None:
    """Character offset of the first surrogate escape in a JSON body that is not one half of
    a high-low pair, else None.

    Python's JSON reader turns such an escape into a string no UTF-8 encoder accepts, so it
    would fail wherever the text is written out (the topic, the 422 echoing it); pydantic's
    reader and every consumer refuse it. Found here, it is a 422 naming its place.
    """
    if "\\u" not in body:
        return None
    pending: int | None = None  # start of a high surrogate waiting for its low half
    expected_at = -1
    for match in _SURROGATE_ESCAPE.finditer(body):
        token = match.group()
        if token == "\\\\":
            if pending is not None:
                return pending
            continue
        high = int(token[2:], 16) < 0xDC00
        if pending is not None and (high or match.start() != expected_at):
            return pending
        if high:
            pending, expected_at = match.start(), match.end()
        elif pending is None:
            return match.start()
        else:
            pending = None
    return pending


def _json_kind(kind: bytes) -> bool:
    """Whether FastAPI reads a body of this content type as JSON (it does without one)."""
    return kind in (b"", b"application/json") or kind.endswith(b"+json")


class BodyGuard:
    """Refuse bodies over ``limit`` bytes with 413 (also without Content-Length), and JSON
    bodies that are not UTF-8 or hold a lone surrogate escape with a 422 that says so.

    The body is read here, up to the limit, and handed on from memory: a body that turns out
    too large while streaming is refused before any route starts parsing it, and undecodable
    bytes get a clear answer rather than the framework's generic "error parsing the body".
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.limit:
            await self._too_large(scope, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message]), send)
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:
                await self._too_large(scope, send)
                return
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        kind = dict(scope["headers"]).get(b"content-type", b"").split(b";")[0].strip().lower()
        if _json_kind(kind) and body:
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError as exc:
                await _not_utf8(exc, scope, send)
                return
            offset = lone_surrogate(text)
            if offset is not None:
                await _unprocessable(scope, send, "lone_surrogate", (
                    f"the JSON body has a lone UTF-16 surrogate escape at character {offset} "
                    f"({text[offset:offset + 6]}); such escapes only come in high-low pairs: "
                    "send the text as UTF-8"))
                return
        message = {"type": "http.request", "body": body, "more_body": False}
        await self.app(scope, _replay([message], then=receive), send)

    async def _too_large(self, scope: Scope, send: Send) -> None:
        response = JSONResponse(status_code=413, content={"detail": (
            f"the request body is larger than {self.limit} bytes (VOC_INGEST_MAX_BODY_BYTES); "
            "split the batch or send the transcript in parts")})
        await response(scope, _replay([]), send)


async def _not_utf8(exc: UnicodeDecodeError, scope: Scope, send: Send) -> None:
    await _unprocessable(scope, send, "not_utf8", (
        f"the JSON body is not UTF-8 (byte 0x{exc.object[exc.start]:02x} at offset "
        f"{exc.start}); encode it as UTF-8, e.g. iconv -f GBK -t UTF-8"))


async def _unprocessable(scope: Scope, send: Send, kind: str, message: str) -> None:
    response = JSONResponse(status_code=422, content={"detail": [{
        "loc": ["body"], "type": kind, "msg": message}]})
    await response(scope, _replay([]), send)


_ENCODERS: dict[Any, Callable[[Any], Any]] = {Exception: str, bytes: lambda _: None}


def _bounded(value: Any, depth: int = 0) -> Any:
    """An input echoed in a 422, cut to a readable size and safe to encode: strings of at most
    200 characters (unpaired surrogates replaced), at most 20 items per list or object, NaN
    and infinities as text."""
    if isinstance(value, str):
        short = value if len(value) <= 200 else value[:200] + f"... ({len(value)} characters)"
        return short.encode("utf-8", "replace").decode("utf-8")
    if isinstance(value, bytes):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN or Infinity: echoed as text
    if isinstance(value, dict):
        if depth >= 3:
            return f"(an object of {len(value)} entries)"
        return {_bounded(k, depth + 1): _bounded(v, depth + 1)
                for k, v in list(value.items())[:20]}
    if isinstance(value, list | tuple):
        if depth >= 3:
            return f"(a list of {len(value)} items)"
        return [_bounded(v, depth + 1) for v in value[:20]]
    return value


def error_details(errors: Sequence[Mapping[str, Any]],
                  prefix: Loc = ()) -> list[dict[str, Any]]:
    """pydantic errors as a 422 lists them: each with its path, the first ``MAX_ERRORS``."""
    out = []
    for error in errors[:MAX_ERRORS]:
        item = {"loc": [*prefix, *(_bounded(part) for part in error["loc"])],
                "msg": _bounded(str(error["msg"])), "type": error["type"]}
        # Cut first: an input nested 900 levels deep must not recurse through the encoder.
        if "input" in error:
            item["input"] = jsonable_encoder(_bounded(error["input"]), custom_encoder=_ENCODERS)
        if error.get("ctx"):
            item["ctx"] = jsonable_encoder(_bounded(error["ctx"]), custom_encoder=_ENCODERS)
        out.append(item)
    return out


def _replay(messages: list[Message], then: Receive | None = None) -> Receive:
    """A receive callable that returns ``messages`` first, then defers to ``then``."""
    pending = list(messages)

    async def receive() -> Message:
        if pending:
            return pending.pop(0)
        if then is not None:
            return await then()
        return {"type": "http.disconnect"}

    return receive


def validation_error(exc: ValidationError, prefix: tuple[str, ...]) -> RequestValidationError:
    """A pydantic error of a body parsed by hand, reported like FastAPI's own (with paths)."""
    return RequestValidationError([{**e, "loc": (*prefix, *e["loc"])}
                                   for e in exc.errors(include_url=False)])


def handle_errors(app: FastAPI, settings: Settings) -> None:
    """Install the 422 and 413 answers to input that does not validate on ``app``."""

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        """422 with field paths, also for bodies parsed by hand (whose errors carry the
        exception objects of custom validators); echoed inputs are cut short. A batch longer
        than the shapes take is the 413 of any batch over VOC_INGEST_BATCH_MAX."""
        errors = exc.errors()
        if any(e["type"] == BATCH_TOO_LONG for e in errors):
            return JSONResponse(status_code=413, content={"detail": (
                f"batch has more than {BATCH_LIMIT} items; the limit is "
                f"{settings.ingest_batch_max} (VOC_INGEST_BATCH_MAX): split it")})
        return JSONResponse(status_code=422, content={"detail": error_details(errors)})

    @app.exception_handler(ValidationError)
    async def unbuildable(_: Request, exc: ValidationError) -> JSONResponse:
        """Input that passed its channel shape but makes no valid event (say, a value that
        grew past a limit) is still the caller's input: 422 naming the event field, not 500."""
        return JSONResponse(status_code=422, content={"detail": error_details(
            exc.errors(include_url=False), ("event",))})
