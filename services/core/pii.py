"""Redaction of personal data in Chinese customer feedback, before it leaves ingest.

Every match is replaced by a typed placeholder (``<PHONE>``, ``<ID_CARD>``, ``<BANK_CARD>``,
``<EMAIL>``), so sentiment and topic analysis still see that "a phone number was given" while
no raw value reaches a topic, the store or a log. Numbers that only look like PII (order
numbers, an 18-digit string with a wrong 身份证 check digit, a 16-digit number failing Luhn)
are left alone: redacting them would destroy the order numbers customers quote.

Customers type numbers with full-width digits (``１３８…``, the default of many Chinese input
methods), full-width or typographic separators (``138．1234．5678``, ``138—1234—5678``) and
ideographic spaces; speech-to-text writes a number read out digit by digit in Chinese
numerals (``一三九 零五七一 二二八八``, 幺 for one, 叉 for the X of a 身份证 number). The
rules match on a folded shadow of the text in which each such character is replaced by its
ASCII form, one character for one, so every match span is also the span to replace in the
original text.

Every pattern here runs in time linear in the text: each is bounded in length (digits,
separators) or, for email addresses, may only start where a run of address characters
starts, so a long run without ``@`` is scanned once, not once per start position.

The NLP stage applies the same function to events that direct producers wrote to the raw
topic, so ingest is not the only gate. Redaction is idempotent: placeholders never match.
"""

from __future__ import annotations

import json
import re
import sys
import unicodedata
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from datetime import date
from typing import Any

PHONE = "<PHONE>"
ID_CARD = "<ID_CARD>"
BANK_CARD = "<BANK_CARD>"
EMAIL = "<EMAIL>"


# A number read out digit by digit, as a transcript writes it. Only the characters of such a
# reading: 十, 百 and 两 belong to counted numbers ("两百"), which are not PII. They are read as
# digits only in runs of three or more (a group of a number read out): a lone 一 is a word
# (电话13812345678一直没人接), and reading it as a digit would lengthen the number before it.
SPOKEN_DIGITS = {"〇": "0", "零": "0", "幺": "1", "一": "1", "二": "2", "三": "3", "四": "4",
                 "五": "5", "六": "6", "七": "7", "八": "8", "九": "9", "叉": "X"}


def _tables() -> tuple[dict[int, str], dict[int, None]]:
    """The folding table, and the invisible characters (controls and format characters such
    as zero-width spaces and bidi overrides) that a snippet drops.

    Folding gives one ASCII character for each character customers use in its place in a
    number or an address: every Unicode decimal digit, the full-width ASCII block (＠, ＋, Ｘ,
    letters), dash and dot look-alikes, and the non-ASCII spaces.
    """
    fold: dict[int, str] = {}
    invisible: dict[int, None] = {}
    for cp in range(sys.maxunicode + 1):
        category = unicodedata.category(chr(cp))
        if category == "Nd" and cp > 0x7F:
            fold[cp] = str(unicodedata.decimal(chr(cp)))
        elif category in ("Cc", "Cf"):
            invisible[cp] = None
    fold.update({cp: chr(cp - 0xFEE0) for cp in range(0xFF01, 0xFF5F)})
    fold.update(dict.fromkeys(
        (0x2010, 0x2011, 0x2012, 0x2013, 0x2014, 0x2015, 0x2212, 0xFE58, 0xFE63), "-"))
    fold.update(dict.fromkeys((0x00B7, 0x2027, 0x30FB, 0xFF65, 0xFE52), "."))
    fold.update(dict.fromkeys(
        (0x00A0, *range(0x2000, 0x200C), 0x202F, 0x205F, 0x2060, 0x3000, 0xFEFF), " "))
    fold.update(dict.fromkeys((0x3001, 0xFE50, 0xFE51), ","))  # 、 and the small commas
    fold[0xFE6B] = "@"  # small commercial at
    return fold, invisible


