"""Whether the customer's tone improved or worsened over a call.

Compares the sentiment of the customer's turns in the first third of the call with those in
the last third (by time). CEM teams read this as "did the call fix the customer's mood", a
fact the overall call sentiment averages away. Computed in the NLP stage because only it has
the sentiment model; the raw event carries where each customer turn is in ``analysis_text``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from services.core.events import CallTone, RawFeedback

# A change of sentiment smaller than this is noise of the model, not a change of mood.
STEADY_BAND = 0.2


def thirds(event: RawFeedback) -> tuple[str, str] | None:
    """The customer's words in the first and in the last third of the call, if both exist."""
    call = event.call
    text = event.analysis_text
    if call is None or not text or not call.customer_spans:
        return None
    length_ms = (call.ended_at - call.started_at).total_seconds() * 1000
    if length_ms <= 0:
        return None
    first, last = [], []
    for start, end, start_ms in call.customer_spans:
        if not 0 <= start < end <= len(text):
            return None
        if start_ms < length_ms / 3:
            first.append(text[start:end])
        elif start_ms >= 2 * length_ms / 3:
            last.append(text[start:end])
    if not first or not last:
        return None
    return "\n".join(first), "\n".join(last)


def call_tones(events: Sequence[RawFeedback],
               predict: Callable[[list[str]], list[float]]) -> list[CallTone | None]:
    """The tone trend of each call event (None for other events or too little speech).

    One ``predict`` call for the whole batch, because the models vectorise over many texts.
    """
    parts = [thirds(e) for e in events]
    texts = [text for pair in parts if pair for text in pair]
    scores = iter(predict(texts)) if texts else iter(())
    tones: list[CallTone | None] = []
    for pair in parts:
        if pair is None:
            tones.append(None)
            continue
        first = max(-1.0, min(1.0, float(next(scores))))
        last = max(-1.0, min(1.0, float(next(scores))))
        change = last - first
        trend = ("improved" if change >= STEADY_BAND else
                 "worsened" if change <= -STEADY_BAND else "steady")
        tones.append(CallTone(first=first, last=last, change=change, trend=trend))
    return tones
