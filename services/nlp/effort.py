"""Customer effort read from the text: the trips, calls, transfers and resubmissions a customer
says it took (跑了好几趟, 打了三次电话, 转了好几个人, 材料交了又交).

CES asks the customer how easy it was, but only surveys ask, and most feedback comes without a
rating. The words are there anyway: a customer who says they ran three times to the branch
rates the effort without being asked. Each kind of cue below is an RE2 pattern (linear in the
text, services/nlp/matching.py); a text that holds any is flagged, and its effort score is
the sum of the kinds it holds, each weighing :data:`CUE_WEIGHT`, or :data:`MANY_WEIGHT` when
the cue counts three or more (三次, 好几趟, 十几遍), capped at 1. So one plain cue scores 0.5,
one counted cue 0.75, two kinds of effort 1.0: a scale that says how strongly the text
complains of effort, every point of it traceable to the spans it came from.

A cue that counts one (打一次电话就解决了, 问一次性付款) or none (打了0次) is no effort and is
dropped, except for waiting, where one hour in a queue is.

Waiting counts where the customer had to queue or hold (排了两个小时队, 在线等了一个小时), not
a wait for a delivery (等了两个小时饭都凉了), which the 等待时长 topic covers; repetition needs
the past (问了5遍), so 重要的事情说三遍 is no effort.

The patterns read the analysed text, which ingest converts to simplified Chinese; the few
characters that differ in the traditional form (幾, 兩, 電話, 轉, 來, 隊...) are in the classes as
well, for texts analysed without that conversion. Numerals are hanzi or digits, half or full
width: :data:`NUMBER` spells the class out.
"""

from __future__ import annotations

from typing import Any

from services.core.events import (
    MAX_EFFORT_CUES,
    MAX_EVIDENCE,
    MAX_TERM,
    UINT32_MAX,
    Effort,
    EffortCue,
    EffortKind,
    Span,
    trusted,
)
from services.nlp.matching import compile_cue, cue_spans, screen

NUMBER = "[零〇一二两兩三四五六七八九十百几幾多好无無数數0-9０-９]+"
"""A count: 三, 十几, 好几, 无数, 20."""
_DID = "(?:了|咗|过|過)"
_OF = f"{_DID}?"
_CALL = "(?:电话|電話)"
_TURN = "(?:转|轉)"
_BACK = "(?:来|來)"
_HOURS = "(?:小时|小時|钟头|鐘頭)"

_PATTERNS: dict[EffortKind, tuple[str, ...]] = {
    "visits": (
        f"跑{_OF}{NUMBER}(?:趟|次|回)",
        f"(?:去|来|來|到){_OF}{NUMBER}趟",
        f"(?:去|跑){_OF}{NUMBER}次(?:营业厅|營業廳|门店|門店|网点|網點|银行|銀行|店里|店裡|现场|現場|柜台|櫃檯)",
        "白跑(?:了|咗)?|跑断(?:了)?腿|跑斷(?:了)?腿|跑了?(?:好)?几(?:个|個)地方",
    ),
    "calls": (
        f"打{_OF}{NUMBER}(?:次|通|个|個|遍|回)(?:的)?{_CALL}",
        f"{_CALL}(?:都|也)?(?:打|拨|撥){_OF}{NUMBER}(?:次|通|遍|回|个|個)",
        f"{_CALL}(?:都|也)?(?:打爆|打烂|打爛|打到手软|打到手軟)",
        f"(?:打|拨|撥){_OF}{NUMBER}(?:次|遍|回)(?:客服|热线|熱線|400)",
    ),
    "transfers": (
        f"{_TURN}{_OF}{NUMBER}(?:个|個|次|道)(?:人|客服|部门|部門|坐席|窗口)",
        f"{_TURN}接{_OF}{NUMBER}(?:次|个|個|回)|被{_TURN}{_OF}{NUMBER}(?:次|回|个|個)",
        f"换{_OF}{NUMBER}(?:个|個)(?:客服|人|坐席|部门)|換{_OF}{NUMBER}(?:个|個)(?:客服|人|坐席|部門)",
        f"{_TURN}{_BACK}{_TURN}去|踢{_BACK}踢去|推{_BACK}推去|踢皮球|互相推诿|互相推諉",
    ),
    "resubmission": (
        "交了又交|提交了又提交|传了又传|傳了又傳|填了又填|补了又补|補了又補|寄了又寄|签了又签|簽了又簽|拍了又拍|改了又改",
        f"(?:材料|资料|資料|证明|證明|表格|照片|单据|單據|申请|申請)(?:都|也)?(?:交|提交|上传|上傳|补|補|填|寄|递交|遞交){_OF}{NUMBER}(?:次|遍|回)",
        f"(?:交|提交|上传|上傳|补|補|填|寄|递交|遞交){_OF}{NUMBER}(?:次|遍|回)(?:材料|资料|資料|证明|證明|表格|照片|单据|單據)",
        "(?:重新|再次|反复|反覆|一再|多次|又要|又让我|又讓我)(?:提交|上传|上傳|补交|補交|补充|補充|填写|填寫|递交|遞交)(?:材料|资料|資料|证明|證明|表格|照片|单据|單據|申请|申請)",
    ),
    "runaround": (
        f"{_BACK}回折腾|{_BACK}回折騰|{_BACK}{_BACK}回回|反复折腾|反覆折騰|折腾{_OF}(?:好久|半天|好几天|好幾天|一个月|一個月|几个月|幾個月|半个月|半個月)|折騰{_OF}(?:好久|半天|好幾天|一個月|幾個月|半個月)",
        "兜圈子|绕圈子|繞圈子|跑来跑去|跑來跑去|白折腾|白折騰",
        "(?:手续|手續|流程|步骤|步驟|程序)(?:太|好|特别|特別|非常|很|超级|超級|真)?(?:繁琐|繁瑣|复杂|複雜|麻烦|麻煩)",
    ),
    "repetition": (
        f"(?:问|問|说|說|讲|講|解释|解釋|重复|重複|描述|核对|核對|报|報){_DID}{NUMBER}(?:遍|次|回)",
        "(?:每次都要|又要|还要|還要)(?:重新)?(?:说|說|讲|講|解释|解釋|描述)(?:一)?(?:遍|次)",
    ),
    "waiting": (
        f"排{_OF}(?:{NUMBER}|半)(?:个|個)?多?{_HOURS}(?:的)?(?:队|隊)",
        f"排(?:队|隊)(?:排|等)?{_OF}(?:{NUMBER}|半)(?:个|個)?多?{_HOURS}",
        "排(?:了|咗)?(?:半天|一上午|一下午|一整天|好久|好长时间|好長時間)(?:的)?(?:队|隊)|排(?:队|隊)(?:排|等)?(?:了|咗)(?:半天|一上午|一下午|一整天|好久)",
        f"(?:在线|线上|電話裡|电话里|电话那头|窗口|柜台|櫃檯|大厅|大廳)(?:排队|排隊)?等{_DID}(?:{NUMBER}|半)(?:个|個)?多?{_HOURS}|排(?:大|长|長)(?:队|隊)",
    ),
}