_FOLD, _INVISIBLE = _tables()
_ASCII_DIGIT = re.compile("[0-9]")
_SPOKEN = str.maketrans(SPOKEN_DIGITS)
_SPOKEN_CLASS = f"[{''.join(SPOKEN_DIGITS)}]"
# A run of three or more spoken digits, at most one space or comma (folded already: 、 and ，
# are commas by then) between two of them: "九 八 七 六" and "零九三五，零六二" as a speaker paused.
_SPOKEN_RUN = re.compile(f"{_SPOKEN_CLASS}(?:[ ,]?{_SPOKEN_CLASS}){{2,}}")

# Between the groups of a number: up to three of space, dot or dash ("138 - 1234 - 5678").
_SEP = r"[ .\-]{0,3}"
_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
# An address read out or disguised: the at sign said (" at ", "(at)", "[at]", 艾特, 圈a, 小老鼠,
# the Taiwanese name of "@") and the dots said or typed with a Chinese input method (" dot ",
# 点, 點, the ideographic full stop 。), with a space on either side at most:
# "zhangli_1988 at 163.com", "wang.fang艾特qq点com", "abc@163。com". No part of the at or dot
# word is an address character, so each label is the whole run and a failed try costs one
# step per character. The last label must be a common top-level domain (:func:`_spoken_email`):
# "meet at 5.30pm" is not an address.
_SAID_AT = r"艾特|圈 ?[aA]|小老鼠"
_AT_WORD = rf"(?: ?@ ?| (?i:at) | ?[(\[](?i:at)[)\]] ?| ?(?:{_SAID_AT}) ?)"
_DOT_WORD = r"(?: ?[.点點。] ?| (?i:dot) | ?[(\[](?i:dot)[)\]] ?)"
_SPOKEN_EMAIL = re.compile(
    rf"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]+{_AT_WORD}[A-Za-z0-9-]+(?:{_DOT_WORD}"
    r"(?P<label>[A-Za-z0-9-]+))+(?![A-Za-z0-9-])")
# What any e-mail rule's match holds: the at sign, or a word said for it.
_AT_MARK = re.compile(rf"@|(?<![A-Za-z])(?i:at)(?![A-Za-z])|{_SAID_AT}")
_TOP_LEVEL = frozenset(("com", "cn", "net", "org", "edu", "gov", "hk", "tw", "mo", "sg", "my", "jp",
                        "kr", "uk", "us", "io", "co", "cc", "me", "info", "biz", "top", "vip",
                        "xyz", "ai", "app", "tv", "site", "online", "club", "mail"))
# 18-digit resident identity number: region(6) birth date(8) sequence(3) check digit, written
# as one run, as 6-8-4, 6-4-4-4 or with any other grouping (at most one space, dot, dash or
# comma between two digits); the birth date and check digit decide.
_ID_CARD = re.compile(
    r"(?<![0-9A-Za-z])[0-9](?:[ .\-,]?[0-9]){16}[ .\-,]?[0-9Xx](?![0-9A-Za-z])")
# Hong Kong identity card: one or two letters, six digits, a check digit (0-9 or A), usually
# in parentheses: K385126(5); read out, the check digit alone in its parentheses stays a
# numeral (K三八五一二六（五）), since a single spoken digit is not folded.
_HK_CHECK = r"(?:\([0-9A〇零幺一二三四五六七八九]\)|[0-9A])"
_HK_ID = re.compile(rf"(?<![0-9A-Za-z])[A-Z]{{1,2}}[0-9]{{6}} ?{_HK_CHECK}(?![0-9A-Za-z])")
# An identity number no check digit vouches for, where the context says it is one (a word that
# names the document before it, or an agent's question for it): 15 to 18 digits (the last may
# be X, at most one space or dash between two digits), or a Taiwan or Hong Kong ID's shape.
_UNCHECKED_ID = (r"(?:[0-9](?:[ \-]?[0-9]){13,16}[ \-]?[0-9Xx]"
                 rf"|[A-Za-z][0-9]{{9}}|[A-Za-z]{{1,2}}[0-9]{{6}} ?{_HK_CHECK})")
