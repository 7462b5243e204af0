"""Event sentiment and intent as a person reads them: clauses, contrast, cues, a learned neutral class.

The review-trained sentiment model scores a whole text as one bag of n-grams, which fails on
contact-center and social feedback in known ways (issue 16): mixed feedback takes the first
clause (还行吧，就是噪音比想象中大 scored +0.85), angry rhetorical questions look like inquiries
(这能用吗？？), sarcasm reads as praise (太“好”了, 👍 after a complaint), a problem reported with a
request (上不了网，能派人来修吗) looks like a question, and plain questions and acknowledgements
get strong scores from a model that has never seen a neutral text.

So the event's stance is decided from three kinds of evidence:

- the model's score of the whole text and of each clause, with the clauses after a contrast
  (但是 / 就是 / 不过 / 可惜 ...) weighted up, because what follows the contrast is the point;
- cue phrases, each a small linear-time pattern over the analysed text: questions, angry
  rhetorical questions, grievances, problem reports, praise and thanks, suggestions,
  acknowledgements and notices, sarcasm, negated negatives (一点也不慢);
- the text itself: character 1-3-grams (TF-IDF), so that phrasing no cue list names still
  counts.

:class:`StanceModel` (2.0.0) is two multinomial logistic regressions over the n-grams and the
cue and score features: one for the sentiment (negative / neutral / positive, the neutral class
learned, not a damping factor) and one for the intent (complaint, inquiry, praise, suggestion,
other). They are fitted on every author's labelled items (``bench/train_nlp.py stance``; the
settings chosen by leave-one-author-out, docs/model-card.md "Round 3"). The two are decoded
together (:func:`decide`): the pair of labels that the training data allows (a complaint is
negative, an inquiry neutral ...) with the highest ``log p(sentiment) + w log p(intent)``.
Sarcasm, contrast and rhetorical questions reach the models as features, not as rules; the
guide's one hard rule stays: a message that threatens escalation or reports a safety issue or a
repeated contact is a complaint however it is phrased, and a grievance cue without praise is
never positive.

:func:`intent_of_stance` is the cue reading of intent alone (no model), kept for callers of
``services.nlp.cues.intent_of``.

The event's score keeps the pipeline's convention (``2 p - 1`` like, in [-1, 1], neutral
inside the default band of 0.2): a polar label maps to ``±(0.2 + 0.8 * (p_label - p_opposite))``
and the neutral label to ``0.2 * (p_positive - p_negative)``, so the default band reproduces
the model's decision and the score still orders events by polarity.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from importlib.abc import Traversable
from operator import mul
from pathlib import Path
from typing import Any

import numpy as np

from services.core.events import Intent, SentimentLabel
from services.nlp.matching import MAX_CUE_MATCHES, compile_cue, cue_spans, screen
from services.nlp.sentiment_model import NgramIndex, char_ngrams, read_arrays, write_arrays

STANCE_FILE = "stance.json"
STANCE_ARRAYS = "stance.npz"
"""The n-gram vocabulary, its IDF and the n-gram weights of both heads, next to ``stance.json``."""
LABELS: tuple[SentimentLabel, ...] = ("negative", "neutral", "positive")
INTENTS: tuple[Intent, ...] = ("complaint", "inquiry", "other", "praise", "suggestion")
NGRAM_MAX = 3
NGRAM_MAX_CHARS = 4000
"""Characters of a text whose n-grams are read (as the sentiment model's)."""
HARD_FLAGS = ("escalation_threat", "safety", "repeat_contact")
"""Urgency flags that make a message a complaint however it is phrased (docs/annotation-guide.md)."""
REFERENCE_BAND = 0.2
"""The neutral band the event score is laid out for (the default of ``VOC_NEUTRAL_BAND``)."""

CONTRAST_WEIGHT = 3.0
"""Weight of a clause that follows a contrast word, against 1 for the others."""

MAX_CLAUSES = 64
"""Clauses of one text whose scores are read: the first and last halves of this many. A long
transcript or email has thousands; its opening and closing are where the stance is stated,
and the cap bounds the model's work per event."""

# Every pattern below runs over customer text: alternations of literals and short bounded
# classes, no nested quantifier, so each scan is linear (tests/unit/test_patterns_linear.py).
CONTRAST = re.compile(r"^\s*(?:但是|但係|但系|但|就是|只是|不过|不過|可惜|然而|可是|只不过|倒是)")
QUESTION = re.compile(
    r"[?？]|请问|想问|问一下|问下|咨询|吗[。！!，,\s]*$|怎么(?:办|弄|操作|处理|查|退|改|开通|提交|用|交|算|样)|"
    r"如何|什么时候|多久|要几天|需要几天|几天(?:能|可以|才|到|内)|几点|能否|是否|哪里(?:可以|能|有|买|查|领|下载|办|退|寄)|在哪|到哪|哪些|哪个|多少|有没有|能不能|可不可以|"
    r"要不要|需不需要|点样|几时|系咪|可唔可以|几多")
RHETORICAL = re.compile(
    r"[?？]{2,}|凭什么|凭啥|难道|到底|谁负责|谁出|怎么回事|什么意思|搞什么|搞咩|算什么|有什么用|有啥用|"
    r"这合理吗|合理吗|是不是(?:故意|骗|根本|在骗|假)|就这[?？!！。，]|就这$|这就是|是摆设|让我怎么办|"
    r"怎么不说|不是说|还能不能|能用吗|这能用|什么破|什么鬼|是认真的|到哪里去|去哪了|人呢|有人吗|"
    r"点解|也配|你们不是|你家.{0,6}是正常|是正常现象[?？]|还要等[?？]|试试[?？]")
GRIEVANCE = re.compile(
    r"为什么|为啥|凭什么|怎么回事|还没|还不|一直(?:不|没|报错|打不通|显示|提示|失败|断|亮)|"
    r"又(?:坏|错|慢|没|崩|断|死机|迟到|涨|发错|送错|降)|太(?:差|慢|贵|烂|坑|难|少|窄|小|薄|狠|吓人|复杂|高)|"
    r"垃圾|骗|坑|投诉|差评|赔偿|失望|生气|气死|烦死|很烦|无语|用不了|不能用|报错|打不通|没人(?:接|理|管|来)|"
    r"不理|敷衍|坏了|破了|送错|发错|少发|漏发|乱扣|扣错|过期|迟到|不道歉|凉了|后悔|避雷|踩雷|别买|别住|"
    r"别去|千万别|恶心|吓死|吓人|差劲|离谱|服了|寒心|傻眼|太扯|无言|拉胯|翻车|智商税|寂寞|不值|难吃|难用|"
    r"很差|好差|真差|最差|不满意|不满|不解决|没解决|不处理|没处理|不合理|乱收|多收|多扣|被盗|被骗|没收到|"
    r"弄丢|摔坏|烂了|霉|蟑螂|漏水|漏电|漏气|故障|失灵|死机|闪退|崩了|黑屏|断网|没信号|延误|超时|冒领|"
    r"拒赔|不赔|不给退|不能退|冇人|唔通|未到|差很远|太旧|不敢|危险|累死|浪费|白跑|白攒|莫名其妙|推卸|"
    r"踢皮球|推来推去|不清不楚|说不清|爱答不理|被坑|吐槽|痛苦|头疼|崩溃|醉了|呵呵|受不了|"
    r"经常(?:崩|坏|断|卡|掉线|出错|报错|死机|停电|停水)|进不去|登不上|虚假宣传|被冒用|冒用|忽冷忽热|"
    r"(?:没有任何|也没个|没有|没)(?:提前)?通知|才(?:到|来|接通|回复|回电|处理)")
PROBLEM = re.compile(
    r"坏|故障|失败|错误|异常|不了|不能|没法|无法|没有收到|没收到|一直|断|停电|停水|漏|丢|少了|少送|少发|"
    r"发错|送错|超时|延误|晚点|没到账|未到账|冻结|扣了|多扣|被扣|收了|多收|不见|消失|查不到|不一致|不匹配|"
    r"临期|限速|红灯|烂|碎|裂|破|划痕|污渍|取消了|没房|满房|拒收|退回|冒领|盗刷|吞|熄火|爆胎|摔|疼|痒|"
    r"起疹|吐|不冷|不热|不制|没信号|没反应|不亮|不动|没到|没来|没人|没有人|被拒|拒绝|太贵|涨了|降了|"
    r"多了|不对|不符|差|慢|等了|还没|未|冇|唔|没有任何")
PRAISE = re.compile(
    r"谢谢|感谢|多谢|唔该晒|点赞|好评|表扬|满意|推荐|给力|五星|yyds|绝绝子|真香|靠谱|辛苦了|太好了|"
    r"很好|真好|挺好|不错|好棒|真棒|一流|很专业|耐心|热情|贴心|周到|细心|放心|省心|感动|喜欢|值了|超值|"
    r"划算|没话说|杠杠的|666|大推|好用|好吃|好喝|好看|舒服|干净|温柔|可爱|nice|棒|好正|好有心|好有礼貌|"
    r"好快|很快|及时|准时|顺利|解决了|解决咗|搞定了|没失望|致敬|心疼|实用|方便|清楚|直觉|真实|透明|"
    r"非常好|实惠|用心|性价比(?:很)?高|有面子|超赞|完美|太棒|优秀|物美价廉|值得|好评如潮|"
    r"态度(?:很|超|真|特别|非常|挺|蛮|也太)?好|效率(?:是)?(?:真的|很|超|挺|非常|特别)?高|最好的|"
    r"见过最好|挺快|蛮快|超快")
SUGGESTION = re.compile(
    r"建议|希望(?:你们|贵司|能|可以|以后|下次|平台|贵公司|增加|别|提供)|能不能(?:加|增加|出|别|提供|支持)|"
    r"可不可以(?:加|增加|提供|开通|支持)|可以(?:加|增加)一个|可否|最好(?:能|是)|要是能|如果能|就(?:更)?好了|"
    r"应该(?:增加|加|改|提供|优化)|加一个|增加一个|出个|能否(?:增加|提供)")
ACKNOWLEDGEMENT = re.compile(
    r"^(?:(?:好的?|嗯|哦|收到了?|知道了|明白了?|我明白了?|了解了?|谢谢[你您]?|多谢|唔该|麻烦[你您]?了|ok|OK|好吧|行吧|"
    r"行|确认|可以|没问题|辛苦了|谢谢啦|那我再等等吧|我再考虑一下|再看看|无|没有|暂无|无意见|没意见|"
    r"没有意见|无建议|没有建议|那?我等(?:你们的?)?消息)"
    r"[，,。！!~～\s]*)+$")
NOTICE = re.compile(
    r"^(?:我的?)?(?:订单号?|单号|手机号?|电话(?:号码)?|地址|姓名|账号|会员号|身份证号?|卡号|邮箱|联系电话)(?:是|为|：|:)|"
    r"通知|提醒大家|请大家|大家留意|请留意|留意|请帮我|帮我(?:改|查|把|更新)|确认|预约|申请|办理|变更|转发|"
    r"联系人|联系邮箱|请尽快安排|请告知|已(?:经)?收到|已受理|请等待|<PHONE>|<EMAIL>|<ID_CARD>|"
    r"<BANK_CARD>")
SARCASM = re.compile(
    r"[“\"][^”\"\s]{1,4}[”\"]|真行|好样的|真是人才|越来越厉害|谢谢你们给我|恭喜.{0,12}(?:成功|让我)|寂寞|"
    r"解脱了|笑死|真会谢|难忘的|呵呵|微笑")
POSITIVE_EMOJI_WORD = re.compile(r"赞|开心|笑哭|哈哈|满分")
NEGATED_NEGATIVE = re.compile(
    r"一点(?:也|都)不(?:慢|贵|差|难|麻烦|痛|疼|累)|不会痛|不痛|没问题|没毛病|不贵|不慢|不麻烦|没(?:让我)?失望|"
    r"不失望|没有不耐烦|没(?:有)?洒|不吹不黑|没踩过雷|没进过店|不用排队|不用跑|不用一直")
EXCLAIM = re.compile(r"[!！]{2,}|‼")
NEGATED_PRAISE = re.compile(
    r"(?:不|没有?|不太|不够|不是很|一点也不|一点都不)(?:满意|方便|好用|靠谱|专业|推荐|值得|及时|实用|"
    r"划算|耐心|热情|透明|准时|顺利|给力|喜欢|舒服|干净|好吃|好看|贴心|用心|放心|省心)")
"""A praise word under negation (不满意, 不方便, 没有及时): a grievance, not praise."""
RESOLVED = re.compile(r"解决了|解决咗|搞定了|处理好了|退回来了|修好了|换新|已经到账|到账了")
"""The problem was resolved: an emoji word after it is thanks, not sarcasm."""

FEATURES = ("score_text", "score_clauses", "score_min", "score_max", "score_last", "question",
            "rhetorical", "grievance", "problem", "praise", "acknowledgement", "suggestion",
            "notice", "sarcasm", "negated_negative", "urgent", "exclaim", "long", "contrast",
            "score_after_contrast")
"""The stance model's inputs, in order: model scores in [-1, 1], then cue indicators."""


@dataclass(frozen=True)
class Cues:
    """Which cue kinds occur in one text."""

    question: bool
    rhetorical: bool
    grievance: bool
    problem: bool
    praise: bool
    acknowledgement: bool
    suggestion: bool
    notice: bool
    sarcasm: bool
    negated_negative: bool
    exclaim: bool


_KINDS = (QUESTION, RHETORICAL, GRIEVANCE, PROBLEM, PRAISE, ACKNOWLEDGEMENT, SUGGESTION, NOTICE,
          SARCASM, POSITIVE_EMOJI_WORD, NEGATED_NEGATIVE, EXCLAIM, NEGATED_PRAISE, RESOLVED)
KIND_PATTERNS = tuple(compile_cue(p.pattern) for p in _KINDS)
"""The RE2 form of each cue kind's pattern, in the order :func:`cues_of` numbers the kinds."""
_ALL_KINDS = screen(list(KIND_PATTERNS))
"""Every cue pattern in one RE2 set: one linear pass over a text says which kinds occur, where
a search per pattern with ``re`` cost about 20 µs per event."""


def cues_of(text: str) -> Cues:
    """The cue kinds of ``text`` (the analysed, simplified text).

    Negation is read as a person reads it: a grievance word inside a negated negative
    (失望 in 没让我失望, 慢 in 一点也不慢) is no grievance or problem, and a praise word inside a
    negated praise (满意 in 不满意, 方便 in 不方便) is no praise but a grievance. Those texts (few)
    are scanned once more with the negated phrases blanked out.
    """
    found = set(_ALL_KINDS.Match(text) or ())
    if ACKNOWLEDGEMENT_INDEX in found:
        # The set scans the text as it is; an acknowledgement must be the whole stripped text.
        found.discard(ACKNOWLEDGEMENT_INDEX)
        if ACKNOWLEDGEMENT.match(text.strip()) is not None:
            found.add(ACKNOWLEDGEMENT_INDEX)
    grievance, problem, praise = 2 in found, 3 in found, 4 in found
    if 10 in found and (grievance or problem):
        rest = _blanked(_NEGATED_NEGATIVE, text)
        grievance = grievance and _GRIEVANCE.search(rest) is not None
        problem = problem and _PROBLEM.search(rest) is not None
    if 12 in found:
        praise = praise and _PRAISE.search(_blanked(_NEGATED_PRAISE, text)) is not None
        grievance = True
    if problem and 0 in found:
        problem = _problem_outside_questions(text)
    return Cues(
        question=0 in found, rhetorical=1 in found, grievance=grievance, problem=problem,
        praise=praise, acknowledgement=ACKNOWLEDGEMENT_INDEX in found, suggestion=6 in found,
        notice=7 in found,
        sarcasm=8 in found or (9 in found and (grievance or problem) and 10 not in found
                               and 13 not in found),
        negated_negative=10 in found, exclaim=11 in found,
    )


_GRIEVANCE, _PROBLEM, _PRAISE = (compile_cue(p.pattern) for p in (GRIEVANCE, PROBLEM, PRAISE))
_NEGATED_NEGATIVE, _NEGATED_PRAISE = compile_cue(NEGATED_NEGATIVE.pattern), compile_cue(NEGATED_PRAISE.pattern)


_SENTENCE = compile_cue(r"[^。！!？?\n]+[。！!？?\n]*")
_QUESTION = compile_cue(QUESTION.pattern)


def _problem_outside_questions(text: str) -> bool:
    """Whether a problem word occurs in a sentence that is not a question: 航班取消了，退票要扣
    手续费吗？ asks about a problem, 宽带断了。能派人来修吗？ reports one and asks for help. A
    text of more sentences than are read counts as reporting one."""
    sentences = [text[a:b] for _, a, b in cue_spans(_SENTENCE, text)]
    if len(sentences) >= MAX_CUE_MATCHES:
        return True
    return any(_PROBLEM.search(s) is not None and _QUESTION.search(s) is None for s in sentences)


def _blanked(pattern: Any, text: str) -> str:
    """``text`` with each match of ``pattern`` replaced by a clause break."""
    parts, at = [], 0
    for _, start, end in cue_spans(pattern, text):
        parts.append(text[at:start])
        at = end
    parts.append(text[at:])
    return "，".join(parts)


ACKNOWLEDGEMENT_INDEX = _KINDS.index(ACKNOWLEDGEMENT)


def clause_weights(clauses: Sequence[str]) -> list[float]:
    """Each clause's weight: a clause after a contrast word (and every clause after it) counts
    :data:`CONTRAST_WEIGHT` times, since 还行吧，就是噪音大 is about the noise."""
    weights = []
    after = False
    for clause in clauses:
        after = after or CONTRAST.match(clause) is not None
        weights.append(CONTRAST_WEIGHT if after else 1.0)
    return weights


def features(text: str, text_score: float, clauses: Sequence[str], clause_scores: Sequence[float],
             urgent: bool, cues: Cues | None = None) -> list[float]:
    """The stance model's input row for one text (see :data:`FEATURES`).

    Plain floats: a row is a few clauses' numbers, for which numpy's calls cost more than the
    arithmetic; the caller stacks a batch's rows into one array."""
    cues = cues if cues is not None else cues_of(text)
    if cues.negated_negative:
        # The review model reads 慢 in 一点也不慢: a clause that negates a negative says the
        # opposite of what its words score.
        clause_scores = [abs(score) if _NEGATED_NEGATIVE.search(clause) else score
                         for clause, score in zip(clauses, clause_scores, strict=True)]
    contrast, after_contrast = 0.0, 0.0
    if clause_scores:
        weights = clause_weights(clauses)
        # The bits numpy's dot and mean gave where the model was fitted: they added in order
        # up to 15 and 7 terms and in blocks beyond, where a text of that many clauses still
        # calls them. A machine with AVX-512 blocks shorter sums too, so its numpy differs
        # from these in the last bit (a test holds them to rounding).
        total = (sum(map(mul, weights, clause_scores)) if len(weights) < 16
                 else float(np.dot(weights, clause_scores)))
        weighted = total / sum(weights)
        low, high, last = min(clause_scores), max(clause_scores), clause_scores[-1]
        after = [score for score, weight in zip(clause_scores, weights, strict=True) if weight > 1.0]
        if after:
            contrast = 1.0
            after_contrast = sum(after) / len(after) if len(after) < 8 else float(np.mean(after))
    else:
        weighted = low = high = last = text_score
    return [
        text_score, weighted, low, high, last, cues.question, cues.rhetorical, cues.grievance,
        cues.problem, cues.praise, cues.acknowledgement, cues.suggestion, cues.notice,
        cues.sarcasm, cues.negated_negative, urgent, cues.exclaim, math.log1p(len(text)) / 8.0,
        contrast, after_contrast,
    ]


def kept_clauses(clauses: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The clauses whose scores are read (see :data:`MAX_CLAUSES`)."""
    if len(clauses) <= MAX_CLAUSES:
        return clauses
    half = MAX_CLAUSES // 2
    return clauses[:half] + clauses[-half:]


@dataclass(frozen=True)
class Stance:
    """One event's decided sentiment and intent."""

    label: SentimentLabel
    score: float
    neutral: float
    intent: Intent
    sarcasm: bool


class StanceModel:
    """Sentiment and intent heads: multinomial logistic regressions over char 1-3-gram TF-IDF
    (L2-normalised) followed by the :data:`FEATURES` row.

    ``pairs`` are the (sentiment, intent) pairs the training labels hold (a complaint is
    negative, an inquiry neutral ...): decoding chooses among them only. ``intent_weight`` is
    the ``w`` of the decoding score ``log p(sentiment) + w log p(intent)``.
    """

    def __init__(self, vocabulary: list[str], idf: np.ndarray, ngram_weights: np.ndarray,
                 dense_weights: np.ndarray, intercepts: np.ndarray,
                 pairs: Sequence[tuple[str, str]], intent_weight: float, version: str) -> None:
        self.vocabulary = vocabulary
        self.idf = np.asarray(idf, dtype=np.float64)
        self.ngram_weights = np.asarray(ngram_weights, dtype=np.float64).reshape(
            len(vocabulary), len(LABELS) + len(INTENTS))
        self.dense_weights = np.asarray(dense_weights, dtype=np.float64).reshape(
            len(FEATURES), len(LABELS) + len(INTENTS))
        self.intercepts = np.asarray(intercepts, dtype=np.float64).reshape(len(LABELS) + len(INTENTS))
        self.pairs = [(str(a), str(b)) for a, b in pairs]
        unknown = [p for p in self.pairs if p[0] not in LABELS or p[1] not in INTENTS]
        if unknown or not self.pairs:
            raise ValueError(f"stance model pairs {unknown or 'none'} are not (sentiment, intent) "
                             "pairs; retrain it with bench/train_nlp.py stance")
        self.intent_weight = float(intent_weight)
        self.version = version
        self._index = NgramIndex(vocabulary, NGRAM_MAX, NGRAM_MAX_CHARS) if vocabulary else None
        self._pair_sentiment = np.array([LABELS.index(a) for a, _ in self.pairs])
        self._pair_intent = np.array([INTENTS.index(b) for _, b in self.pairs])
        self._complaint_pairs = np.array([b == "complaint" for _, b in self.pairs])

    def reads_grams_of(self, vocabulary: Sequence[str], idf: np.ndarray, max_n: int, max_chars: int) -> bool:
        """Whether this model's n-gram features of a text are another model's char n-gram
        features of it, given that model's char vocabulary, IDF, longest n-gram and character
        cut (both read char n-grams of the normalised text): then that model's TF-IDF triples
        of a batch may be handed to :meth:`probabilities` instead of reading the texts again.
        The shipped stance model and topic tagger are fitted on the same texts with the same
        ``min_df``, so they share them; a refit of either that changes its vocabulary ends the
        sharing, not the stance model's features."""
        return (self._index is not None and max_n == NGRAM_MAX and max_chars == NGRAM_MAX_CHARS
                and list(vocabulary) == self.vocabulary and np.array_equal(idf, self.idf))

    def probabilities(self, rows: np.ndarray, texts: Sequence[str],
                      grams: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
        """P(sentiment) (columns :data:`LABELS`) and P(intent) (columns :data:`INTENTS`) per text.
        ``grams`` are the texts' n-gram TF-IDF triples when another model read them already
        (:meth:`reads_grams_of`); otherwise the texts are read here."""
        n = len(texts)
        z = rows @ self.dense_weights + self.intercepts
        if self._index is not None and n:
            at, cols, tfidf = grams if grams is not None else self._index.tfidf(list(texts), self.idf)
            norm = np.sqrt(np.bincount(at, weights=tfidf * tfidf, minlength=n))
            scaled = tfidf / np.where(norm > 0, norm, 1.0)[at]
            # Every column's weights gathered at once (``take``: whole rows, several times
            # faster than indexing each column with ``[cols, k]``). One sum over all columns
            # (``np.add.reduceat``) would save 2 µs per event more but moves scores' last bits.
            gathered = self.ngram_weights.take(cols, axis=0)
            for k in range(z.shape[1]):
                z[:, k] += np.bincount(at, weights=scaled * gathered[:, k], minlength=n)
        return _softmax(z[:, : len(LABELS)]), _softmax(z[:, len(LABELS):])

    def decode(self, p_sentiment: np.ndarray, p_intent: np.ndarray, complaint: np.ndarray,
               not_positive: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The (sentiment, intent) column indices of the best allowed pair per row; rows marked
        in ``complaint`` choose among complaint pairs only (when the training labels had one),
        rows marked in ``not_positive`` among pairs that are not positive."""
        eps = 1e-9
        score = (np.log(p_sentiment[:, self._pair_sentiment] + eps)
                 + max(self.intent_weight, 1e-6) * np.log(p_intent[:, self._pair_intent] + eps))
        if self._complaint_pairs.any():
            score[np.ix_(complaint, ~self._complaint_pairs)] = -np.inf
        positive = self._pair_sentiment == LABELS.index("positive")
        if not_positive is not None and not positive.all():
            score[np.ix_(not_positive & ~complaint, positive)] = -np.inf
        best = score.argmax(axis=1)
        return self._pair_sentiment[best], self._pair_intent[best]

    def save(self, path: Path) -> None:
        """``path`` (JSON: settings and dense weights) and its ``.npz`` next to it (n-grams)."""
        path.write_text(json.dumps({
            "model": "stance-ngram-logreg", "version": self.version, "labels": list(LABELS),
            "intents": list(INTENTS), "features": list(FEATURES), "ngram_max": NGRAM_MAX,
            "pairs": [list(p) for p in self.pairs], "intent_weight": self.intent_weight,
            "dense_weights": self.dense_weights.round(6).tolist(),
            "intercepts": self.intercepts.round(6).tolist()}, indent=1) + "\n", encoding="utf-8")
        write_arrays(path.with_suffix(".npz"), self.vocabulary, self.idf, self.ngram_weights)

    @classmethod
    def load(cls, path: Path | Traversable | None = None) -> StanceModel:
        """The shipped model (``model_data/stance.json`` and ``stance.npz``) or one at ``path``
        (its arrays next to it).

        A file made for other features or labels is refused: its weights would be read against
        the wrong inputs.
        """
        folder = resources.files("services.nlp.model_data")
        source = path if path is not None else folder / STANCE_FILE
        params = json.loads(source.read_text(encoding="utf-8"))
        if (params.get("features") != list(FEATURES) or params.get("labels") != list(LABELS)
                or params.get("intents") != list(INTENTS) or params.get("ngram_max") != NGRAM_MAX):
            raise ValueError(f"{source}: the stance model was fitted on other features or labels; "
                             "retrain it with bench/train_nlp.py stance")
        arrays = (Path(str(path)).with_suffix(".npz") if path is not None
                  else folder / STANCE_ARRAYS)
        vocabulary, idf, weights = read_arrays(arrays)
        return cls(vocabulary, idf, weights, np.array(params["dense_weights"]),
                   np.array(params["intercepts"]), params["pairs"], params["intent_weight"],
                   params["version"])


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def score_of(p: Sequence[float], label: SentimentLabel) -> float:
    """The event score of ``label`` with probabilities ``p``, laid out for
    :data:`REFERENCE_BAND`: polar labels outside the band, neutral inside it."""
    neg, _, pos = (float(x) for x in p)
    if label == "positive":
        return REFERENCE_BAND + (1 - REFERENCE_BAND) * max(pos - neg, 0.0)
    if label == "negative":
        return -(REFERENCE_BAND + (1 - REFERENCE_BAND) * max(neg - pos, 0.0))
    return REFERENCE_BAND * (pos - neg) * 0.999


def intent_of_stance(text: str, label: SentimentLabel, flags: Sequence[str] = (),
                     cues: Cues | None = None) -> Intent:
    """The intent from the cues and the decided stance (see the module docstring)."""
    cues = cues if cues is not None else cues_of(text)
    if any(flag != "churn_intent" for flag in flags):
        return "complaint"
    if cues.acknowledgement:
        return "other"
    if label == "positive" and cues.praise and not cues.rhetorical:
        return "praise"
    if cues.rhetorical or cues.sarcasm and label == "negative":
        return "complaint"
    if cues.grievance and label != "positive":
        return "complaint"
    if cues.problem and label == "negative":
        return "complaint"
    if cues.suggestion:
        return "suggestion"
    if cues.question:
        return "inquiry"
    if cues.acknowledgement or cues.notice:
        return "other"
    if label == "negative":
        return "complaint"
    if label == "positive":
        return "praise"
    return "other"


def decide(model: StanceModel, rows: np.ndarray, texts: Sequence[str],
           flags: Sequence[Sequence[str]], cues: Sequence[Cues] | None = None,
           grams: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> list[Stance]:
    """Sentiment and intent of each text from its feature row, n-grams and urgency flags
    (``grams``: the texts' n-gram features when another model read them, see
    :meth:`StanceModel.probabilities`).

    The two heads are decoded together (:meth:`StanceModel.decode`), so the label says what the
    message is to a CEM analyst (docs/annotation-guide.md): a complaint is negative, praise
    positive, an inquiry neutral. An escalation, safety or repeat-contact flag makes a complaint,
    and a grievance without praise or a negated negative is never positive: the review-trained
    score of a short problem report can be strongly positive (家里宽带又断网了 +0.58), and the
    n-grams of a phrasing no author used cannot outvote it. That constraint left every
    leave-one-author-out figure unchanged (docs/model-card.md, "Round 3").
    """
    if not len(texts):
        return []
    kinds = cues if cues is not None else [cues_of(text) for text in texts]
    p_sentiment, p_intent = model.probabilities(rows, texts, grams)
    complaint = np.array([any(flag in HARD_FLAGS for flag in found) for found in flags])
    not_positive = np.array([kind.grievance and not kind.praise and not kind.negated_negative
                             for kind in kinds])
    sentiment, intent = model.decode(p_sentiment, p_intent, complaint, not_positive)
    decided = []
    # Plain floats and ints: the same values, without a numpy scalar per element read.
    for p, s, i, kind in zip(p_sentiment.tolist(), sentiment.tolist(), intent.tolist(), kinds, strict=True):
        label = LABELS[s]
        decided.append(Stance(label=label, score=max(-1.0, min(1.0, score_of(p, label))),
                              neutral=p[1], intent=INTENTS[i], sarcasm=kind.sarcasm))
    return decided


MIN_PAIR = 5
"""Items a (sentiment, intent) pair must label to be one the decoding may choose: a single
negative suggestion in the training data should not make every suggestion a candidate for
negative."""


def fit(rows: np.ndarray, texts: Sequence[str], sentiments: Sequence[str], intents: Sequence[str],
        c: float = 30.0, min_df: int = 2, intent_weight: float = 1.0, min_pair: int = MIN_PAIR,
        version: str = "2.0.0") -> StanceModel:
    """Fit both heads on feature rows, analysed texts and gold labels (scikit-learn, training
    only); the n-gram features are those :meth:`StanceModel.probabilities` computes."""
    from scipy import sparse
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    vectorizer = TfidfVectorizer(analyzer=lambda t: char_ngrams(t, NGRAM_MAX, NGRAM_MAX_CHARS),
                                 sublinear_tf=True, min_df=min_df)
    grams = vectorizer.fit_transform(list(texts))
    x = sparse.hstack([grams, sparse.csr_matrix(rows)]).tocsr()
    n_grams = grams.shape[1]
    weights = np.zeros((n_grams + len(FEATURES), len(LABELS) + len(INTENTS)))
    intercepts = np.zeros(len(LABELS) + len(INTENTS))
    for offset, classes, gold in ((0, LABELS, sentiments), (len(LABELS), INTENTS, intents)):
        fitted = LogisticRegression(C=c, max_iter=5000).fit(x, np.asarray(gold))
        for k, name in enumerate(fitted.classes_):
            column = offset + list(classes).index(name)
            # A binary problem has one coefficient row (for classes_[1]); split it symmetrically.
            if len(fitted.classes_) == 2:
                sign = 1.0 if k == 1 else -1.0
                weights[:, column] = sign * fitted.coef_[0] / 2
                intercepts[column] = sign * fitted.intercept_[0] / 2
            else:
                weights[:, column] = fitted.coef_[k]
                intercepts[column] = fitted.intercept_[k]
        for name in classes:
            if name not in fitted.classes_:
                intercepts[offset + list(classes).index(name)] = -50.0
    counted = Counter(zip(sentiments, intents, strict=True))
    pairs = sorted(pair for pair, n in counted.items() if n >= min_pair) or sorted(counted)
    vocabulary = vectorizer.get_feature_names_out().tolist()
    return StanceModel(vocabulary, vectorizer.idf_, weights[:n_grams], weights[n_grams:], intercepts,
                       pairs, intent_weight, version)


__all__ = ["FEATURES", "INTENTS", "LABELS", "Stance", "StanceModel", "clause_weights", "cues_of",
           "decide", "features", "fit", "intent_of_stance", "kept_clauses", "score_of"]
