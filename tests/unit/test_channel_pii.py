"""PII redaction: realistic strings, and properties over generated 身份证 and card numbers."""

from __future__ import annotations

from datetime import date
from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.core import pii
from services.core.pii import (
    BANK_CARD,
    EMAIL,
    ID_CARD,
    PHONE,
    id_card_valid,
    luhn_valid,
    redact,
    redact_bytes,
    redact_counted,
)

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def with_check_digit(first17: str) -> str:
    return first17 + "10X98765432"[sum(int(d) * w for d, w in zip(first17, _WEIGHTS)) % 11]


def with_luhn_digit(body: str) -> str:
    return next(body + str(d) for d in range(10) if luhn_valid(body + str(d)))


@pytest.mark.parametrize(("text", "expected"), [
    ("我的手机是13812345678，麻烦回电", "我的手机是<PHONE>，麻烦回电"),
    ("联系电话：+86 139-1234-5678", "联系电话：<PHONE>"),
    ("拨打 0086 15900001111 找我", "拨打 <PHONE> 找我"),
    ("座机021-68881234转8021，工作日在", "座机<PHONE>，工作日在"),
    ("(0755)23456789 或 010 87654321", "<PHONE> 或 <PHONE>"),
    ("身份证号11010519491231002X，请核实", "身份证号<ID_CARD>，请核实"),
    ("身份证110105 1949 1231 002X", "身份证<ID_CARD>"),
    ("卡号6222，0212，3456，7890，128", "卡号<BANK_CARD>"),
    ("卡号622202 1234567890128", "卡号<BANK_CARD>"),
    ("身份证 11010519491231002x", "身份证 <ID_CARD>"),
    ("卡号 6222 0212 3456 7890 128 扣款两次", "卡号 <BANK_CARD> 扣款两次"),
    ("信用卡4111111111111111被盗刷", "信用卡<BANK_CARD>被盗刷"),
    ("请发到 zhang.wei+shop@163.com 或 li_na@example.com.cn", "请发到 <EMAIL> 或 <EMAIL>"),
    # an address read out (a call transcript) or typed with the at sign or the dots in words or
    # a Chinese input method's full stop
    ("可以，邮箱是 zhangli_1988 at 163.com。你们下礼拜一之前", "可以，邮箱是 <EMAIL>。你们下礼拜一之前"),
    ("邮箱 zhangsan 艾特 一六三 点 com，发这个", "邮箱 <EMAIL>，发这个"),
    ("wang.fang艾特qq点com", "<EMAIL>"),
    ("发到abc@163。com谢谢", "发到<EMAIL>谢谢"),
    ("写信到 zhangsan＠１６３。ｃｏｍ", "写信到 <EMAIL>"),
    ("邮箱 li.na (at) example [dot] com", "邮箱 <EMAIL>"),
    ("email: zhang AT gmail DOT com", "email: <EMAIL>"),
    ("信箱 mei圈a yahoo點com點tw 或 abc小老鼠hinet.net", "信箱 <EMAIL> 或 <EMAIL>"),
    # ... but not an English "at" before something that is no domain
    ("meet at 5.30pm", "meet at 5.30pm"),
    ("看 at 163.com 的公告", "看 at 163.com 的公告"),
    ("发了朋友圈a了", "发了朋友圈a了"),
    # speech-to-text: numbers read out digit by digit
    ("客户：我电话一三九 零五七一 二二八八", "客户：我电话<PHONE>"),
    ("号码是幺三八五七一二六六零九对", "号码是<PHONE>对"),
    ("身份证一一零一零五一九四九一二三一零零二叉", "身份证<ID_CARD>"),
    ("我的号138 五七一二 六六零九", "我的号<PHONE>"),
    ("电话13812345678一直没人接，一二不行", "电话<PHONE>一直没人接，一二不行"),  # 一 as a word
    # the pauses of a number read out, written as commas; other groupings; digit by digit
    ("幺三八，一二三四，五六七八，记一下", "<PHONE>，记一下"),
    ("我电话是一三八、一二三四、五六七八", "我电话是<PHONE>"),
    ("电话 138，1234，5678 谢谢", "电话 <PHONE> 谢谢"),
    ("电话 1381 234 5678", "电话 <PHONE>"),
    ("我的手机号是 1 3 8 1 2 3 4 5 6 7 8 对", "我的手机号是 <PHONE> 对"),
    # Hong Kong and Taiwan identity numbers, with their check digits
    ("身份證號碼K385126(5)，唔該核對", "身份證號碼<ID_CARD>，唔該核對"),
    ("身份證 AB987654（3）", "身份證 <ID_CARD>"),
    ("身分證字號A123456789請協助", "身分證字號<ID_CARD>請協助"),
    # after a word that names an identity document, any 15 to 18 digits: the old 15-digit
    # 身份证, a number mistyped by a digit, in full-width or in groups
    ("身份证号110105491231002", "身份证号<ID_CARD>"),
    ("身份证５１０１２２２０００９１８５７１９", "身份证<ID_CARD>"),
    ("我的身分證號碼是 110105 19491231 0029，麻烦", "我的身分證號碼是 <ID_CARD>，麻烦"),
    ("ID card no. 110105491231002", "ID card no. <ID_CARD>"),
    # passports, only after a word that names one
    ("我护照号是E78823461，订的时候填的没错啊", "我护照号是<ID_CARD>，订的时候填的没错啊"),
    ("護照號碼：KJ1234567", "護照號碼：<ID_CARD>"),
    ("Passport no. EA1234567 please", "Passport no. <ID_CARD> please"),
    # Hong Kong numbers: with the country code, or right after a word that names a phone
    ("+852 9123 4567 搵我", "<PHONE> 搵我"),
    ("手提：9123 4567，唔該回覆", "手提：<PHONE>，唔該回覆"),
    ("WhatsApp 6123-4567 or call 2345 6789", "WhatsApp <PHONE> or call <PHONE>"),
    ("致電23456789無人聽", "致電<PHONE>無人聽"),
    # Taiwan mobiles and landlines in their usual groupings
    ("請打 0912-345-678 或 (02)2345-6789", "請打 <PHONE> 或 <PHONE>"),
    ("+886 912 345 678", "<PHONE>"),
    ("公司電話 +886-2-2345-6789 分機", "公司電話 <PHONE> 分機"),
    ("台中 04 2345 6789", "台中 <PHONE>"),
    # numbers read out with the speaker's pauses written as commas, or a space between digits
    ("電話係九八七六，五四三二", "電話係<PHONE>"),
    ("手機是零九三五，零六二，八一四", "手機是<PHONE>"),
    ("电话 九 八 七 六 五 四 三 二", "电话 <PHONE>"),
    ("座机零二一，六二三四，五六七八", "座机<PHONE>"),
    ("台北零二，二三四五，六七八九", "台北<PHONE>"),
    ("身份證號碼K三八五一二六（五）", "身份證號碼<ID_CARD>"),
    ("我身分證字號係R二二四一八零六五二。", "我身分證字號係<ID_CARD>。"),
    # a mobile number with a digit too many or too few, after a phone word
    ("我手机号幺三五六四二八七零九一三，回个电话", "我手机号<PHONE>，回个电话"),
    ("电话1381234567", "电话<PHONE>"),
    ("Tel1381234567", "Tel<PHONE>"),
    ("证件号码E12345678，入住登记用的", "证件号码<ID_CARD>，入住登记用的"),
])
def test_realistic_pii_is_replaced_by_typed_placeholders(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize("text", [
    "订单号2026111800123已经一周了",        # 13-digit order number
    "运单号 SF1402938475612 一直没更新",     # courier waybill
    "110105194912310021 这个号码校验位不对",  # 18 digits, wrong check digit
    "6222021234567890127 不过 Luhn",          # 19 digits failing Luhn
    "客服热线400-820-8820打不通",             # company hotline, not personal data
    "等了12315分钟",                          # short numbers
    "2026-11-23 10:00 下单",                  # dates and times
    "一五一十地说了，一二三四五六七八九零",      # idiom, counting
    "订单二零二四一一二三，打了一百二十三次",     # a spoken date, a counted number
    "K385126(4) 型號B100234567",                # check digits that do not match
    "訂單編號 23456789 仲未到",                  # a bare 8-digit number: an order, not a phone
    "Hotel 2345 6789 room",                      # a phone word inside another word
    "单号85223456789",                           # 852 inside a longer number
    "CALL-20261123-000187 已转接",               # a phone word starting an identifier
    "电话单 2026 1123/0001",                     # a number joined on to more
    "订单 1381 2345 6789 0",                     # twelve digits in groups: not a mobile
    "1101 2519 4912 3100 21 校验位不对",           # 18 digits in groups, wrong check digit
    "单号 6222 2212 3456 7890 127",               # 19 digits in groups failing Luhn
    "评分 1 2 3 4 5 6 7 8 9 10 11 都有",          # counting with spaces
    "第1、3、5题",                               # a list
    "型号E78823461的护照夹坏了",                  # a passport word after, not before, the number
    "身份证后四位1234",                            # a few digits of an ID
    "身份证丢了，卡号6222021234567890127",         # 19 digits failing Luhn, not an ID's length
    "VALID No 110105491231002",                   # "ID No" inside a word
    "110105491231002 的证件",                     # an ID word after, not before, the number
    "价格1,234,567元，订单 1,000,000",              # amounts with thousands separators
    "第一、二、三次都没修好",                       # a list read out
    "電話 2 3 4 5 6 7 8 9 10",                     # counting after a phone word
    "型號 R224180652 嘅機",                         # an ID shape with no ID word, wrong check digit
    "订单1381234567890",                            # a mobile-like run with no phone word
])
def test_numbers_that_are_not_pii_are_kept(text: str) -> None:
    assert redact(text) == text


def test_counts_and_idempotence() -> None:
    text = "手机13812345678，邮箱a@b.cn，身份证11010519491231002X，卡4111111111111111"
    once, counts = redact_counted(text)
    assert counts == {PHONE: 1, EMAIL: 1, ID_CARD: 1, BANK_CARD: 1}
    assert redact(once) == once


def test_undecodable_bytes_are_redacted_too() -> None:
    raw = "手机13812345678".encode("gbk") + b"\xff\xfe"
    cleaned = redact_bytes(raw)
    assert b"13812345678" not in cleaned and b"<PHONE>" in cleaned
    assert cleaned.endswith(b"\xff\xfe")


def test_id_card_checks_birth_date() -> None:
    assert id_card_valid("11010519491231002X")
    assert not id_card_valid(with_check_digit("11010519491331002"))  # month 13


region = st.sampled_from(["110105", "310115", "440305", "510104", "330106"])
birth = st.dates(min_value=date(1930, 1, 1), max_value=date(2020, 12, 31))
sequence = st.integers(0, 999)
padding = st.sampled_from(["", "我的身份证是", "证件号：", "Customer ID card "])
tail = st.sampled_from(["", "，谢谢", "。请尽快处理", " ok"])


@given(region, birth, sequence, padding, tail)
def test_any_valid_id_card_is_redacted(r: str, b: date, s: int, before: str, after: str) -> None:
    number = with_check_digit(f"{r}{b:%Y%m%d}{s:03d}")
    cleaned = redact(before + number + after)
    assert cleaned == before + ID_CARD + after


@given(region, birth, sequence)
def test_a_wrong_check_digit_is_never_called_an_id_card(r: str, b: date, s: int) -> None:
    good = with_check_digit(f"{r}{b:%Y%m%d}{s:03d}")
    wrong = good[:17] + next(c for c in "0123456789X" if c != good[17])
    assert ID_CARD not in redact(f"号码{wrong}")


@given(st.sampled_from(["622202", "621700", "436742", "402674", "625807"]),
       st.integers(min_value=16, max_value=19), st.randoms(use_true_random=False),
       st.booleans())
def test_any_luhn_valid_card_is_redacted(bin_: str, length: int, rnd, grouped: bool) -> None:  # noqa: ANN001
    body = bin_ + "".join(str(rnd.randint(0, 9)) for _ in range(length - len(bin_) - 1))
    number = with_luhn_digit(body)
    if id_card_valid(number):
        return
    shown = " ".join(number[i:i + 4] for i in range(0, len(number), 4)) if grouped else number
    cleaned = redact(f"银行卡{shown}被扣款")
    assert cleaned == f"银行卡{BANK_CARD}被扣款"


@given(st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True))
def test_any_mobile_number_is_redacted(number: str) -> None:
    assert redact(f"请打{number}联系我") == f"请打{PHONE}联系我"