# Taiwan national identification number: a letter, 1 or 2 (8 or 9 on a resident
# certificate), eight digits, the last a check digit.
_TW_ID = re.compile(r"(?<![0-9A-Za-z])[A-Z][1289][0-9]{8}(?![0-9A-Za-z])")
# Passport numbers (mainland E12345678 or EA1234567, Hong Kong, Taiwan and foreign ones: one or
# two letters and seven to nine digits) carry no check digit and look like model or order
# numbers, so only within a few characters after a word that names a passport; then only the
# number (group ``number``) is replaced.
_PASSPORT = re.compile(
    r"(?:护照|護照|[Pp]assport|PASSPORT)(?: ?(?:[Nn]o|NO|[Nn]umber)\.?)?[^0-9A-Za-z]{0,8}?"
    r"(?P<number>(?<![0-9A-Za-z])[A-Z]{1,2}[0-9]{7,9})(?![0-9A-Za-z])")
# Any 15 to 18 digits (the last may be X), or the shape of a Taiwan (A123456789), Hong Kong
# (K385126(5)) or passport (E12345678) number, within a few characters after a word that names
# an identity document: the first-generation 15-digit 身份证, and a number mistyped by one
# digit, are the customer's identity all the same, though no check digit vouches for them.
# Then only the number (group ``number``) is replaced.
_ID_NUMBER_NAMED = re.compile(
    r"(?:身份证|身份證|身分证|身分證|证件|證件"
    r"|(?<![A-Za-z])[Ii][Dd] ?(?:(?:[Cc]ard|CARD)(?: ?(?:[Nn]o|NO|[Nn]umber)\.?)?|[Nn]o|NO|[Nn]umber))"
    r"[^0-9A-Za-z]{0,8}?"
    rf"(?P<number>(?<![0-9A-Za-z])(?:{_UNCHECKED_ID}|[A-Za-z]{{1,2}}[0-9]{{7,9}})(?![0-9A-Za-z]))")
# Bank cards: 16-19 digits, written as one run, in groups of four or in any other grouping (at
# most one space, dot, dash or comma between two digits: 622848 0012345671); Luhn decides.
_BANK_CARD = re.compile(
    r"(?<![0-9A-Za-z])[0-9](?:[ .\-,]?[0-9]){15,18}(?![0-9A-Za-z])")
# Mainland mobile numbers, optionally with +86 / 0086 / 86: in 3-4-4 groups, the groups also
# set apart by commas (a transcript writes the pauses of a number read out as 幺三八，一二三四，
# 五六七八), or with at most one space, dash or comma between any two digits (1381 234 5678,
# 1 3 8 1 2 3 4 5 6 7 8 from speech-to-text).
_DIGIT_SEP = " \\-,"
_MSEP = r"[ .\-,]{0,3}"
_MOBILE = re.compile(
    rf"(?<![0-9A-Za-z+])(?:(?:\+|00)?86{_MSEP})?"
    rf"(?:1[3-9][0-9](?:{_MSEP}[0-9]{{4}}){{2}}|1[{_DIGIT_SEP}]?[3-9](?:[{_DIGIT_SEP}]?[0-9]){{9}})"
    r"(?![0-9A-Za-z])")
# Landlines: area code 0xx/0xxx (or +86 without the 0), local number 7-8 digits (3-4 or 4-4
# when grouped, the groups also set apart by commas as a transcript writes a number read out),
# optional extension. Without an area code an 8-digit number is more likely an order number:
# kept.
_LANDLINE = re.compile(
    rf"(?<![0-9A-Za-z+])(?:(?:\+|00)86{_SEP}(?:\(0?[0-9]{{2,3}}\)|0?[0-9]{{2,3}})|\(0[0-9]{{2,3}}\)"
    rf"|0[0-9]{{2,3}}){_MSEP}[2-9][0-9]{{2,3}}{_MSEP}[0-9]{{4}}(?:(?:-|转|ext\.?)[0-9]{{1,5}})?"
    r"(?![0-9A-Za-z])")
