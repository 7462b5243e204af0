"""Text normalisation shared by ingest and the NLP stage: the text that analysis sees.

The original text is always kept on the event; ``analysis_text`` is derived from it so that
models trained on simplified Chinese plain prose are not thrown off by traditional characters,
URLs, @mentions, hashtag markup or emoji. These are the text tools; which channel uses which
is declared once, in services/core/channels.py, for ingest and the NLP stage alike.
"""

from __future__ import annotations

import hashlib
import re
import threading
from dataclasses import dataclass, field
from functools import cache

import opencc

# Every pattern here runs over customer text in linear time: a scan tries each position once,
# and from a position it reads either one maximal run of a character class (which the next
# try starts after, when it matched) or at most a bounded number of characters: the bound is
# stated where it is more than a few (tests/unit/test_patterns_linear.py times each on 100 KB).
_URL = re.compile(r"(?:https?://|www\.|t\.cn/)[^\s\u3000-\u303f\u4e00-\u9fff\uff00-\uffef<>\"']+",
                  re.IGNORECASE)
# A handle runs until whitespace or punctuation; Weibo ends a mention with a space or colon.
# At most 31 characters read per "@".
_MENTION = re.compile(r"@([0-9A-Za-z_\-\u4e00-\u9fff]{1,30})")
# Weibo/WeChat topics are #话题#; Douyin/Xiaohongshu write #话题 up to a space. At most 66
# characters read per "#" (an unclosed "#" costs 65: O(65 n) for a text of "#"s and letters).
_TOPIC_PAIRED = re.compile(r"#([^#\s]{1,64})#")
_TOPIC_OPEN = re.compile(r"#([0-9A-Za-z_\u4e00-\u9fff]{1,64})")
# Platform emoticon codes such as [怒] or [哈哈]: the word inside carries the sentiment.
_EMOTICON = re.compile(r"\[([\u4e00-\u9fff]{1,4})[A-Za-z]?\]")
_EMOJI = re.compile("[\U0001F000-\U0001FAFF\u2600-\u27BF\u2B00-\u2BFF\u2300-\u23FF"
                    "\uFE0F\u200D\U000E0020-\U000E007F]+")
# Anchored at the start of the text (no MULTILINE), so it is tried at one position only.
_REPLY_LEAD = re.compile(r"^\s*(?:回复|回覆|回復|//)\s*@[^\s:：]{1,30}\s*[:：]\s*")
_SPACES = re.compile(r"[ \t\u3000]+")

# The emoji customers use to say how they feel, as the word a Chinese model understands.
# Others carry little sentiment and are dropped from the analysed text.
EMOJI_WORDS = {
    "😡": "愤怒", "😠": "生气", "🤬": "愤怒", "😤": "生气", "😭": "大哭", "😢": "难过",
    "😞": "失望", "😔": "失望", "💔": "伤心", "👎": "差评", "🙄": "无语", "😓": "无奈",
    "😂": "笑哭", "👍": "赞", "😊": "开心", "😄": "开心", "😀": "开心", "🥰": "喜欢",
    "😍": "喜欢", "❤": "喜欢", "👏": "赞", "🙏": "感谢", "💯": "满分", "🤮": "恶心",
}


@cache
def _converter() -> tuple[opencc.OpenCC, threading.Lock]:
    return opencc.OpenCC("t2s"), threading.Lock()


def to_simplified(text: str) -> str:
    """Traditional Chinese (incl. HK/TW forms) converted to simplified; other text unchanged."""
    converter, lock = _converter()
    with lock:
        return converter.convert(text)


@dataclass(frozen=True)
class SocialText:
    """A post's text made fit for analysis, with the markup it contained listed."""

    analysis: str
    mentions: list[str] = field(default_factory=list)
    hashtags: list[str] = field(default_factory=list)
    urls: list[str] = field(default_factory=list)
    emoji: list[str] = field(default_factory=list)


