"""Candidate phrases of one event, from the tokens the NLP stage already produced: the
emerging-topic detector's vocabulary (docs/emerging.md).

A candidate is a content word (two characters or more, holding a letter or hanzi, not a stop
word) or a run of two or three adjacent content words, so "电池 鼓包" is a candidate when the
segmenter split 电池鼓包 in two. Whether a run is *cohesive* (its words occur together rather
than by chance) is decided later against the window's counts (services/alerting/emerging.py);
here every run is only offered. Words of a phrase are joined by one space, so the detector can
take a phrase apart again; :func:`display` writes it as a reader (and the taxonomy) would.

Each event offers at most :data:`MAX_PHRASES` distinct candidates (the first ones in reading
order), each at most :data:`MAX_PHRASE_CHARS` long: a 10,000-token event stores a bounded row.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from services.core.pii import mask_placeholders

MAX_PHRASES = 64
MAX_PHRASE_CHARS = 24
MAX_WORDS = 3

_WORDLIKE = re.compile(r"[\u4e00-\u9fffA-Za-z]")
_HAN_EDGE = re.compile(r"[\u4e00-\u9fff]")

STOP_WORDS = frozenset("""
的 了 是 我 你 他 她 它 们 我们 你们 他们 她们 这 那 这个 那个 这些 那些 这样 那样 这么 那么
什么 怎么 怎么样 为什么 哪里 哪个 还是 而且 但是 可是 因为 所以 如果 虽然 然后 已经 一直 一下
一个 一些 一点 有点 有些 没有 不是 就是 还有 可以 不能 不会 不要 需要 应该 可能 能够 觉得 感觉
知道 真的 非常 特别 比较 太 很 都 也 就 还 又 再 才 在 和 与 及 或 或者 以及 对于 关于 通过 进行
之后 之前 以后 以前 现在 今天 昨天 明天 时候 时间 问题 情况 东西 地方 事情 一样 一般 其实 而已
出来 起来 下去 过来 看看 说说 自己 大家 你好 您好 谢谢 请问 麻烦 希望 谢谢你 好的 好吧 嗯嗯
哈哈 呵呵 啊啊 吗 呢 吧 啊 哦 嗯 呀 哈 the a an and or of to in on for is are was were be it
this that with at by from as not no yes but if so do does did have has had i you he she we they
""".split())
"""Function words and fillers that say nothing about what went wrong: never a candidate, and
never part of one (a run stops at them)."""


def is_content(token: str) -> bool:
    """Whether a token may be (part of) a candidate."""
    return (len(token) >= 2 and _WORDLIKE.search(token) is not None
            and token.lower() not in STOP_WORDS)


def candidate_phrases(tokens: Sequence[str]) -> list[str]:
    """The event's distinct candidates in reading order: each content word, then the runs of
    two and three content words starting at it, bounded as the module says. A redaction
    placeholder is no candidate and ends a run."""
    tokens = mask_placeholders(tokens)
    found: dict[str, None] = {}
    content = [is_content(t) for t in tokens]
    for i in range(len(tokens)):
        if not content[i]:
            continue
        for n in range(1, MAX_WORDS + 1):
            if i + n > len(tokens) or not content[i + n - 1]:
                break
            phrase = " ".join(tokens[i:i + n])
            if len(phrase) > MAX_PHRASE_CHARS:
                break
            found.setdefault(phrase.lower(), None)
            if len(found) >= MAX_PHRASES:
                return list(found)
    return list(found)


def words(phrase: str) -> list[str]:
    """The words of a stored phrase."""
    return phrase.split(" ")


def display(phrase: str) -> str:
    """A phrase as written: words joined without a space where both sides are hanzi (电池鼓包),
    with one elsewhere (app 闪退)."""
    parts = words(phrase)
    out = parts[0]
    for word in parts[1:]:
        joint = "" if _HAN_EDGE.match(out[-1]) and _HAN_EDGE.match(word[0]) else " "
        out += joint + word
    return out