# Taiwan: mobile numbers 09xx-xxx-xxx (+886 9xx-xxx-xxx) and landlines with a one- or
# two-digit area code (02-2345-6789, (04)2345-6789, +886 2 2345 6789), the groups also set
# apart by commas (零九三五，零六二，八一四 read out), or a mobile read out with a space between
# every two digits. Ten digits starting 0 in one run are already a mainland landline shape
# above; these rules add the groupings and country code that shape misses.
_TW_PHONE = re.compile(
    rf"(?<![0-9A-Za-z+])(?:(?:(?:\+|00)886{_MSEP}|0)9[0-9]{{2}}{_MSEP}[0-9]{{3}}{_MSEP}[0-9]{{3}}"
    rf"|0 9(?: [0-9]){{8}}"
    rf"|(?:(?:\+|00)886{_MSEP}\(?[2-8]\)?|\(0[2-8][0-9]?\)|0[2-8][0-9]?(?=[ .\-,]))"
    rf"{_MSEP}[2-9][0-9]{{2,3}}{_MSEP}[0-9]{{4}})(?![0-9A-Za-z])")
# Hong Kong: eight digits (2/3 fixed lines, 4-9 mobiles and pagers). With +852, 00852, or 852
# and a separator, always; without, only within a few characters after a word that says a
# phone number follows (电话, 手提, WhatsApp, call), because a bare eight-digit number is more
# often an order or case number (four and four digits, a space, dash or comma between them as
# in 九八七六，五四三二 read out, or a space between every two digits); and not inside an
# identifier (CALL-20261123-000187: no hyphen between word and number, nothing joined on after
# it). Then only the number (group ``number``) is replaced.
_PHONE_WORDS = (r"(?<![A-Za-z])(?:電話|电话|手機|手机|手提|致電|致电|回電|回电|打返|打俾|打畀|"
                r"[Ww]hats[Aa]pp|WA|[Tt]el|TEL|[Cc]all|CALL)")
_LOCAL_NUMBER = r"(?:[2-9][0-9]{3}[ \-,]?[0-9]{4}|[2-9](?: [0-9]){7})(?![0-9A-Za-z])(?![ .\-_/,][0-9])"
_HK_PHONE = re.compile(
    rf"(?<![0-9A-Za-z+])(?:(?:\+|00)852{_MSEP}|852[ .\-,]{{1,3}})[2-9][0-9]{{3}}{_MSEP}[0-9]{{4}}"
    r"(?![0-9A-Za-z])"
    rf"|{_PHONE_WORDS}[^0-9A-Za-z_\-]{{0,6}}?(?P<number>(?<![0-9]){_LOCAL_NUMBER})")
# A mainland mobile number with a digit too many or too few (ten or twelve digits, 1 then 3-9,
# at most one space, dash or comma between two digits) within a few characters after a word
# that says a phone number follows: a customer's phone typed or read out with a slip
# (手机号幺三五六四二八七零九一三) identifies them all the same. Then only the number (group
# ``number``) is replaced; it runs after every rule with a shape of its own.
_MOBILE_NAMED = re.compile(
    rf"{_PHONE_WORDS}[^0-9A-Za-z_\-]{{0,6}}?"
    r"(?P<number>(?<![0-9+])1[ \-,]?[3-9](?:[ \-,]?[0-9]){8,10}(?![0-9A-Za-z])(?![ .\-_/,][0-9]))")
# Answers to a question for personal data: a customer's turn right after an agent's or the
# IVR's question that names a phone or an identity document (:func:`asked_for`) may give the
# number alone. After a phone question an eight-digit number is a phone ("麻煩你提供一下登記電話
# 號碼。" then "呃，62384417。"); after an ID question the shape of a Taiwan or Hong Kong identity
# number, or 15 to 18 digits (the last may be X), is an identity number whatever its check
# digit ("請問身分證字號？" then "R二二四一八零六五二", one digit misread).
_ASKED_NUMBER = re.compile(rf"(?<![0-9A-Za-z+]){_LOCAL_NUMBER}")
_ASKED_ID = re.compile(rf"(?<![0-9A-Za-z]){_UNCHECKED_ID}(?![0-9A-Za-z])")
_ASKS_FOR_PHONE = re.compile(rf"{_PHONE_WORDS}|联系方式|聯絡方式|聯繫方式|聯絡方法")
_ASKS_FOR_ID = re.compile(r"身份证|身份證|身分证|身分證|证件|證件|(?<![A-Za-z])I[Dd](?![A-Za-z])")
_ASKS_FOR = {"phone": _ASKS_FOR_PHONE, "id": _ASKS_FOR_ID}
_NOT_DIGITS = str.maketrans("", "", " .-,")
_NOT_ID = str.maketrans("", "", " ()")

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


