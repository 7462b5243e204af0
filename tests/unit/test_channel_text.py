"""Channel text handling without I/O: simplified conversion, social markup, email parsing and
decoding, call facts."""

from __future__ import annotations

import json
from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.core.channels import analysis_text
from services.core.normalize import normalize_social, strip_history, to_simplified
from services.ingest.call_transcript import CallIn, call_facts, customer_text, transcript_text
from services.ingest.channels.calls import call_event
from services.ingest.email_message import (
    UndecodableEmail,
    decode_text,
    html_to_text,
    parse_rfc822,
)

DATA = Path(__file__).parents[1] / "data" / "channels"


def test_traditional_is_converted_and_other_text_kept() -> None:
    assert to_simplified("物流真的太慢了，客服電話打不通，請盡快處理") == \
        "物流真的太慢了，客服电话打不通，请尽快处理"
    assert to_simplified("Order 2026 ok") == "Order 2026 ok"
    assert analysis_text("  這個  產品\n\n很好 ", "web") == "这个 产品\n很好"


def test_social_markup_is_normalised_for_analysis_and_listed() -> None:
    post = json.loads((DATA / "weibo_thread_traditional.json").read_text())["posts"][0]["text"]
    social = normalize_social(post)
    assert social.mentions == ["優選商城官方"]
    assert social.hashtags == ["優選商城配送延誤"]
    assert social.urls == ["https://t.cn/A6x9QwZk"]
    assert social.emoji == ["😡", "😡"]
    assert "@" not in social.analysis and "http" not in social.analysis
    assert "#" not in social.analysis and "[" not in social.analysis
    assert "你们的物流真的太慢了 愤怒" in social.analysis
    assert "优选商城配送延误" in social.analysis and social.analysis.endswith("怒")


def test_weibo_reply_leads_and_repost_chains_are_not_the_author_speaking() -> None:
    reply = normalize_social("回覆@優選商城官方: 已經收到了，態度不錯")
    assert reply.analysis == "已经收到了，态度不错" and reply.mentions == ["優選商城官方"]
    repost = normalize_social("同款问题，太坑了//@小王: 买的耳机一周就坏了 #避雷#")
    assert repost.analysis == "同款问题，太坑了" and repost.hashtags == []
    only_forward = normalize_social("//@小王: 买的耳机一周就坏了")
    assert only_forward.analysis == "买的耳机一周就坏了"


def test_douyin_style_open_hashtags() -> None:
    social = normalize_social("踩雷了 #避雷 #退货难 质量太差👎")
    assert social.hashtags == ["避雷", "退货难"]
    assert social.analysis == "踩雷了 避雷 退货难 质量太差 差评"


def test_gbk_multipart_reply_keeps_only_the_new_message() -> None:
    parsed = parse_rfc822((DATA / "gbk_multipart_reply.eml").read_bytes())
    assert parsed.charset == "gb18030"
    assert parsed.subject == "回复：关于订单2026111800123的售后问题"
    assert parsed.message_id == "6f1c2b7a.3e41.18c2a9d4f1e.Coremail.zhangwei.sh@163.com"
    assert parsed.in_reply_to == "20261120091200.5512@shop.example.cn"
    assert parsed.thread_id == "20261118153010.4411@shop.example.cn"
    assert parsed.attachments == ["滤网破损照片.jpg"]
    assert "滤网到货就是破的" in parsed.new_text
    assert "尊敬的客户" not in parsed.new_text and "写道" not in parsed.new_text
    assert "021-68881234" not in parsed.new_text, "the signature must be cut"
    assert "尊敬的客户" in parsed.body


def test_big5_body_with_a_lying_gb2312_header_is_read_as_big5() -> None:
    parsed = parse_rfc822((DATA / "big5_lying_header.eml").read_bytes())
    assert parsed.charset == "big5"
    assert parsed.subject == "訂單遲遲未到貨"
    assert parsed.new_text.startswith("客服您好：")
    assert "筆記型電腦" in parsed.new_text
    assert "發自我的iPhone" not in parsed.new_text and "已出貨" not in parsed.new_text


def test_html_only_quoted_printable_with_blockquote_reply() -> None:
    parsed = parse_rfc822((DATA / "html_only_qp.eml").read_bytes())
    assert parsed.charset == "utf-8" and parsed.subject == "Re: APP闪退"
    assert "一直闪退" in parsed.new_text
    assert "卸载" not in parsed.new_text and "wrote" not in parsed.new_text
    assert "p {margin" not in parsed.body


def test_direct_producer_emails_get_their_history_cut_too() -> None:
    body = "退款還沒到賬\n\n-----原始邮件-----\n发件人: 客服\n您好，已处理"
    assert analysis_text(body, "email") == "退款还没到账"


@given(st.binary(max_size=600), st.sampled_from([None, "utf-8", "gbk", "big5", "x-unknown"]))
def test_any_bytes_parse_or_fail_with_a_clear_reason(payload: bytes, charset: str | None) -> None:
    header = f"Content-Type: text/plain; charset={charset}\r\n" if charset else ""
    try:
        parse_rfc822(f"Subject: x\r\n{header}\r\n".encode() + payload)
    except UndecodableEmail as exc:
        assert "body" in str(exc)


def test_a_forward_with_no_comment_keeps_the_forwarded_text() -> None:
    text = "---------- Forwarded message ---------\nFrom: 王芳\n> 洗衣机噪音太大了，要求退货"
    assert strip_history(text) == "洗衣机噪音太大了，要求退货"


