"""Issue 16's behaviours one by one: phrases in context, packs, stance, replies, signatures, urgency."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from services.core.events import EmailFacts, RawFeedback
from services.core.normalize import strip_history, strip_signature
from services.nlp.analyzer import Analyzer, load_sentiment
from services.nlp.cues import load_urgency
from services.nlp.stance import FEATURES, clause_weights, cues_of, features
from services.nlp.taxonomy import load_taxonomy
from tests import factories

NOW = datetime(2026, 11, 25, tzinfo=UTC)


@pytest.fixture(scope="module")
def analyzer() -> Analyzer:
    return Analyzer(load_sentiment("default"), load_taxonomy(), load_urgency(), neutral_band=0.2)


def raw(text: str, channel: str = "chat", **extra: object) -> RawFeedback:
    return factories.raw(event_id=str(abs(hash(text)))[:12], channel=channel, touchpoint="tp",
                         text=text, occurred_at=NOW, **extra)


def topics_of(text: str) -> set[str]:
    return {m.id for m in load_taxonomy().tag(text)}


@pytest.mark.parametrize(("text", "absent", "present"), [
    ("转账手续费太高了", "convenience_process", "price_fees"),
    ("我找了半天才找到退款按钮", "waiting_time", "account_app_system"),
    ("申请退款三天了", "convenience_process", "after_sales_returns"),
    ("客服把地址发错了", None, "service_attitude"),
])
def test_keywords_count_in_context_only(text: str, absent: str | None, present: str) -> None:
    found = topics_of(text)
    assert present in found
    if absent:
        assert absent not in found


@pytest.mark.parametrize(("text", "topic"), [
    ("空调装好第二天就不制冷了", "product_quality"),
    ("手机信号差，电梯里打不了电话", "product_quality"),
    ("屏幕有坏点", "product_quality"),
    ("酒店隔音很差", "product_quality"),
    ("航班延误三个小时", "waiting_time"),
    ("排队排了四十分钟才接通", "waiting_time"),
    ("網路銀行一直無法登入", "account_app_system"),
    ("真係好食，但係要等成個鐘", "waiting_time"),
])
def test_faults_and_waits_in_their_own_words_find_their_topic(analyzer: Analyzer, text: str, topic: str) -> None:
    [event] = analyzer.analyze([raw(text)])
    assert topic in {t.id for t in event.topics}
    analysed = event.analysis_text or event.text
    for tag in event.topics:
        assert all(analysed[a:b].strip() for a, b in tag.evidence)


def test_a_phrase_inside_a_word_does_not_count(tmp_path: Path) -> None:
    """A one-character phrase must be a word of its own (慢 in 物流慢, not in 慢慢来); a longer
    one must start or end where a word does (员卡 ends with 会员卡, 员工 starts nothing here)."""
    from services.nlp.segmenter import Segmenter

    path = tmp_path / "t.yaml"
    path.write_text("topics:\n  - {id: a, name: A, keywords: [慢, 员]}\n", encoding="utf-8")
    taxonomy = load_taxonomy(path)
    segmenter = Segmenter()
    for text, expected in (("物流慢", ["慢"]), ("慢慢来吧", []), ("会员卡", []), ("店员", [])):
        found = [text[a:b] for m in taxonomy.tag(text, segmenter.cut(text)) for a, b in m.evidence]
        assert found == expected, text
    assert [m.id for m in taxonomy.tag("慢慢来吧")] == ["a"], "without words every match counts"


def test_lexicon_packs_extend_topics_and_are_checked(tmp_path: Path) -> None:
    (tmp_path / "pack.yaml").write_text(
        "industry: gas\ntopics:\n  a:\n    keywords: [煤气味]\n    exclude: [煤气味道很香]\n", encoding="utf-8")
    (tmp_path / "t.yaml").write_text(
        "packs: [pack.yaml]\ntopics:\n  - {id: a, name: A, keywords: [漏气]}\n", encoding="utf-8")
    taxonomy = load_taxonomy(tmp_path / "t.yaml")
    assert {m.id for m in taxonomy.tag("楼道里有煤气味")} == {"a"}
    assert taxonomy.tag("这煤气味道很香") == []
    (tmp_path / "pack.yaml").write_text("industry: gas\ntopics:\n  zz:\n    keywords: [x]\n", encoding="utf-8")
    with pytest.raises(ValueError, match="pack.yaml names topic 'zz'"):
        load_taxonomy(tmp_path / "t.yaml")
    (tmp_path / "t.yaml").write_text(
        "topics:\n  - {id: a, name: A, keywords: [手续], exclude: [费用]}\n", encoding="utf-8")
    with pytest.raises(ValueError, match="guards nothing"):
        load_taxonomy(tmp_path / "t.yaml")


def test_the_clause_after_a_contrast_counts_more() -> None:
    assert clause_weights(["还行吧", "就是噪音比想象中大", "晚上睡不着"]) == [1.0, 3.0, 3.0]
    assert clause_weights(["质量很好", "物流也快"]) == [1.0, 1.0]


@pytest.mark.parametrize(("text", "label", "intent"), [
    ("还行吧，就是噪音比想象中大，晚上开着睡不着", "negative", "complaint"),
    ("这能用吗？？刚拆开就有一股刺鼻的味道", "negative", "complaint"),
    ("出了事谁负责？", "negative", "complaint"),
    ("太“好”了，第三次收到坏的鸡蛋了", "negative", "complaint"),
    ("谢谢你这几天的帮忙，问题终于解决了", "positive", "praise"),
    ("家里光猫一直亮红灯，上不了网，能派人来修吗", "negative", "complaint"),
    ("一点也不慢，前一天下单第二天就到了", "positive", "praise"),
    ("请问这款有没有黑色的？", "neutral", "inquiry"),
    ("希望以后能支持花呗分期", "neutral", "suggestion"),
    ("好的，收到，谢谢", "neutral", "other"),
])
def test_sentiment_and_intent_read_like_a_person(analyzer: Analyzer, text: str, label: str, intent: str) -> None:
    [event] = analyzer.analyze([raw(text)])
    assert (event.sentiment.label, event.intent) == (label, intent)
    if label == "neutral":
        assert all(t.sentiment.label == "neutral" for t in event.topics)


def test_sarcastic_emoji_after_a_complaint_is_not_praise() -> None:
    assert cues_of("等了半个月就等来一个坏的 赞 真棒").sarcasm
    assert not cues_of("质量杠杠的 赞").sarcasm
    assert not cues_of("信用卡盗刷的事两天就给我解决了 赞").sarcasm, "thanks after a resolved problem"


def test_negation_is_read_as_a_person_reads_it() -> None:
    assert not cues_of("问题都耐心回答，东西也没让我失望").grievance
    assert not cues_of("一点也不慢，第二天就到了").problem
    assert cues_of("东西让我很失望").grievance
    negated_praise = cues_of("停水也不通知，非常不方便")
    assert negated_praise.grievance and not negated_praise.praise
    assert cues_of("用起来很方便").praise


def test_a_problem_asked_about_is_not_a_problem_reported() -> None:
    assert not cues_of("航班取消了，退票要扣手续费吗？").problem
    assert cues_of("宽带又断了。能派人来修吗？").problem
    assert cues_of("无").acknowledgement and cues_of("我明白了，谢谢").acknowledgement


@pytest.mark.parametrize("clauses", [1, 2, 7, 8, 15, 16, 17, 40])
def test_a_rows_clause_means_are_numpys_to_the_last_places(clauses: int) -> None:
    """features() sums a few clauses in plain floats, in order; the stance model was first
    fitted on numpy's dot and mean of them. Those add in the order of the machine's kernel:
    in order up to 15 and 7 terms where the model was fitted, in blocks on a machine with
    AVX-512 (7 and 15 clauses differ there in the last bit). So the means must agree with
    numpy's to rounding, not bit for bit (a contrast word in clause 3 gives the weighted mean
    and the mean after the contrast both work to do)."""
    rng = np.random.default_rng(clauses)
    texts = [f"第{i}句" if i != 2 else "但是第2句" for i in range(clauses)]
    scores = [float(x) for x in rng.uniform(-1, 1, clauses)]
    row = dict(zip(FEATURES, features("。".join(texts), 0.1, texts, scores, False), strict=True))
    weights = clause_weights(texts)
    assert row["score_clauses"] == pytest.approx(float(np.dot(weights, scores) / sum(weights)),
                                                 rel=1e-12, abs=1e-15)
    ordered = 0.0
    for weight, score in zip(weights, scores, strict=True):
        ordered += weight * score
    if clauses < 16:
        assert row["score_clauses"] == ordered / sum(weights)
    after = [s for s, w in zip(scores, weights, strict=True) if w > 1.0]
    assert row["score_after_contrast"] == pytest.approx(float(np.mean(after)) if after else 0.0,
                                                        rel=1e-12, abs=1e-15)


def test_what_follows_a_contrast_is_a_feature_of_its_own() -> None:
    row = dict(zip(FEATURES, features("还行吧，就是噪音大", 0.4, ["还行吧", "就是噪音大"], [0.5, -0.8], False),
                   strict=True))
    assert (row["contrast"], row["score_after_contrast"]) == (1.0, -0.8)
    plain = dict(zip(FEATURES, features("质量很好，物流也快", 0.9, ["质量很好", "物流也快"], [0.9, 0.8], False),
                     strict=True))
    assert (plain["contrast"], plain["score_after_contrast"]) == (0.0, 0.0)


def test_an_email_reply_is_read_without_the_old_subject(analyzer: Analyzer) -> None:
    subject = "回复：宽带故障多次报修未解决"
    body = "好的，收到，谢谢。"
    reply = raw(body, channel="email", analysis_text=f"{subject}\n{body}",
                email=EmailFacts(subject=subject))
    new = raw("家里宽带又断网了", channel="email", analysis_text="宽带故障\n家里宽带又断网了",
              email=EmailFacts(subject="宽带故障"))
    got_reply, got_new = analyzer.analyze([reply, new])
    assert (got_reply.topics, got_reply.urgency, got_reply.sentiment.label) == ([], [], "neutral")
    assert got_new.topics and got_new.sentiment.label == "negative"
    quoted = raw("好的。快递还没到", channel="email", analysis_text="Re: 问题\n好的。快递还没到",
                 email=EmailFacts(subject="Re: 问题"))
    [event] = analyzer.analyze([quoted])
    spans = [span for t in event.topics for span in t.evidence]
    assert spans and all("Re: 问题\n好的。快递还没到"[a:b] in ("快递", "还没到") for a, b in spans)


@pytest.mark.parametrize(("body", "kept"), [
    ("退款还没到账，请给个时间。\n\n王先生\n手机：<PHONE>", "退款还没到账，请给个时间。"),
    ("东西很好。\n\n祝工作顺利\n陈明", "东西很好。"),
    ("请问报价？\n\nBest regards,\n刘洋\n采购部 | 某科技有限公司\n电话：0512-6688 1234", "请问报价？"),
    ("收到的包包脫線了。\n--\nAmy Wong", "收到的包包脫線了。"),
    ("空调不制冷\n张三", "空调不制冷\n张三"),
    ("谢谢", "谢谢"),
])
def test_signatures_without_a_delimiter_are_cut(body: str, kept: str) -> None:
    assert strip_history(body) == kept
    assert strip_signature(kept) == kept


@pytest.mark.parametrize(("text", "flag"), [
    ("你们这样乱扣钱，我要去银保监会投诉", "escalation_threat"),
    ("我会向民航局投诉的", "escalation_threat"),
    ("已经给电视台打电话了", "escalation_threat"),
    ("已经在黑猫投诉上发了", "escalation_threat"),
    ("再不解决我就打市长热线", "escalation_threat"),
    ("我要去消委會投訴", "escalation_threat"),
    ("楼道里好大一股煤气味", "safety"),
    ("电表箱一直冒火花", "safety"),
    ("车开着突然熄火，差点出事", "safety"),
    ("安全气囊灯一直亮", "safety"),
    ("这个月已经是第四次了", "repeat_contact"),
    ("刹车异响，已经修了三回了", "repeat_contact"),
    ("我打了好几次电话都没人管", "repeat_contact"),
    ("今天终于携号转网了", "churn_intent"),
    ("再这样我就转到别家了", "churn_intent"),
    ("行，到月底别给我送了，我去订别家的", "churn_intent"),
    ("果断退订，不跟你们玩了", "churn_intent"),
    ("如果还是这样，会员我会直接取消", "churn_intent"),
    ("去年也是这个问题，今年又变回去了", "repeat_contact"),
    ("户号我早报过了，营业厅也去过，没人管", "repeat_contact"),
    ("我是上周投诉行李被摔坏的那个", "repeat_contact"),
    ("APP补登三次都提示信息不匹配", "repeat_contact"),
    ("冷冻海鲜这周两次都是化的", "repeat_contact"),
    ("吐出来是一小块玻璃碴子", "safety"),
    ("我个仔有哮喘，一入去就咳到停唔到", "safety"),
    ("过期三天还送来，这是食安问题", "safety"),
    ("材料交了三遍，每次都说缺东西", "repeat_contact"),
    ("投诉完又投诉，管理处冇回音", "repeat_contact"),
    ("你们上次回复说已反馈仓库核实，然后就没下文了", "repeat_contact"),
    ("同一个问题跑了三家才修好", "repeat_contact"),
    ("电压低得煮不熟饭，反映了一个夏天了", "repeat_contact"),
    ("你们已经第二次延迟了！", "repeat_contact"),
    ("上个月刚因为这个问题修过，又熄火了", "repeat_contact"),
    ("下回打死都不来了，排队三个钟", "churn_intent"),
    ("宁可多走两公里也不去你们那个网点", "churn_intent"),
    ("这种垃圾软件，删了删了", "churn_intent"),
    ("光纤下个月到期就办退租", "churn_intent"),
    ("孩子下学期不上了，剩下的钱退给我", "churn_intent"),
    ("合约一到期我们全家都走", "churn_intent"),
    ("已经在评估别家的系统了", "churn_intent"),
    ("年费乱收，我要取消这张卡。", "churn_intent"),
])
def test_urgency_phrasings(text: str, flag: str) -> None:
    from services.core.normalize import to_simplified

    assert flag in {u.flag for u in load_urgency().find(to_simplified(text))}


def test_a_cue_that_matches_the_punctuation_beside_its_words_points_at_the_words() -> None:
    """取消这张卡 must end a word (not 取消卡号), so its cue matches the 。 after it, and a
    hotline must be a whole number, so its cue matches the ， before it: the evidence is the
    words alone."""
    text = "年费乱收，我要取消这张卡。"
    churn = [u for u in load_urgency().find(text) if u.flag == "churn_intent"]
    assert [(u.term, u.evidence) for u in churn] == [("取消这张卡", [(7, 12)])]
    assert text[7:12] == "取消这张卡"
    text = "再不处理，12315！"
    threat = [u for u in load_urgency().find(text) if u.flag == "escalation_threat"]
    assert [(u.term, u.evidence) for u in threat] == [("12315", [(5, 10)])]


@pytest.mark.parametrize("text", [
    "我要投诉你们眼科的医生，态度太差", "客服直接把我拉黑了", "第二次在这家买，东西不错",
    "物流爆炸快，第二天就到了", "我想问一下这个跟团游的退订规则",
    "我的快递单号SF1234567890123，显示派送中", "燃气报警器一直在叫", "车开到半路胎压报警灯亮了",
    "孩子半夜发烧，APP下单退烧药，一小时就送到了",
    "这不是第一次来这家店吃了，还是那么好吃", "连续三年都在你们家订年菜", "之前的问题已经修好了，谢谢师傅",
    "更新以后进不去 一直转圈", "请帮我取消信用卡的自动还款", "家里要换家具，请问几时送货",
])
def test_urgency_cues_that_would_page_for_nothing_do_not_fire(text: str) -> None:
    assert load_urgency().find(text) == []