def hk_id_valid(number: str) -> bool:
    """Whether a Hong Kong identity card number (``K3851265``, without parentheses) has the
    check digit its letters and digits give (weights 9 to 2, a missing first letter counting
    36, modulo 11, 10 written A)."""
    body, check = number[:-1].rjust(8), number[-1]
    values = [36 if c == " " else ord(c) - 55 if c.isalpha() else int(c) for c in body]
    remainder = -sum(v * w for v, w in zip(values, range(9, 1, -1), strict=True)) % 11
    return check == ("A" if remainder == 10 else str(remainder))


_TW_LETTERS = "ABCDEFGHJKLMNPQRSTUVXYWZIO"  # in the order of their codes 10-35


def tw_id_valid(number: str) -> bool:
    """Whether a Taiwan identification number's digits and letter code sum to a multiple of
    ten with weights 1, 9, 8 ... 1, 1."""
    code = _TW_LETTERS.index(number[0]) + 10
    digits = [code // 10, code % 10, *map(int, number[1:])]
    return sum(d * w for d, w in zip(digits, (1, 9, 8, 7, 6, 5, 4, 3, 2, 1, 1), strict=True)) % 10 == 0


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
    return ID_CARD if id_card_valid(match[0].translate(_NOT_DIGITS)) else None


def _hk_id(match: re.Match[str]) -> str | None:
    return ID_CARD if hk_id_valid(match[0].translate(_NOT_ID).translate(_SPOKEN)) else None


def _tw_id(match: re.Match[str]) -> str | None:
    return ID_CARD if tw_id_valid(match[0]) else None


def _bank_card(match: re.Match[str]) -> str | None:
    digits = match[0].translate(_NOT_DIGITS)
    return BANK_CARD if 16 <= len(digits) <= 19 and luhn_valid(digits) else None


def _phone(match: re.Match[str]) -> str | None:
    return PHONE


def _spoken_email(match: re.Match[str]) -> str | None:
    return EMAIL if match["label"].lower() in _TOP_LEVEL else None


# Each rule with the fewest ASCII digits any of its matches holds (an email's: none, but it
# holds an "@" or a word said for it, :data:`_AT_MARK`). A text whose folded form has fewer
# skips that rule's scan: a price or a date sets off the quick check below, and scanning such a
# text with every rule cost about 120 µs.
# Replacing only takes digits and at signs away, so the count of the folded text, and whether
# it holds an at sign, stay upper bounds for every later rule. A test checks each figure on
# matches generated from the rule's pattern.
_RULES: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], str | None], int], ...] = (
    (_EMAIL, lambda m: EMAIL, 0),
    (_SPOKEN_EMAIL, _spoken_email, 0),
    (_ID_CARD, _id_card, 17),
    (_HK_ID, _hk_id, 6),
    (_TW_ID, _tw_id, 9),
    (_PASSPORT, lambda m: ID_CARD, 7),
    (_BANK_CARD, _bank_card, 16),
    (_MOBILE, _phone, 11),
    (_LANDLINE, _phone, 10),
    (_TW_PHONE, _phone, 9),
    (_HK_PHONE, _phone, 8),
    # Last: a valid card or phone number after 身份证 keeps its own placeholder.
    (_ID_NUMBER_NAMED, lambda m: ID_CARD, 6),
    (_MOBILE_NAMED, _phone, 10),
)
_ASKED_RULES: dict[str, tuple[re.Pattern[str], Callable[[re.Match[str]], str | None], int]] = {
    "phone": (_ASKED_NUMBER, _phone, 8),
    "id": (_ASKED_ID, lambda m: ID_CARD, 6),
}