@given(st.from_regex(r"[2-9][0-9]{7}", fullmatch=True), st.sampled_from(["+852 ", "00852", "手機", "電話："]),
       st.sampled_from(["", " ", "-"]))
def test_any_hong_kong_number_with_its_code_or_a_phone_word_is_redacted(
        number: str, before: str, split: str) -> None:
    text = f"{before}{number[:4]}{split}{number[4:]}，唔該"
    kept = "" if before[0] in "+0" else before
    assert redact(text) == f"{kept}{PHONE}，唔該"


@given(st.from_regex(r"9[0-9]{8}", fullmatch=True), st.sampled_from(["0", "+886 ", "+886-"]))
def test_any_taiwan_mobile_in_4_3_3_groups_is_redacted(digits: str, prefix: str) -> None:
    shown = f"{digits[:3]}-{digits[3:6]}-{digits[6:]}"
    assert redact(f"手機{prefix}{shown}喔") == f"手機{PHONE}喔"


@given(st.from_regex(r"[A-Z]{1,2}[0-9]{6}", fullmatch=True), st.sampled_from("0123456789A"))
def test_a_hong_kong_id_is_redacted_exactly_when_its_check_digit_matches(
        body: str, check: str) -> None:
    text = f"登記資料：{body}({check})好"
    assert (redact(text) == f"登記資料：{ID_CARD}好") == pii.hk_id_valid(body + check)