def test_decoding_prefers_a_plausible_reading_and_refuses_garbage() -> None:
    text = "配送太慢了，等了两个小时饭都凉了，客服电话也打不通，非常失望。"
    assert decode_text(text.encode("gbk"), "big5") == (text, "gb18030")
    assert decode_text(text.encode("utf-8"), "gbk") == (text, "utf-8")
    assert decode_text(text.encode("gb18030"), None)[0] == text
    with pytest.raises(UndecodableEmail, match="charset"):
        decode_text(bytes(range(0x80, 0x100)) * 4, "utf-8")


def test_hong_kong_mail_declared_big5_with_hkscs_characters_is_read() -> None:
    """Cantonese mail from Hong Kong is labelled big5 but carries HKSCS characters that big5
    cannot decode; it was refused with 422 before big5hkscs joined the candidates."""
    text = "我哋嘅保單理賠咗兩個月都未有回覆，真係好失望。"
    assert decode_text(text.encode("big5hkscs"), "big5") == (text, "big5hkscs")
    plain = "理賠兩個月都未有回覆，非常失望。"
    assert decode_text(plain.encode("big5"), "big5") == (plain, "big5")


def test_a_message_without_text_is_refused() -> None:
    message = EmailMessage()
    message["Subject"] = "scan"
    message.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf",
                           filename="invoice.pdf")
    with pytest.raises(UndecodableEmail, match="no text/plain"):
        parse_rfc822(message.as_bytes())


def test_html_to_text_drops_styles_and_marks_quotes() -> None:
    assert html_to_text("<style>x{}</style><p>好评&amp;推荐</p><blockquote>旧邮件</blockquote>") \
        == "好评&推荐\n> 旧邮件"


def test_call_facts_of_a_20_minute_call_with_hold_and_transfer() -> None:
    call = CallIn.model_validate_json((DATA / "call_20min_hold_transfer.json").read_text())
    facts = call_facts(call)
    assert facts["duration_s"] == 1200.0
    assert facts["hold_count"] == 1 and facts["hold_s"] == 282.0
    assert facts["longest_gap_s"] == 282.0
    assert facts["transfers"] == 1
    assert facts["silence_s"] >= facts["hold_s"]
    text, spans = customer_text(call.turns, str)
    assert all(text[a:b] == t.text for (a, b, _), t in zip(
        spans, [t for t in call.turns if t.speaker == "customer"]))
    assert [ms for _, _, ms in spans][:2] == [31000, 53000]
    assert transcript_text(call.turns).startswith("IVR：您好")


def test_transfers_from_announcements_when_agents_are_not_named() -> None:
    call = CallIn.model_validate({
        "call_id": "c", "started_at": "2026-11-23T10:00:00+08:00",
        "ended_at": "2026-11-23T10:05:00+08:00", "turns": [
            {"speaker": "ivr", "start_ms": 0, "end_ms": 1000, "text": "正在为您转接人工"},
            {"speaker": "agent", "start_ms": 2000, "end_ms": 3000, "text": "您好"},
            {"speaker": "customer", "start_ms": 3000, "end_ms": 4000, "text": "我要退款"},
            {"speaker": "agent", "start_ms": 4000, "end_ms": 5000, "text": "我帮您转接退款组"},
        ]})
    assert call_facts(call)["transfers"] == 1


@pytest.mark.parametrize(("change", "message"), [
    ({"ended_at": "2026-11-23T12:00:01+08:00"}, "2 hours"),
    ({"ended_at": "2026-11-23T09:00:00+08:00"}, "before started_at"),
    ({"turns": [{"speaker": "agent", "start_ms": 0, "end_ms": 1, "text": "您好"}]}, "customer"),
])
def test_call_validation(change: dict, message: str) -> None:
    call = {"call_id": "c", "started_at": "2026-11-23T10:00:00+08:00",
            "ended_at": "2026-11-23T10:05:00+08:00",
            "turns": [{"speaker": "customer", "start_ms": 0, "end_ms": 1, "text": "喂"}]}
    with pytest.raises(ValueError, match=message):
        CallIn.model_validate({**call, **change})


def _turns_call(*turns: tuple[str, str]) -> CallIn:
    return CallIn.model_validate({
        "call_id": "c", "started_at": "2026-11-23T10:00:00+08:00",
        "ended_at": "2026-11-23T10:05:00+08:00", "turns": [
            {"speaker": speaker, "start_ms": 1000 * i, "end_ms": 1000 * i + 900, "text": text}
            for i, (speaker, text) in enumerate(turns)]})


def test_a_bare_number_answering_an_agents_question_for_a_phone_is_redacted_everywhere() -> None:
    """HK numbers have eight digits and no prefix: alone they read as order numbers, so only
    the agent's question says that the customer's next turns give a phone number."""
    call = _turns_call(("agent", "明白，麻煩你提供一下登記電話號碼。"), ("customer", "呃，等等"),
                       ("customer", "62384417。"), ("agent", "多謝，張訂單號碼係？"),
                       ("customer", "23456789"))
    event = call_event("test", call)
    assert "62384417" not in event.text and "62384417" not in (event.analysis_text or "")
    assert event.analysis_text == "呃，等等\n<PHONE>。\n23456789"
    assert event.text.count("<PHONE>") == 1


def test_an_id_number_answering_an_agents_question_for_one_is_redacted_whatever_its_check_digit() -> None:
    """A number read out with one digit misheard fails its check digit, and alone it reads as a
    model or order number: the agent's question says it is the customer's identity."""
    call = _turns_call(("agent", "好的，請問您的身分證字號是？"), ("customer", "R二二四一八零六五二。"),
                       ("agent", "好的，請問訂單編號？"), ("customer", "R224180652"))
    event = call_event("test", call)
    assert event.analysis_text == "<ID_CARD>。\nR224180652"
