"""A live feed of realistic Chinese feedback for ``voc up --demo``.

Four touchpoints over several channels; after ``degrade_after_s`` the delivery touchpoint turns
mostly negative (a courier partner failing), so the default negative-share rule fires within
the first minute and a new user sees the whole path, alert included.

So that every view fills within a minute, the feed also carries what the people behind the
scores look like (issue 19): hotline calls go to the calls route as transcripts with an agent
and a queue, some calming down and some getting angrier (the 坐席 scorecard and its coaching
list); every item has a customer segment and a value for each of the deployment's dimension
keys (``VOC_DIMENSIONS``, the 客群与维度 view); survey answers carry NPS, CSAT and CES ratings;
some complaints say what effort they took (跑了好几趟, 打了三次电话: the effort figures beside
CES); a few recurring customers keep answering delivery's surveys with NPS <= 6, the
detractors a callback rule turns into cases; and every item names its journey stage (售前,
售中, 售后), which the journey map is drawn by. VIP customers are only ever happy in the demo, so the
VIP-strongly-negative rule stays quiet and the first alert is the degrading touchpoint's.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import structlog

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class DemoTouchpoint:
    """Phrases one touchpoint's customers use, and the channels they use."""

    name: str
    channels: tuple[str, ...]
    positive: tuple[str, ...]
    negative: tuple[str, ...]


TOUCHPOINTS = (
    DemoTouchpoint(
        "app_checkout", ("app", "web"),
        ("下单流程很顺畅，支付一次就成功了，体验很好", "APP界面清爽，优惠券自动使用，非常方便",
         "结算页面很清楚，价格透明，满意", "新版本好用多了，付款速度很快，点赞"),
        ("支付失败了三次，页面一直转圈，太糟糕了", "APP老是闪退，购物车里的东西都没了，很生气",
         "实名认证的材料交了又交，还是审核不通过，太折磨人了"),
    ),
    DemoTouchpoint(
        "delivery", ("app", "social", "survey"),
        ("配送很快，半小时就送到了，骑手态度也很好", "快递员很负责，包装完好无损，非常满意",
         "送货准时，还帮忙搬上楼，服务很棒", "物流速度超出预期，第二天就到了，好评"),
        ("配送太慢了，等了两个小时饭都凉了，非常失望", "快递一直不送，打电话也没人接，太差劲了",
         "包裹被压坏了，东西都碎了，骑手态度还很差", "说好当天送达结果拖了三天，再也不买了",
         "送错地址还不承认，服务太烂了，非常气愤", "包裹显示已签收，我跑了好几趟驿站都没找到，很生气"),
    ),
    DemoTouchpoint(
        "hotline", ("call", "email"),
        ("客服小姐姐很耐心，问题一次就解决了，谢谢", "电话很快接通，处理很专业，满意",
         "售后退款很及时，客服态度很好", "客服主动回访，服务非常贴心"),
        ("客服电话打了半天都没人接，太失望了", "客服态度敷衍，问题推来推去，很不满意",
         "打了三次电话，转了好几个人，问题还是没解决，很失望"),
    ),
    DemoTouchpoint(
        "store_pickup", ("web", "survey"),
        ("门店自提很方便，店员很热情", "到店取货不用排队，效率很高，好评",
         "店里环境干净，工作人员很专业"),
        ("到店等了很久才拿到货，店员爱答不理，很差", "排了两个小时队才取到货，店员还让我来回折腾，很差"),
    ),
)