@given(st.from_regex(r"[A-Z][12][0-9]{7}", fullmatch=True), st.integers(0, 9))
def test_a_taiwan_id_is_redacted_exactly_when_its_check_digit_matches(
        body: str, check: int) -> None:
    text = f"登記資料：{body}{check}，謝謝"
    assert (redact(text) == f"登記資料：{ID_CARD}，謝謝") == pii.tw_id_valid(f"{body}{check}")


@given(st.one_of(st.from_regex(r"[A-Z][12][0-9]{8}", fullmatch=True),
                 st.from_regex(r"[A-Z]{1,2}[0-9]{6}\([0-9A]\)", fullmatch=True)),
       st.sampled_from(["身份證", "身分證字號係", "證件號碼：", "ID No. "]))
def test_a_taiwan_or_hong_kong_id_after_an_id_word_is_redacted_whatever_its_check_digit(
        number: str, word: str) -> None:
    """A customer who names the document and mistypes a digit (or reads the number out) gives
    their identity all the same: after an ID word no check digit is asked for."""
    assert redact(f"{word}{number}，謝謝") == f"{word}{ID_CARD}，謝謝"


_READ_OUT = str.maketrans("0123456789", "零一二三四五六七八九")


@given(st.from_regex(r"[2-9][0-9]{7}", fullmatch=True), st.sampled_from(["電話係", "手提", "WhatsApp "]),
       st.sampled_from(["", "，", " ", "、"]))
