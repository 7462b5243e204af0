"""Redaction of personal data in Chinese customer feedback, before it leaves ingest.

Every match is replaced by a typed placeholder (``<PHONE>``, ``<ID_CARD>``, ``<BANK_CARD>``,
``<EMAIL>``), so sentiment and topic analysis still see that "a phone number was given" while
no raw value reaches a topic, the store or a log. Numbers that only look like PII (order
numbers, an 18-digit string with a wrong 身份证 check digit, a 16-digit number failing Luhn)
are left alone: redacting them would destroy the order numbers customers quote.

The NLP stage applies the same function to events that direct producers wrote to the raw
topic, so ingest is not the only gate. Redaction is idempotent: placeholders never match.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from datetime import date

PHONE = "<PHONE>"
ID_CARD = "<ID_CARD>"
BANK_CARD = "<BANK_CARD>"
EMAIL = "<EMAIL>"

_EMAIL = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
# 18-digit resident identity number: region(6) birth date(8) sequence(3) check digit.
_ID_CARD = re.compile(r"(?<![0-9A-Za-z])(\d{6})(\d{8})\d{3}[\dXx](?![0-9A-Za-z])")
# Bank cards: 16-19 digits, written as one run or in groups of four.
_BANK_CARD = re.compile(r"(?<![0-9A-Za-z])(?:\d{4}[ -]?){3}\d{4}(?:[ -]?\d{1,3})?(?![0-9A-Za-z])")
# Mainland mobile numbers, optionally with +86 / 0086 and 3-4-4 grouping.
_MOBILE = re.compile(
    r"(?<![0-9A-Za-z+])(?:(?:\+|00)86[ -]?)?1[3-9]\d(?:[ -]?\d{4}){2}(?![0-9A-Za-z])")
# Landlines: area code 0xx/0xxx (or +86 without the 0), local number 7-8 digits, optional
# extension. Without an area code an 8-digit number is more likely an order number: kept.
_LANDLINE = re.compile(
    r"(?<![0-9A-Za-z+])(?:(?:\+|00)86[ -]?(?:\(0?\d{2,3}\)|0?\d{2,3})|\(0\d{2,3}\)|0\d{2,3})"
    r"[ -]?[2-9]\d{6,7}(?:(?:-|转|ext\.?)\d{1,5})?(?![0-9A-Za-z])")

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def id_card_valid(number: str) -> bool:
    """Whether an 18-character 身份证 number has a real birth date and a matching check digit."""
    if len(number) != 18 or not number[:17].isdigit():
        return False
    try:
        born = date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        return False
    if not date(1900, 1, 1) <= born <= date.today():
        return False
    total = sum(int(d) * w for d, w in zip(number[:17], _ID_WEIGHTS, strict=True))
    return _ID_CHECK[total % 11] == number[17].upper()


def luhn_valid(digits: str) -> bool:
    """The Luhn checksum every UnionPay/Visa/Mastercard card number satisfies."""
    if not digits.isdigit():
        return False
    total = 0
    for i, char in enumerate(reversed(digits)):
        value = int(char)
        if i % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _id_card(match: re.Match[str]) -> str | None:
    return ID_CARD if id_card_valid(match[0]) else None


def _bank_card(match: re.Match[str]) -> str | None:
    digits = re.sub(r"[ -]", "", match[0])
    return BANK_CARD if 16 <= len(digits) <= 19 and luhn_valid(digits) else None


_RULES: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], str | None]], ...] = (
    (_EMAIL, lambda m: EMAIL),
    (_ID_CARD, _id_card),
    (_BANK_CARD, _bank_card),
    (_MOBILE, lambda m: PHONE),
    (_LANDLINE, lambda m: PHONE),
)


# Whatever a rule above matches holds an "@" (email) or four digits in a row (phones and
# cards come in groups of four at least, 身份证 and landline numbers in longer runs). Most
# feedback has neither, and one search for that costs a fraction of the five rule scans,
# which run only when it finds something. A new rule must keep this true or widen the
# pattern; a test checks it on text generated from the rules' own patterns.
_MAYBE_PII = re.compile(r"@|\d{4}")


def redact_counted(text: str) -> tuple[str, Counter[str]]:
    """The text with PII replaced, and how many of each placeholder were put in."""
    found: Counter[str] = Counter()
    if _MAYBE_PII.search(text) is None:
        return text, found
    for pattern, classify in _RULES:
        def replace(match: re.Match[str], classify=classify) -> str:  # noqa: ANN001
            placeholder = classify(match)
            if placeholder is None:
                return match[0]
            found[placeholder] += 1
            return placeholder
        text = pattern.sub(replace, text)
    return text, found


def redact(text: str) -> str:
    """The text with every phone, 身份证, bank card number and email address replaced."""
    return redact_counted(text)[0]


def redact_optional(text: str | None) -> str | None:
    """``redact`` that passes ``None`` through, for optional fields."""
    return None if text is None else redact(text)


def redact_bytes(value: bytes) -> bytes:
    """Redact undecodable bytes too (dead letters keep the original bytes otherwise).

    Latin-1 maps every byte to one character and back, so non-ASCII bytes survive unchanged
    while the ASCII digits and addresses that make up PII are replaced.
    """
    return redact(value.decode("latin-1")).encode("latin-1")