STAGES = ("售前", "售中", "售后")
"""Journey stages of the demo's feedback: every touchpoint serves all three (questions before
buying, the order itself, after-sales), so each cell of the journey map has figures."""
SEGMENTS = ("新客", "老客", "企业客户")
"""Segments of the demo's customers besides VIP (VIP customers are happy ones only)."""
DIMENSION_VALUES = {
    "city": ("上海", "北京", "广州", "深圳", "杭州"),
    "campaign": ("双十一", "会员日", "新人礼"),
    "product_line": ("家电", "数码", "生鲜"),
    "region": ("华东", "华北", "华南"),
}
"""Values the demo gives the dimension keys it knows; other keys get ``<key>-A`` .. ``-C``."""
DEMO_DIMENSIONS = ("city", "campaign")
"""The dimensions ``voc up --demo`` scores by when the deployment lists none."""
AGENTS = ("A-1001", "A-1002", "A-1003", "A-1004", "A-1005", "A-1006")
QUEUES = ("售后-物流", "售后-退款", "账单")
DETRACTORS = ("c-demo-0001", "c-demo-0002", "c-demo-0003")
"""Recurring customers who keep answering delivery's surveys with NPS <= 6: the only ratings of
NPS <= 6 or CSAT <= 2 in the demo, so a callback rule opens a few cases (one per customer),
not one per complaint, and on the touchpoint whose alert the demo is about."""
DETRACTOR_TOUCHPOINT = "delivery"
DETRACTOR_SHARE = 0.1
"""Of the delivery items: the detractors' answers."""
DETRACTOR_TEXTS = (
    "打了三次电话，转了好几个人，问题还是没解决，很失望",
    "退款申请的材料交了又交，两周了还没到账，不会再推荐",
    "跑了好几趟门店才换好货，太麻烦了",
)
CALL_OPENINGS = ("你好，我想问一下我的订单", "喂，你好，我有个问题想咨询一下")
CALL_CLOSINGS_GOOD = ("好的，问题解决了，谢谢你", "明白了，谢谢，服务很好")
CALLS_ROUTE = "/v1/sources/demo/calls"
BATCH_ROUTE = "/v1/feedback/batch"


class DemoFeed:
    """Generates feedback; deterministic for a given seed."""

    def __init__(self, seed: int = 7, degrade_after_s: float = 15.0, bad_share: float = 0.85,
                 normal_bad_share: float = 0.1, dimensions: Sequence[str] = ()) -> None:
        self.random = random.Random(seed)
        self.degrade_after_s = degrade_after_s
        self.bad_share = bad_share
        self.normal_bad_share = normal_bad_share
        self.dimensions = tuple(dimensions)
        self.counter = itertools.count(1)

    def next(self, elapsed_s: float) -> tuple[str, dict[str, object]]:
        """The route and body of the next piece of feedback: a call transcript for the calls
        route, else one item of the generic batch route."""
        item, negative = self._draw(elapsed_s)
        if item["channel"] == "call":
            return CALLS_ROUTE, self.call(item, negative)
        return BATCH_ROUTE, item

    def item(self, elapsed_s: float) -> dict[str, object]:
        """One feedback item as the generic ingest route takes it."""
        return self._draw(elapsed_s)[0]

    def _draw(self, elapsed_s: float) -> tuple[dict[str, object], bool]:
        tp = self.random.choice(TOUCHPOINTS)
        degraded = tp.name == "delivery" and elapsed_s >= self.degrade_after_s
        negative = self.random.random() < (self.bad_share if degraded else self.normal_bad_share)
        number = next(self.counter)
        item: dict[str, object] = {
            "source": "demo",
            "external_id": f"demo-{self.random.getrandbits(32):08x}-{number}",
            "channel": self.random.choice(tp.channels),
            "touchpoint": tp.name,
            "text": self.random.choice(tp.negative if negative else tp.positive),
            # One-off customers, from ids enough that two of them rarely collide.
            "customer_id": f"c-{self.random.randint(10_000, 99_999)}",
            "stage": self.random.choice(STAGES),
            "segment": self.random.choice(SEGMENTS if negative else ("VIP", *SEGMENTS)),
            "metadata": self._metadata(),
        }
        if item["channel"] == "survey":
            item["ratings"] = self._ratings(negative)
        if tp.name == DETRACTOR_TOUCHPOINT and self.random.random() < DETRACTOR_SHARE:
            item.update(channel="survey", customer_id=self.random.choice(DETRACTORS),
                        segment=self.random.choice(SEGMENTS), stage="售后",
                        text=self.random.choice(DETRACTOR_TEXTS), ratings=self._ratings(True, True))
            negative = True
        return item, negative

    def call(self, item: dict[str, object], negative: bool) -> dict[str, object]:
        """The item as a contact-center call: an agent, a queue and a transcript whose
        customer gets angrier (a complaint) or calms down (praise) from the first turn to the
        last, so the tone trend and the coaching list have calls of both kinds."""
        text = str(item["text"])
        ended = datetime.now(UTC).replace(microsecond=0)
        length_s = self.random.randint(120, 600)
        first = self.random.choice(CALL_OPENINGS)
        last = text if negative else self.random.choice(CALL_CLOSINGS_GOOD)
        middle = "我之前反映的问题到现在都没人处理" if negative else text
        spoken = [("agent", "您好，请问有什么可以帮您？"), ("customer", first),
                  ("agent", "好的，我帮您查一下，请稍等"), ("customer", middle),
                  ("agent", "非常抱歉给您带来不便" if negative else "好的，已经为您处理"),
                  ("customer", last)]
        step_ms = length_s * 1000 // len(spoken)
        turns = [{"speaker": speaker, "start_ms": i * step_ms, "end_ms": (i + 1) * step_ms - 500,
                  "text": words} for i, (speaker, words) in enumerate(spoken)]
        return {
            "call_id": f"demo-call-{str(item['external_id'])[5:]}",
            "agent_id": self.random.choice(AGENTS), "queue": self.random.choice(QUEUES),
            "touchpoint": item["touchpoint"],
            "started_at": (ended - timedelta(seconds=length_s)).isoformat(),
            "ended_at": ended.isoformat(), "customer_id": item["customer_id"],
            "stage": item["stage"], "segment": item["segment"], "metadata": item["metadata"],
            "transfers": self.random.randint(1, 3) if negative else 0, "turns": turns,
        }

    def _metadata(self) -> dict[str, str]:
        keys = dict.fromkeys(("city", *self.dimensions))
        return {key: self.random.choice(DIMENSION_VALUES.get(
            key, (f"{key}-A", f"{key}-B", f"{key}-C"))) for key in keys}

    def _ratings(self, negative: bool, detractor: bool = False) -> dict[str, int]:
        """A detractor's ratings, an unhappy customer's (passive NPS, CSAT 3, a hard CES) or
        a happy one's."""
        if detractor:
            return {"nps": self.random.randint(0, 6), "csat": self.random.randint(1, 2),
                    "ces": self.random.randint(5, 7)}
        if negative:
            return {"nps": self.random.randint(7, 8), "csat": 3, "ces": self.random.randint(5, 7)}
        return {"nps": self.random.randint(7, 10), "csat": self.random.randint(4, 5),
                "ces": self.random.randint(1, 3)}