def test_a_hong_kong_number_read_out_after_a_phone_word_is_redacted(
        number: str, word: str, pause: str) -> None:
    spoken = f"{number[:4]}{pause}{number[4:]}".translate(_READ_OUT)
    assert redact(f"{word}{spoken}，唔該") == f"{word}{PHONE}，唔該"


@given(st.from_regex(r"9[0-9]{8}", fullmatch=True), st.sampled_from(["", "，", " "]))
def test_a_taiwan_mobile_read_out_in_groups_is_redacted(digits: str, pause: str) -> None:
    spoken = f"0{digits[:3]}{pause}{digits[3:6]}{pause}{digits[6:]}".translate(_READ_OUT)
    assert redact(f"我手機{spoken}，謝謝") == f"我手機{PHONE}，謝謝"


@given(st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True), st.booleans())
def test_any_mobile_number_read_out_is_redacted(number: str, grouped: bool) -> None:
    spoken = number.translate(str.maketrans("0123456789", "零一二三四五六七八九"))
    if grouped:
        spoken = f"{spoken[:3]} {spoken[3:7]} {spoken[7:]}"
    assert redact(f"客户：{spoken}，你记一下") == f"客户：{PHONE}，你记一下"


@given(st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True),
       st.lists(st.sampled_from(["", " ", "-", "，", "、", "\u3000", "－"]), min_size=10, max_size=10))
