"""Word segmentation with jieba's dictionary and algorithm, run in Rust (rjieba, a jieba-rs binding).

Python jieba's ``cut`` was half of the NLP stage's CPU (about 0.25 ms per review on one core);
jieba-rs implements the same prefix dictionary, DAG and max-probability route over the same
bundled ``dict.txt`` about ten times faster. Without HMM (the analyzer's setting) the tokens of
all 62,319 dev texts agree with jieba's exactly but for one tie between equally likely routes
(``bench/nlp_bench.py`` prints the agreement). Python jieba stays for its IDF table and stop
words (:mod:`services.nlp.keywords`).

Each :class:`Segmenter` owns its dictionary, so loading a deployment's words changes only the
analyzer that asked for them, not a process-wide global. Segmenters that loaded the same words
share the words of the texts they cut last (:class:`RecentCuts`): the NLP stage cuts the same
text up to three times per event (the analyzer's tokens, the topic tagger's and the urgency
scorer's word features).
"""

from __future__ import annotations

import re
import threading
from importlib import resources
from pathlib import Path

import rjieba

# jieba's own user-dictionary line syntax: ``word [freq] [tag]``, the word may contain spaces.
_USER_DICT_LINE = re.compile(r"^(.+?)( [0-9]+)?( [a-z]+)?$")

RECENT_CHARS = 1 << 18
"""How many characters of the texts they cut last the segmenters of one dictionary remember:
several batches' worth (the stage cut 36,000-69,000 characters per batch of 256 dev reviews,
texts and clauses, every segmenter counted), a few MB of words."""


class RecentCuts:
    """The words of the texts cut last with one dictionary, shared by the segmenters that loaded
    it, the oldest forgotten first once they hold more than :data:`RECENT_CHARS` characters.

    In the NLP stage the analyzer cuts an event's text for its tokens, and the topic tagger and
    the urgency scorer cut it again (lower-cased and with white space collapsed, which leaves
    most Chinese texts as they were) for their word features; three cuts were 70 µs per event,
    40 of them for texts cut before. A text is looked up as it is given, so a hit returns
    exactly the words cutting it again would.
    """

    def __init__(self) -> None:
        self._words: dict[str, tuple[str, ...]] = {}
        self._chars = 0
        self._lock = threading.Lock()

    def get(self, text: str) -> tuple[str, ...] | None:
        return self._words.get(text)

    def put(self, text: str, words: tuple[str, ...]) -> None:
        if len(text) > RECENT_CHARS:
            return
        with self._lock:
            if text in self._words:
                return
            self._words[text] = words
            self._chars += len(text)
            while self._chars > RECENT_CHARS:
                oldest = next(iter(self._words))
                del self._words[oldest]
                self._chars -= len(oldest)


_RECENT: dict[tuple[str, ...], RecentCuts] = {}
"""The shared :class:`RecentCuts` per dictionary, keyed by the dictionary texts loaded, in order."""
_RECENT_LOCK = threading.Lock()


def recent_cuts(loaded: tuple[str, ...]) -> RecentCuts:
    """The :class:`RecentCuts` of the segmenters that loaded these dictionary texts in this order."""
    with _RECENT_LOCK:
        return _RECENT.setdefault(loaded, RecentCuts())


def forget_recent_cuts() -> None:
    """Empty every :class:`RecentCuts`: for a bench that replays the same texts, whose second pass
    would otherwise find every text's words cut already, which fresh traffic never does."""
    with _RECENT_LOCK:
        for cuts in _RECENT.values():
            with cuts._lock:
                cuts._words.clear()
                cuts._chars = 0


class Segmenter:
    """jieba-compatible segmentation (HMM off) with the shipped and a deployment's user dictionary.

    jieba's default dictionary splits contact-center words (12315, 消协, 闪退, 快递员) or does
    not know them, which degrades tokens and keywords, so the shipped ``user_dict.txt`` is
    always loaded, then ``VOC_JIEBA_USER_DICT`` when set. A word loaded again simply gets the
    later entry's frequency, as in jieba.
    """

    def __init__(self, user_dict: Path | None = None) -> None:
        self._jieba = rjieba.Jieba()
        self._loaded: tuple[str, ...] = ()
        self._recent = recent_cuts(self._loaded)
        shipped = resources.files(__package__).joinpath("user_dict.txt")
        self._add_words(shipped.read_text(encoding="utf-8-sig"))
        if user_dict is not None:
            self.load_user_dict(user_dict)

    def load_user_dict(self, path: Path) -> None:
        """Add the words of a jieba user dictionary file (one ``word [freq] [tag]`` per line)."""
        if not path.is_file():
            raise ValueError(f"VOC_JIEBA_USER_DICT={path} is not a file; point it at a jieba "
                             "user dictionary (one `word [freq] [tag]` per line)")
        try:
            text = path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ValueError(f"VOC_JIEBA_USER_DICT={path} is not UTF-8 ({exc}); save it as UTF-8") from exc
        self._add_words(text)

    def _add_words(self, text: str) -> None:
        for line in filter(None, map(str.strip, text.splitlines())):
            # The pattern matches every non-empty line, as jieba's own does.
            word, freq, tag = _USER_DICT_LINE.match(line).groups()  # type: ignore[union-attr]
            self._jieba.add_word(word.strip(), int(freq) if freq else None,
                                 tag.strip() if tag else None)
        self._loaded = (*self._loaded, text)
        self._recent = recent_cuts(self._loaded)

    def cut(self, text: str) -> list[str]:
        """The words of ``text`` in order, as ``jieba.lcut(text, HMM=False)`` gives them (a new
        list: the caller may change it)."""
        words = self._recent.get(text)
        if words is None:
            words = tuple(self._jieba.cut(text, False))
            self._recent.put(text, words)
        return list(words)
