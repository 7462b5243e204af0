"""Customer emails as mail systems deliver them: RFC 822 bytes, or the same facts as JSON.

Chinese mail is still often GBK, GB2312, GB18030 or Big5, and the declared charset is not
always the one used (a Big5 body labelled gb2312 decodes without error into nonsense). So a
body is decoded with every plausible charset and the reading whose characters are common
Chinese characters wins, the declared charset breaking ties. Replies, forwarded history and
signatures are cut from the analysed text, because they would make the customer's new
message carry the sentiment of the whole thread.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage, Message
from functools import cache

import lxml.etree
import lxml.html

from services.core.normalize import strip_history, to_simplified

# Charsets tried on every body besides the declared one, most common first.
# Hong Kong mailers declare big5 and still send HKSCS characters (嘅, 咗), which big5 refuses;
# big5hkscs reads them, and reads Big5 alike outside the ETEN kana rows C6-C7.
_FALLBACKS = ("utf-8", "gb18030", "big5", "big5hkscs")
# GB2312/GBK are subsets of GB18030; decoding with the superset accepts what mailers really send.
_SUPERSETS = {"gb2312": "gb18030", "gbk": "gb18030", "x-gbk": "gb18030", "cp936": "gb18030",
              "euc-cn": "gb18030", "big5-hkscs": "big5hkscs", "us-ascii": "utf-8",
              "ascii": "utf-8"}
# Below this share of common characters no reading is believed; the message is refused.
_MIN_PLAUSIBLE = 0.5


# Structural budgets of one message, checked before and after parsing. Python's parser spends
# about half a millisecond per MIME part and recurses once per nesting level, so 20,000 sibling
# parts (740 KB) took 9 s and 2,000 nested multiparts overflowed the stack. Real mail nests a
# few levels (mixed > related > alternative, a forwarded message in it) and has a few dozen
# parts at most.
MAX_MIME_PARTS = 200
MAX_MIME_DEPTH = 16
MAX_HEADER_BYTES = 64 * 1024
# Both run over the message read as Latin-1 (one character per byte, so offsets are bytes).
_BOUNDARY = re.compile(r"""boundary\s*=\s*(?:"([^"\r\n]{1,200})"|([^\s;"]{1,200}))""",
                       re.IGNORECASE)
_HEADER_END = re.compile(r"\r?\n\r?\n")


class UndecodableEmail(ValueError):
    """The message's text could not be decoded as any charset Chinese mail uses."""


class EmailTooComplex(ValueError):
    """The message is beyond a structural budget (MIME parts, nesting, header size)."""

    def __init__(self, limit: str, message: str) -> None:
        super().__init__(message)
        self.limit = limit


def check_structure(raw: bytes) -> None:
    """Refuse a message whose parse would cost more than any real email's, before parsing.

    Linear in the message: the header block is found with one search, and parts are counted
    as the delimiter lines of the boundaries the message declares.
    """
    text = raw.decode("latin-1")
    end = _HEADER_END.search(text)
    header_bytes = end.start() if end else len(text)
    if header_bytes > MAX_HEADER_BYTES:
        raise EmailTooComplex("header_bytes", (
            f"the message's header is {header_bytes} bytes; at most {MAX_HEADER_BYTES} are "
            "accepted: send the message without its extra headers"))
    boundaries = {("--" + (m[1] or m[2])).encode("latin-1") for m in _BOUNDARY.finditer(text)}
    if len(boundaries) > MAX_MIME_PARTS:
        raise EmailTooComplex("mime_parts", (
            f"the message declares {len(boundaries)} multipart boundaries; at most "
            f"{MAX_MIME_PARTS} MIME parts are accepted"))
    if not boundaries:
        return
    parts = 0
    for line in raw.splitlines():
        if line.startswith(b"--") and line.rstrip().removesuffix(b"--") in boundaries:
            parts += 1
            if parts > 2 * MAX_MIME_PARTS:
                break
    # Each part opens with a delimiter line and each multipart closes with one.
    if parts - len(boundaries) > MAX_MIME_PARTS:
        raise EmailTooComplex("mime_parts", (
            f"the message has more than {MAX_MIME_PARTS} MIME parts; send the text without "
            "its attachments"))