def test_a_mobile_number_with_one_separator_anywhere_between_its_digits_is_redacted(
        number: str, seps: list[str]) -> None:
    """However a number is split (1381 234 5678, 1 3 8 …, commas where a speaker paused), by at
    most one separator between two digits, it is a phone number."""
    spelled = number[0] + "".join(sep + digit for sep, digit in zip(seps, number[1:], strict=True))
    assert redact(f"客户：{spelled}，你记一下") == f"客户：{PHONE}，你记一下"


@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=200))
def test_redaction_is_idempotent_on_any_text(text: str) -> None:
    once = redact(text)
    assert redact(once) == once


def _rule_matches() -> st.SearchStrategy[tuple[str, int]]:
    """A match of a rule (generated from its own pattern) with the fewest ASCII digits the
    rule says its matches hold."""
    rules = (*pii._RULES, *pii._ASKED_RULES.values())
    return st.sampled_from([(pattern, fewest) for pattern, _, fewest in rules]).flatmap(
        lambda rule: st.from_regex(rule[0]).map(lambda text: (rule[0].search(text)[0], rule[1])))


@given(_rule_matches())
def test_every_rule_match_passes_the_quick_check(match: tuple[str, int]) -> None:
    """redact runs its rule scans only on text the quick check accepts, so anything any rule
    can match must be accepted by it (generated from the rules' own patterns)."""
    assert pii._MAYBE_PII.search(match[0]) is not None


@settings(deadline=None)
@given(_rule_matches())
def test_every_rule_match_holds_the_digits_its_rule_is_skipped_without(match: tuple[str, int]) -> None:
    """redact skips a rule on a text with fewer ASCII digits than the rule says its matches
    hold (or, for the e-mail rules, without an "@" or a word said for it), so no match may
    hold fewer."""
    found, fewest = match
    assert sum(found.count(d) for d in "0123456789") >= fewest
    assert fewest or pii._AT_MARK.search(found) is not None


@given(st.lists(st.one_of(_rule_matches().map(lambda match: match[0]), st.text(max_size=12),
                          st.sampled_from(["身份证", "电话", "+86 ", "护照", "，", " "])),
                max_size=6).map("".join), st.sampled_from([(), ("phone",), ("id",), ("id", "phone")]))
@settings(deadline=None)
def test_skipping_rules_by_their_digits_redacts_what_every_rule_redacted(
        text: str, asked: tuple[str, ...]) -> None:
    """Text built from rule matches, ID and phone words and noise is redacted with the same
    output and counts whether or not rules are skipped by their digits."""
    with patch.object(pii, "_ascii_digits", lambda shadow: 10**9):
        every_rule = pii.redact_counted(text, asked)
    assert pii.redact_counted(text, asked) == every_rule


@pytest.mark.parametrize(("text", "expected"), [
    ("身份证号008613000000000", "身份证号<PHONE>"),
    ("身份证号 13812345678", "身份证号 <PHONE>"),
    ("证件号6222020000000000000", "证件号<BANK_CARD>"),
    ("身份证号11010519491231002", "身份证号<ID_CARD>"),
])
def test_a_valid_phone_or_card_after_an_id_word_keeps_its_placeholder(
        text: str, expected: str) -> None:
    """Hypothesis found 0086 and a mobile number after 身份证号 typed as <ID_CARD>: the
    named-ID rule runs after every rule with a check, as a fallback."""
    assert redact(text) == expected


@pytest.mark.parametrize(("text", "asked", "expected"), [
    ("62384417。", ("phone",), "<PHONE>。"),
    ("62384417。", ("id",), "62384417。"),
    ("R二二四一八零六五二。", ("id",), "<ID_CARD>。"),
    ("R二二四一八零六五二。", ("phone",), "R二二四一八零六五二。"),
    ("订单号HK6050091", ("phone",), "订单号HK6050091"),
])
def test_a_bare_number_is_read_as_what_was_asked_for(text: str, asked: tuple[str, ...], expected: str) -> None:
    assert redact(text, asked) == expected


def test_what_a_turn_asks_for() -> None:
    assert pii.asked_for("麻煩你提供一下登記電話號碼。") == {"phone"}
    assert pii.asked_for("請問您的身分證字號是？") == {"id"}
    assert pii.asked_for("请提供身份证号和联系方式") == {"id", "phone"}
    assert pii.asked_for("请问还有什么可以帮您？") == frozenset()
