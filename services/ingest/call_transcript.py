"""Contact-center call transcripts: the input shape and the call-level facts CEM needs.

Only customer turns are analysed (the agent's scripted politeness would drown the customer's
sentiment), but the event keeps where each customer turn sits in the analysed text and in the
call, so the NLP stage can compare the customer's tone early and late in the call.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Literal

from pydantic import (
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from services.core.bounds import clean_input
from services.core.events import MAX_CALL_TURNS, UtcTime
from services.core.pii import asked_for, redact
from services.ingest.inputs import Id, Input, Metadata, Segment, Stage, Touchpoint

MAX_CALL_MS = 2 * 60 * 60 * 1000
# A pause of this length is silence worth counting; from HOLD_MS on it is treated as a hold
# (agents put customers on hold to look something up; nobody pauses 30 s in conversation).
SILENCE_MS = 5_000
HOLD_MS = 30_000
_TRANSFER = re.compile(r"转接|轉接|转给|轉給|transfer", re.IGNORECASE)
SPEAKER_LABELS = {"customer": "客户", "agent": "坐席", "ivr": "IVR"}


class Turn(Input):
    """One utterance; times are milliseconds from the start of the call."""

    model_config = ConfigDict(extra="forbid")

    speaker: Literal["customer", "agent", "ivr"]
    start_ms: Annotated[int, Field(ge=0, le=MAX_CALL_MS)]
    end_ms: Annotated[int, Field(ge=0, le=MAX_CALL_MS)]
    text: Annotated[str, StringConstraints(strip_whitespace=True, max_length=100_000),
                    BeforeValidator(clean_input)]
    agent_id: Id | None = Field(default=None, description="Agent speaking, when the platform "
                                "knows it per turn: a change of agent counts as a transfer.")

    @model_validator(mode="after")
    def _ordered(self) -> Turn:
        if self.end_ms < self.start_ms:
            raise ValueError(f"end_ms {self.end_ms} is before start_ms {self.start_ms}")
        return self


class CallIn(Input):
    """One call as a contact-center platform exports it (up to 2 hours, 1 MB)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "call_id": "CALL-20261123-000187", "agent_id": "A-1024", "queue": "售后-物流",
        "touchpoint": "hotline", "started_at": "2026-11-23T10:00:00+08:00",
        "ended_at": "2026-11-23T10:20:00+08:00", "customer_id": "c-88231",
        "turns": [
            {"speaker": "ivr", "start_ms": 0, "end_ms": 6000, "text": "您好，欢迎致电，正在为您转接人工服务"},
            {"speaker": "agent", "start_ms": 9000, "end_ms": 12000, "text": "您好，请问有什么可以帮您？"},
            {"speaker": "customer", "start_ms": 12500, "end_ms": 20000, "text": "我的快递一周了还没到"},
        ]}]})

    call_id: Id
    agent_id: Id | None = None
    queue: Annotated[str, StringConstraints(max_length=128)] | None = None
    touchpoint: Touchpoint = "hotline"
    started_at: UtcTime
    ended_at: UtcTime
    customer_id: Annotated[str, StringConstraints(max_length=128)] | None = None
    stage: Stage | None = None
    segment: Segment | None = None
    transfers: Annotated[int, Field(ge=0, le=100)] | None = Field(
        default=None, description="Transfers as the telephony platform counted them; "
        "derived from the turns when absent.")
    metadata: Metadata = Field(default_factory=dict)
    turns: Annotated[list[Turn], Field(min_length=1, max_length=MAX_CALL_TURNS)]

    @model_validator(mode="after")
    def _consistent(self) -> CallIn:
        length_ms = (self.ended_at - self.started_at).total_seconds() * 1000
        if length_ms < 0:
            raise ValueError("ended_at is before started_at")
        if length_ms > MAX_CALL_MS:
            raise ValueError("calls longer than 2 hours are not accepted; split the transcript")
        if not any(t.speaker == "customer" and t.text for t in self.turns):
            raise ValueError("the transcript has no customer turn with text to analyse")
        return self


def redacted_turns(turns: list[Turn]) -> list[Turn]:
    """The turns with personal data redacted, each customer turn knowing whether the agent or
    IVR turn before it asked for a phone number or an identity document: the answer is often
    a bare number (62384417) that no rule may read as a phone without that question, or an ID
    number read out with a digit misheard, which no check digit vouches for."""
    asked: frozenset[str] = frozenset()
    out: list[Turn] = []
    for turn in turns:
        out.append(turn.model_copy(update={
            "text": redact(turn.text, asked if turn.speaker == "customer" else ())}))
        if turn.speaker != "customer":
            asked = asked_for(turn.text)
    return out


def transcript_text(turns: list[Turn]) -> str:
    """The whole call as labelled lines, kept as the event's original text."""
    return "\n".join(f"{SPEAKER_LABELS[t.speaker]}：{t.text}" for t in turns if t.text)


def customer_text(turns: list[Turn], convert: Callable[[str], str]) -> tuple[str, list[list[int]]]:
    """The customer's turns, each converted, one per line, and [start, end, start_ms] spans."""
    parts: list[str] = []
    spans: list[list[int]] = []
    offset = 0
    for turn in turns:
        if turn.speaker != "customer" or not turn.text:
            continue
        text = convert(turn.text)
        if parts:
            offset += 1
        spans.append([offset, offset + len(text), turn.start_ms])
        parts.append(text)
        offset += len(text)
    return "\n".join(parts), spans


def count_transfers(call: CallIn, turns: list[Turn]) -> int:
    """Agent changes when the turns name agents; else transfer announcements after the first
    agent spoke (the IVR's "转接人工" before that is routing, not a transfer)."""
    if call.transfers is not None:
        return call.transfers
    agents = [t.agent_id for t in turns if t.speaker == "agent" and t.agent_id]
    if agents:
        return sum(1 for a, b in zip(agents, agents[1:]) if a != b)
    seen_agent = False
    count = 0
    for turn in turns:
        if seen_agent and turn.speaker in ("ivr", "agent") and _TRANSFER.search(turn.text):
            count += 1
        seen_agent = seen_agent or turn.speaker == "agent"
    return count


def call_facts(call: CallIn) -> dict[str, object]:
    """Duration, silence, holds and transfers of a call (the ``call`` object on the event)."""
    turns = sorted(call.turns, key=lambda t: (t.start_ms, t.end_ms))
    silence_ms = hold_ms = longest_ms = holds = 0
    reached = turns[0].end_ms
    for turn in turns[1:]:
        gap = turn.start_ms - reached
        if gap >= SILENCE_MS:
            silence_ms += gap
            longest_ms = max(longest_ms, gap)
        if gap >= HOLD_MS:
            holds += 1
            hold_ms += gap
        reached = max(reached, turn.end_ms)
    return {
        "call_id": call.call_id, "agent_id": call.agent_id, "queue": call.queue,
        "started_at": call.started_at, "ended_at": call.ended_at,
        "duration_s": round((call.ended_at - call.started_at).total_seconds(), 3),
        "turns": len(turns), "silence_s": silence_ms / 1000, "hold_count": holds,
        "hold_s": hold_ms / 1000, "longest_gap_s": longest_ms / 1000,
        "transfers": count_transfers(call, turns),
    }