def _depth(message: Message, limit: int) -> int:
    """Multiparts nested in one another in ``message`` (a plain message has 0), counting no
    further than ``limit`` + 1."""
    deepest = 0
    pending = [(message, 1)]
    while pending:
        part, level = pending.pop()
        if not part.is_multipart():
            continue
        deepest = max(deepest, level)
        if deepest > limit:
            return deepest
        pending.extend((child, level + 1) for child in part.get_payload()
                       if isinstance(child, Message))
    return deepest


@cache
def _common_hanzi() -> frozenset[str]:
    """The 3,755 level-1 characters of GB 2312, the standard list of everyday hanzi."""
    chars = set()
    for row in range(0xB0, 0xD8):
        for col in range(0xA1, 0xFF):
            try:
                chars.add(bytes((row, col)).decode("gb2312"))
            except UnicodeDecodeError:
                continue
    return frozenset(chars)


def plausibility(text: str) -> float:
    """Share of the letters outside ASCII that are everyday hanzi (1.0 for no such letters).

    Measured on the simplified form so a correct Big5 (traditional) reading scores as well as
    a GBK one; a wrong reading yields rare hanzi, kana and symbols and scores low.
    """
    letters = [c for c in to_simplified(text) if ord(c) > 0x7F
               and unicodedata.category(c)[0] not in "PZC"]
    if not letters:
        return 1.0
    common = _common_hanzi()
    return sum(c in common for c in letters) / len(letters)


def decode_text(payload: bytes, declared: str | None) -> tuple[str, str]:
    """(text, charset used) of a body part; the declared charset wins only when plausible."""
    candidates: list[str] = []
    if declared:
        candidates.append(_SUPERSETS.get(declared.lower(), declared.lower()))
    candidates += [c for c in _FALLBACKS if c not in candidates]
    best: tuple[float, str, str] | None = None
    for charset in candidates:
        try:
            text = payload.decode(charset)
        except (UnicodeDecodeError, LookupError):
            continue
        score = plausibility(text)
        if best is None or score > best[0]:
            best = (score, text, charset)
    if best is None or best[0] < _MIN_PLAUSIBLE:
        raise UndecodableEmail(
            f"the body is not text in {declared or 'an undeclared charset'} nor in any of "
            f"{', '.join(_FALLBACKS)}; send UTF-8 or declare the real charset")
    return best[1], best[2]