# Whatever a rule above matches holds an "@" or a word said for it (email), a "+" (a country
# code before a number in groups of three: +886 912 345 678) or four digits in a row, or with
# one separator between them (phones and cards come in groups of four at least, 身份证 and
# landline numbers in longer runs, a mobile number spelled out digit by digit with a space, dash
# or comma between). Most feedback has none of these, and one search for them costs a fraction
# of folding the text and the rule scans, which run only when it finds something. It runs on
# the original text: ``\d`` is every Unicode decimal digit and the numerals are the spoken
# digits, exactly what folding turns into ASCII digits, and the at signs and letters are those
# that fold to "@" and to ASCII letters (the letter before "at" is looked for only after an
# "a": a look-behind tried at every character doubled the search's cost). A new rule must keep
# this true or widen the pattern; a test checks it on text generated from the rules' own
# patterns.
_NUMERAL = r"[\d〇零幺一二三四五六七八九]"
_ONE_SEP = "[" + re.escape("".join(sorted(
    {" ", "-", ","} | {chr(cp) for cp, ascii_form in _FOLD.items() if ascii_form in " -,"}))) + "]"
_MAYBE_PII = re.compile(rf"[@＠﹫+＋]|{_NUMERAL}(?:{_ONE_SEP}?{_NUMERAL}){{3}}"
                        r"|[aAａＡ](?<![A-Za-zＡ-Ｚａ-ｚ][aAａＡ])[tTｔＴ](?![A-Za-zＡ-Ｚａ-ｚ])"
                        rf"|艾特|圈{_ONE_SEP}?[aAａＡ]|小老鼠")


def fold(text: str) -> str:
    """The text with full-width and other look-alike digits, separators and at signs in
    their ASCII form, and runs of spoken digits as digits, character for character (same
    length, same offsets)."""
    return _SPOKEN_RUN.sub(lambda run: run[0].translate(_SPOKEN), text.translate(_FOLD))


def _ascii_digits(text: str) -> int:
    return len(_ASCII_DIGIT.findall(text))


def asked_for(text: str) -> frozenset[str]:
    """What a turn of a conversation asks for ("phone", "id": an agent naming a phone number or
    an identity document), so that the customer's answer may be the bare number
    (``redact(..., asked=...)``)."""
    return frozenset(kind for kind, pattern in _ASKS_FOR.items() if pattern.search(text))


def redact_counted(text: str, asked: Collection[str] = ()) -> tuple[str, Counter[str]]:
    """The text with PII replaced, and how many of each placeholder were put in.

    Each rule scans the folded shadow once; its matches are replaced in the original and in
    the shadow alike (placeholders are ASCII, so they fold to themselves), which keeps the two
    aligned for the next rule.
    """
    found: Counter[str] = Counter()
    if _MAYBE_PII.search(text) is None:
        return text, found
    shadow = fold(text)
    digits = _ascii_digits(shadow)
    at_sign = _AT_MARK.search(shadow) is not None
    rules = (*_RULES, *(_ASKED_RULES[kind] for kind in sorted(asked)))
    for pattern, classify, fewest in rules:
        if digits < fewest or (not fewest and not at_sign):
            continue
        kept: list[str] = []
        kept_shadow: list[str] = []
        last = 0
        for match in pattern.finditer(shadow):
            placeholder = classify(match)
            if placeholder is None:
                continue
            start, end = match.span("number" if "number" in pattern.groupindex and match["number"]
                                    else 0)
            kept += (text[last:start], placeholder)
            kept_shadow += (shadow[last:start], placeholder)
            last = end
            found[placeholder] += 1
        if kept:
            text = "".join((*kept, text[last:]))
            shadow = "".join((*kept_shadow, shadow[last:]))
    return text, found


def redact(text: str, asked: Collection[str] = ()) -> str:
    """The text with every phone (mainland, Hong Kong, Taiwan), identity card (身份证, HK, TW),
    bank card number and email address replaced; when the text answers a question for a phone
    number (``asked`` holds "phone"), a bare eight-digit number too, and for an identity
    document ("id"), an identity number whatever its check digit."""
    return redact_counted(text, asked)[0]