CUES: dict[EffortKind, Any] = {
    kind: compile_cue("|".join(f"(?:{p})" for p in patterns)) for kind, patterns in _PATTERNS.items()}
"""One RE2 alternation per kind of effort (the linear-time test times each)."""

_SCREEN = screen(list(CUES.values()))
_KINDS: tuple[EffortKind, ...] = tuple(CUES)
_COUNT = compile_cue(NUMBER)

CUE_WEIGHT = 0.5
"""What one kind of effort adds to the score."""
MANY_WEIGHT = 0.75
"""What it adds when its cue counts three or more (or 好几, 无数: more than a couple)."""
MANY = 3

_DIGITS = {c: i for i, c in enumerate("零一二三四五六七八九")} | {"〇": 0, "两": 2, "兩": 2}
_INDEFINITE = frozenset("几幾多好无無数數")
_FULL_WIDTH = str.maketrans("０１２３４５６７８９", "0123456789")


def count_of(term: str) -> int | None:
    """The number a cue states (打了三次电话 -> 3, 跑了十几趟 -> 10, 问了20遍 -> 20),
    None when it states none (踢皮球). An indefinite count (好几, 无数, 十几) reads as
    :data:`MANY` or its tens, since it means more than a couple."""
    found = _COUNT.search(term)
    if found is None:
        return None
    spelled = found.group().translate(_FULL_WIDTH)
    if spelled.isdigit():
        return int(spelled[:9])
    if any(c in _INDEFINITE for c in spelled):
        return max(MANY, 10 * ("十" in spelled))
    value, digit = 0, None
    for char in spelled:
        if char == "百":
            value, digit = value + 100 * (digit or 1), None
        elif char == "十":
            value, digit = value + 10 * (digit or 1), None
        elif char in _DIGITS:
            digit = _DIGITS[char]
    return min(UINT32_MAX, value + (digit or 0))


def read_effort(text: str, shift: int = 0) -> Effort | None:
    """The effort cues of ``text`` and its score, None when it holds none.

    Spans are ``[start, end)`` character offsets into ``text`` plus ``shift`` (where ``text``
    starts in the analysed text). Linear in the text: one RE2 set scan tells which kinds
    occur, then one scan per such kind, resumed at most ``MAX_CUE_MATCHES`` times.
    """
    hits = _SCREEN.Match(text)
    if not hits:
        return None
    cues: list[EffortCue] = []
    score = 0.0
    for kind in (_KINDS[i] for i in sorted(hits)):
        spans: dict[str, list[Span]] = {}
        for term, start, end in cue_spans(CUES[kind], text):
            spans.setdefault(term, []).append((start + shift, end + shift))
        counted = {term: count_of(term) for term in spans}
        if kind != "waiting":  # one call or one visit is no effort; one hour in a queue is
            spans = {term: found for term, found in spans.items() if counted[term] not in (0, 1)}
        if not spans:
            continue
        counts = [counted[term] for term in spans]
        most = max((c for c in counts if c is not None), default=None)
        score += MANY_WEIGHT if most is not None and most >= MANY else CUE_WEIGHT
        cues.extend(trusted(EffortCue, kind=kind, term=term[:MAX_TERM], count=count,
                            evidence=evidence[:MAX_EVIDENCE])
                    for (term, evidence), count in zip(spans.items(), counts, strict=True))
    if not cues:
        return None
    return trusted(Effort, score=min(1.0, score), cues=cues[:MAX_EFFORT_CUES])