_BLOCKS = frozenset({"p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "table", "hr"})
_SKIP = frozenset({"script", "style", "head", "title"})
# libxml2 refuses C0 control characters in text; they carry nothing a reader sees.
_CONTROLS = dict.fromkeys((*range(9), 11, 12, *range(14, 32), 127), " ")


def html_to_text(html: str) -> str:
    """Readable text of an HTML body: block elements become line breaks, quoted blocks get
    "> " prefixes, scripts and styles are dropped.

    Parsed by libxml2 (lxml), in time linear in the markup, and nesting deeper than its limit
    (256) is not descended into. The standard library's ``html.parser`` rescans unclosed tags
    from each "<": 100 KB of ``<a b=`` took 55 s there, holding the event loop.
    """
    parser = lxml.html.HTMLParser(encoding="utf-8", no_network=True, remove_comments=True,
                                  remove_pis=True)
    try:
        root = lxml.html.document_fromstring(
            html.translate(_CONTROLS).encode("utf-8", "replace"), parser=parser)
    except (lxml.etree.ParserError, ValueError):  # no element at all: nothing to read
        return ""
    parts: list[str] = []
    skip = quote = 0

    def add(data: str | None) -> None:
        if not data or skip:
            return
        if quote:
            data = "\n".join("> " + line for line in data.splitlines() if line.strip())
        parts.append(data)

    for event, element in lxml.etree.iterwalk(root, events=("start", "end")):
        tag = element.tag if isinstance(element.tag, str) else ""
        if event == "start":
            if tag in _SKIP:
                skip += 1
            elif tag == "blockquote":
                quote += 1
                parts.append("\n")
            elif tag in _BLOCKS:
                parts.append("\n")
            add(element.text)
            continue
        if tag in _SKIP:
            skip = max(0, skip - 1)
        elif tag == "blockquote":
            quote = max(0, quote - 1)
            parts.append("\n")
        elif tag in _BLOCKS:
            parts.append("\n")
        add(element.tail)
    lines = (line.replace("\xa0", " ").strip() for line in "".join(parts).splitlines())
    return "\n".join(line for line in lines if line)


def _recover_header(value: str) -> str:
    """Raw 8-bit header bytes (no RFC 2047 encoding) come back as surrogates: decode them."""
    if not any("\udc80" <= c <= "\udcff" for c in value):
        return value
    raw = value.encode("utf-8", "surrogateescape")
    try:
        return decode_text(raw, None)[0]
    except UndecodableEmail:
        return raw.decode("utf-8", "replace")


# One <id> of a Message-ID, In-Reply-To or References header. Linear: a try starts only at a
# "<" and reads no further than the next "<", ">" or space.
_ANGLE_ID = re.compile(r"<([^<>\s]+)>")


def _ids(value: object) -> list[str]:
    return _ANGLE_ID.findall(str(value or "")) or (
        [str(value).strip()] if value and str(value).strip() else [])


@dataclass(frozen=True)
class ParsedEmail:
    """What the pipeline keeps of one email (no addresses, no attachment contents)."""

    message_id: str | None
    in_reply_to: str | None
    references: list[str]
    subject: str
    sent_at: datetime | None
    body: str
    new_text: str
    charset: str | None
    attachments: list[str] = field(default_factory=list)

    @property
    def thread_id(self) -> str | None:
        """The first message of the thread: References' root, else the parent, else itself."""
        if self.references:
            return self.references[0]
        return self.in_reply_to or self.message_id


def parse_rfc822(raw: bytes) -> ParsedEmail:
    """Parse one RFC 822 message; raises ``UndecodableEmail`` when no body text is readable
    and ``EmailTooComplex`` when it is beyond the structural budgets. CPU-bound: callers on an
    event loop run it in a worker thread."""
    check_structure(raw)
    message = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    depth = _depth(message, MAX_MIME_DEPTH)
    if depth > MAX_MIME_DEPTH:
        raise EmailTooComplex("mime_depth", (
            f"the message nests MIME parts more than {MAX_MIME_DEPTH} levels deep; send the "
            "text without the nested attachments"))
    attachments: list[str] = []
    plain: tuple[bytes, str | None] | None = None
    html: tuple[bytes, str | None] | None = None
    for part in message.walk():
        if part.is_multipart():
            continue
        filename = part.get_filename()
        if filename or part.get_content_disposition() == "attachment":
            attachments.append(_recover_header(filename or "(unnamed)"))
            continue
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            continue
        if part.get_content_type() == "text/plain" and plain is None:
            plain = (payload, part.get_content_charset())
        elif part.get_content_type() == "text/html" and html is None:
            html = (payload, part.get_content_charset())
    if plain is not None:
        body, charset = decode_text(*plain)
    elif html is not None:
        markup, charset = decode_text(*html)
        body = html_to_text(markup)
    else:
        raise UndecodableEmail("the message has no text/plain or text/html body to analyse")
    body = "\n".join(body.splitlines()).strip()
    if not body:
        raise UndecodableEmail("the message body is empty: there is no text to analyse")
    try:
        sent = message["Date"].datetime if message["Date"] else None
    except (AttributeError, TypeError, ValueError):
        sent = None
    if sent is not None and sent.tzinfo is None:
        sent = sent.replace(tzinfo=UTC)
    message_ids = _ids(message["Message-ID"])
    parents = _ids(message["In-Reply-To"])
    return ParsedEmail(
        message_id=message_ids[0] if message_ids else None,
        in_reply_to=parents[0] if parents else None,
        references=_ids(message["References"]),
        subject=_recover_header(str(message["Subject"] or "")).strip(),
        sent_at=sent, body=body, new_text=strip_history(body), charset=charset,
        attachments=attachments,
    )


def content_id(raw: bytes) -> str:
    """A stable id for a message without Message-ID, so a re-sent copy still deduplicates."""
    return "sha256:" + hashlib.sha256(raw).hexdigest()