def _emoji_words(match: re.Match[str]) -> str:
    words = dict.fromkeys(EMOJI_WORDS[char] for char in match[0] if char in EMOJI_WORDS)
    return f" {'，'.join(words)} " if words else " "


def normalize_social(text: str) -> SocialText:
    """Social markup normalised: URLs and @mentions dropped, #topics# and [emoticons] kept as
    words, feeling emoji turned into words; the analysed text is simplified Chinese.

    A Weibo repost ("my comment//@someone: their post") is analysed by its own comment only,
    and the "回复@someone:" lead of a reply is dropped: neither is the author's own voice.
    """
    own, _, _ = text.partition("//@")
    text = own if own.strip() else text
    urls = _URL.findall(text)
    stripped = _URL.sub(" ", text)
    mentions = _MENTION.findall(stripped)
    stripped = _MENTION.sub(" ", _REPLY_LEAD.sub("", stripped))
    hashtags = _TOPIC_PAIRED.findall(stripped)
    stripped = _TOPIC_PAIRED.sub(lambda m: f" {m[1]} ", stripped)
    hashtags += _TOPIC_OPEN.findall(stripped)
    stripped = _TOPIC_OPEN.sub(lambda m: f" {m[1]} ", stripped)
    emoji = [c for run in _EMOJI.findall(stripped) for c in run if c not in "\ufe0f\u200d"]
    stripped = _EMOJI.sub(_emoji_words, stripped)
    stripped = _EMOTICON.sub(lambda m: m[1], stripped)
    return SocialText(analysis=to_simplified(tidy(stripped)), mentions=mentions,
                      hashtags=hashtags, urls=urls, emoji=emoji)


def tidy(text: str) -> str:
    """Runs of spaces collapsed and blank lines dropped, so spans stay compact."""
    lines = (_SPACES.sub(" ", line).strip() for line in text.splitlines())
    return "\n".join(line for line in lines if line)


# A reply or forward header: everything from here down is earlier mail. Only ever applied
# with .match to one stripped line, so it is tried at the line's start alone; from there
# "On ... wrote" reads at most 300 characters ahead, "在 ... 写道" 120, and the "-{2,}" and
# "_{10,}" runs are one class each, given back one character at a time at most once.
_HISTORY = re.compile(
    r"^(?:On\b.{0,300}\bwrote:?"
    r"|在\s?.{0,120}[写寫]道[:：]?"
    r"|-{2,}\s*(?:Original Message|Forwarded message|原始邮件|原始郵件|转发邮件|轉寄郵件"
    r"|转发的邮件|轉發的郵件|转发邮件信息|Begin forwarded message)\s*-*"
    r"|Begin forwarded message:?"
    r"|_{10,}"
    r"|(?:From|发件人|發件人|寄件者)\s*[:：].*)$",
    re.IGNORECASE)
# A signature or client footer: everything from here down is not the customer's message.
# Applied like _HISTORY: one try per line, reading the line at most twice ("从我的.*发送").
_SIGNATURE = re.compile(
    r"^(?:--\s?|—{2,}|此致|Sent from my .*|发自我的.*|發自我的.*|从我的.*发送|來自我的.*"
    r"|发自.{0,12}邮箱.*|Get Outlook for .*)$",
    re.IGNORECASE)

# A signature without a delimiter, recognised line by line from the bottom of the new message:
# a sign-off (此致, 祝好, Best regards), a name with a title (王先生, 林先生 敬上), a contact line
# (电话：..., 手机 <PHONE>), a company or department, a date, a redacted number alone. Each is
# applied with .match to one stripped line; every repetition is bounded.
_SIGN_OFF = re.compile(
    r"^(?:此致|敬礼|敬禮|此致敬礼|祝好|祝(?:工作)?顺利|祝(?:工作)?順利|祝\s?顺心|祝\s?順心|顺颂商祺|順頌商祺|"
    r"谢谢|謝謝|多谢|多謝|Best regards|Regards|Best|Thanks|Thank you|BR|Cheers)[,，。.!！\s]*$",
    re.IGNORECASE)
