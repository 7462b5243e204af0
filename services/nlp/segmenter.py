"""Word segmentation with jieba's dictionary and algorithm, run in Rust (rjieba, a jieba-rs binding).

Python jieba's ``cut`` was half of the NLP stage's CPU (about 0.25 ms per review on one core);
jieba-rs implements the same prefix dictionary, DAG and max-probability route over the same
bundled ``dict.txt`` about ten times faster. Without HMM (the analyzer's setting) the tokens of
all 62,319 dev texts agree with jieba's exactly but for one tie between equally likely routes
(``bench/nlp_bench.py`` prints the agreement). Python jieba stays for its IDF table and stop
words (:mod:`services.nlp.keywords`).

Each :class:`Segmenter` owns its dictionary, so loading a deployment's words changes only the
analyzer that asked for them, not a process-wide global.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path

import rjieba

# jieba's own user-dictionary line syntax: ``word [freq] [tag]``, the word may contain spaces.
_USER_DICT_LINE = re.compile(r"^(.+?)( [0-9]+)?( [a-z]+)?$")


class Segmenter:
    """jieba-compatible segmentation (HMM off) with the shipped and a deployment's user dictionary.

    jieba's default dictionary splits contact-center words (12315, 消协, 闪退, 快递员) or does
    not know them, which degrades tokens and keywords, so the shipped ``user_dict.txt`` is
    always loaded, then ``VOC_JIEBA_USER_DICT`` when set. A word loaded again simply gets the
    later entry's frequency, as in jieba.
    """

    def __init__(self, user_dict: Path | None = None) -> None:
        self._jieba = rjieba.Jieba()
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

    def cut(self, text: str) -> list[str]:
        """The words of ``text`` in order, as ``jieba.lcut(text, HMM=False)`` gives them."""
        return self._jieba.cut(text, False)