async def run_demo(api_url: str, rate: float, stop: asyncio.Event,
                   feed: DemoFeed | None = None, api_key: str | None = None,
                   dimensions: Sequence[str] = ()) -> None:
    """Post ``rate`` pieces of feedback per second to the ingest API until ``stop`` is set
    (with ``api_key`` when the API asks for credentials), items filling the deployment's
    ``dimensions``."""
    feed = feed or DemoFeed(dimensions=dimensions)
    loop = asyncio.get_running_loop()
    started = loop.time()
    sent = 0
    headers = {"X-API-Key": api_key} if api_key else {}
    async with httpx.AsyncClient(base_url=api_url, timeout=30, headers=headers) as client:
        while not stop.is_set():
            elapsed = loop.time() - started
            due = int(elapsed * rate) + 1 - sent
            if due > 0:
                pieces = [feed.next(elapsed) for _ in range(due)]
                batch = [body for route, body in pieces if route == BATCH_ROUTE]
                posts: list[tuple[str, object]] = [(BATCH_ROUTE, {"events": batch})] if batch else []
                posts += [(route, body) for route, body in pieces if route != BATCH_ROUTE]
                for route, body in posts:
                    response = await client.post(route, json=body)
                    if response.status_code != 202:
                        log.warning("demo feed post refused", route=route,
                                    status=response.status_code, body=response.text[:300])
                # Counted as sent either way: a refused post is logged, not retried forever.
                sent += due
                if sent // 100 != (sent - due) // 100:
                    log.info("demo feed", sent=sent, elapsed_s=round(elapsed))
            try:
                await asyncio.wait_for(stop.wait(), timeout=0.5)
            except TimeoutError:
                pass