_PLACEHOLDERS = frozenset((PHONE, ID_CARD, BANK_CARD, EMAIL))
_PLACEHOLDER_TOKENS = 5  # "<", "BANK", "_", "CARD", ">": the most tokens a segmenter cuts one into


def mask_placeholders(tokens: Sequence[str]) -> Sequence[str]:
    """The tokens with each run that spells a placeholder ("<", "PHONE", ">") made one empty
    token: a keyword or a phrase counts what the customer wrote, and "PHONE" or "EMAIL" would
    otherwise top the keywords of every contact who gave a number. The empty token still
    separates its neighbours, so no phrase forms across it. The tokens come back as they are
    when they hold no "<"."""
    if "<" not in tokens:
        return tokens
    masked: list[str] = []
    i, n = 0, len(tokens)
    while i < n:
        if tokens[i] == "<":
            end = next((j for j in range(i + 2, min(i + _PLACEHOLDER_TOKENS, n)) if tokens[j] == ">"),
                       None)
            if end is not None and "".join(tokens[i:end + 1]) in _PLACEHOLDERS:
                masked.append("")
                i = end + 1
                continue
        masked.append(tokens[i])
        i += 1
    return masked


def redact_optional(text: str | None) -> str | None:
    """``redact`` that passes ``None`` through, for optional fields."""
    return None if text is None else redact(text)


SNIPPET_CHARS = 120


def snippet(text: str, limit: int = SNIPPET_CHARS) -> str:
    """Customer text as it may leave the pipeline in a message to people: redacted, on one
    line, without control or format characters (a bidi override could make a chat message
    read differently), and at most ``limit`` characters. Escaping for a message format is the
    formatter's job."""
    cleaned = " ".join(redact(text).split()).translate(_INVISIBLE)
    return cleaned if len(cleaned) <= limit else cleaned[:limit - 1] + "…"


def _redact_document(document: Any) -> tuple[Any, bool]:
    """A parsed JSON document with every string (keys too) redacted, and whether any changed.

    Walked with an explicit stack, so a deeply nested document the parser accepted cannot
    overflow the interpreter's recursion limit here.
    """
    if isinstance(document, str):
        cleaned = redact(document)
        return cleaned, cleaned != document
    changed = False
    stack = [document] if isinstance(document, dict | list) else []
    while stack:
        node = stack.pop()
        items: list[tuple[Any, Any]] = (list(node.items()) if isinstance(node, dict)
                                        else list(enumerate(node)))
        if isinstance(node, dict):
            node.clear()
        for key, item in items:
            if isinstance(item, str):
                cleaned = redact(item)
                changed = changed or cleaned != item
                item = cleaned
            elif isinstance(item, dict | list):
                stack.append(item)
            if isinstance(key, str):
                cleaned_key = redact(key)
                changed = changed or cleaned_key != key
                key = cleaned_key
            node[key] = item
    return document, changed


def redact_bytes(value: bytes) -> bytes:
    """Dead-letter bytes with PII redacted in their decoded content.

    A JSON record is parsed and every string redacted, because JSON may write text as
    ``\\u`` escapes: in ``"\\u4e2d13812345678"`` the phone follows an escaped character that
    looks like a letter to a scan of the bytes. The bytes come back unchanged when nothing was
    redacted. Other UTF-8 text is redacted as text. Anything else is read as GB18030 (a
    superset of the GBK that Chinese systems still write, where full-width digits are two
    bytes each) with undecodable bytes kept as they are (surrogateescape): every byte but the
    PII survives, whatever the record was.
    """
    try:
        document = json.loads(value)
    except (ValueError, RecursionError):
        pass
    else:
        cleaned, changed = _redact_document(document)
        if not changed:
            return value
        try:
            # Lone surrogates can only sit inside strings, where "\\udXXX" is their JSON escape.
            return json.dumps(cleaned, ensure_ascii=False).encode("utf-8", "backslashreplace")
        except (ValueError, RecursionError):
            pass
    try:
        return redact(value.decode("utf-8")).encode("utf-8")
    except UnicodeDecodeError:
        return redact(value.decode("gb18030", "surrogateescape")).encode("gb18030",
                                                                          "surrogateescape")