_SIGNATURE_LINE = re.compile(
    r"^(?:.{0,20}(?:电话|電話|手机|手機|Tel|Mobile|邮箱|郵箱|E-?mail|微信|传真|傳真|联系人|聯絡人)\s*[:：]?\s?"
    r"[^。！？!?]{0,60}"
    r"|[\u4e00-\u9fff]{1,3}(?:先生|女士|小姐|太太)(?:\s?敬上)?"
    r"|[\u4e00-\u9fff]{2,4}\s?敬上"
    r"|[^。！？!?]{0,30}(?:有限公司|公司|采购部|財務|财务|物流部|行政|委员会|委員會)[^。！？!?]{0,30}"
    r"|[^。！？!?]{0,12}<(?:PHONE|EMAIL)>[^。！？!?]{0,12}"
    r"|[0-9]{4}年[0-9]{1,2}月[0-9]{1,2}日"
    r"|一位[\u4e00-\u9fff]{1,8}"
    r"|[0-9]{1,3}号?[楼樓][^。！？!?]{0,12}"
    r"|(?:持卡人|卡号|卡號|户号|戶號|VIN|宽带账号|寬頻帳號)\s*[:：][^。！？!?]{0,40})$",
    re.IGNORECASE)
# A bare name (陈明, Amy Wong): a signature only right after a sign-off or a finished sentence.
_BARE_NAME = re.compile(r"^(?:[\u4e00-\u9fff]{2,4}|[A-Za-z][A-Za-z .]{1,29})$")
_SENTENCE_END = re.compile(r"[。！？!?.~～]$")


def strip_signature(text: str) -> str:
    """The message without a trailing signature that has no delimiter line.

    Mail clients and people often sign without "--": 王先生 / 手机：138..., 祝工作顺利 / 陈明,
    Best regards, / 刘洋 / 采购部. Lines are dropped from the bottom while they look like a
    signature; the first line that does not ends the signature. A message that would be left
    empty is kept whole.
    """
    lines = [line.rstrip() for line in text.splitlines()]
    end = len(lines)
    while end > 0:
        line = lines[end - 1].strip()
        if not line or _SIGN_OFF.match(line) or _SIGNATURE_LINE.match(line):
            end -= 1
            continue
        if _BARE_NAME.match(line):
            above = next((lines[i].strip() for i in range(end - 2, -1, -1) if lines[i].strip()), "")
            if _SIGN_OFF.match(above) or _SENTENCE_END.search(above) or _SIGNATURE_LINE.match(above):
                end -= 1
                continue
        break
    kept = "\n".join(lines[:end]).strip()
    return kept or text.strip()


# The quote marks that start a quoted line ("> > text"), removed as one run of ">" and spaces.
_QUOTE_MARKS = re.compile(r"^>[>\s]*")


def strip_history(text: str) -> str:
    """The new part of a message: no quoted lines, earlier mail or signature.

    A message that is nothing but a forward keeps the forwarded text (minus quote marks):
    then that is what the customer is sending us.
    """
    kept: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if _HISTORY.match(stripped) or _SIGNATURE.match(stripped):
            break
        if stripped.startswith(">"):
            continue
        kept.append(line)
    new = strip_signature("\n".join(kept))
    if new:
        return new
    unquoted = (_QUOTE_MARKS.sub("", line.strip()) for line in text.splitlines())
    return "\n".join(line for line in unquoted
                     if line and not _HISTORY.match(line)).strip()


def pseudonym(value: str) -> str:
    """A stable stand-in for an id that embeds personal data (a Message-ID holds an address).

    Equal ids map to equal pseudonyms, so threads still link and re-sends still deduplicate.
    """
    if value.startswith("h:"):
        return value
    return "h:" + hashlib.sha256(value.encode("utf-8")).hexdigest()[:32]
