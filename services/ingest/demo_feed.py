"""A live feed of realistic Chinese feedback for ``voc up --demo``.

Four touchpoints over several channels; after ``degrade_after_s`` the delivery touchpoint turns
mostly negative (a courier partner failing), so the default negative-share rule fires within
the first minute and a new user sees the whole path, alert included.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from dataclasses import dataclass

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
        ("支付失败了三次，页面一直转圈，太糟糕了", "APP老是闪退，购物车里的东西都没了，很生气"),
    ),
    DemoTouchpoint(
        "delivery", ("app", "social", "survey"),
        ("配送很快，半小时就送到了，骑手态度也很好", "快递员很负责，包装完好无损，非常满意",
         "送货准时，还帮忙搬上楼，服务很棒", "物流速度超出预期，第二天就到了，好评"),
        ("配送太慢了，等了两个小时饭都凉了，非常失望", "快递一直不送，打电话也没人接，太差劲了",
         "包裹被压坏了，东西都碎了，骑手态度还很差", "说好当天送达结果拖了三天，再也不买了",
         "送错地址还不承认，服务太烂了，非常气愤"),
    ),
    DemoTouchpoint(
        "hotline", ("call", "email"),
        ("客服小姐姐很耐心，问题一次就解决了，谢谢", "电话很快接通，处理很专业，满意",
         "售后退款很及时，客服态度很好", "客服主动回访，服务非常贴心"),
        ("客服电话打了半天都没人接，太失望了", "客服态度敷衍，问题推来推去，很不满意"),
    ),
    DemoTouchpoint(
        "store_pickup", ("web", "survey"),
        ("门店自提很方便，店员很热情", "到店取货不用排队，效率很高，好评",
         "店里环境干净，工作人员很专业"),
        ("到店等了很久才拿到货，店员爱答不理，很差",),
    ),
)


class DemoFeed:
    """Generates feedback batches; deterministic for a given seed."""

    def __init__(self, seed: int = 7, degrade_after_s: float = 15.0, bad_share: float = 0.85,
                 normal_bad_share: float = 0.1) -> None:
        self.random = random.Random(seed)
        self.degrade_after_s = degrade_after_s
        self.bad_share = bad_share
        self.normal_bad_share = normal_bad_share
        self.counter = itertools.count(1)

    def item(self, elapsed_s: float) -> dict[str, object]:
        """One feedback item as the ingest API takes it."""
        tp = self.random.choice(TOUCHPOINTS)
        degraded = tp.name == "delivery" and elapsed_s >= self.degrade_after_s
        negative = self.random.random() < (self.bad_share if degraded else self.normal_bad_share)
        number = next(self.counter)
        return {
            "source": "demo",
            "external_id": f"demo-{self.random.getrandbits(32):08x}-{number}",
            "channel": self.random.choice(tp.channels),
            "touchpoint": tp.name,
            "text": self.random.choice(tp.negative if negative else tp.positive),
            "customer_id": f"c-{self.random.randint(1000, 9999)}",
            "metadata": {"city": self.random.choice(["上海", "北京", "广州", "深圳", "杭州"])},
        }


async def run_demo(api_url: str, rate: float, stop: asyncio.Event,
                   feed: DemoFeed | None = None, api_key: str | None = None) -> None:
    """Post ``rate`` events per second to the ingest API until ``stop`` is set (with
    ``api_key`` when the API asks for credentials)."""
    feed = feed or DemoFeed()
    loop = asyncio.get_running_loop()
    started = loop.time()
    sent = 0
    headers = {"X-API-Key": api_key} if api_key else {}
    async with httpx.AsyncClient(base_url=api_url, timeout=30, headers=headers) as client:
        while not stop.is_set():
            elapsed = loop.time() - started
            due = int(elapsed * rate) + 1 - sent
            if due > 0:
                events = [feed.item(elapsed) for _ in range(due)]
                response = await client.post("/v1/feedback/batch", json={"events": events})
                if response.status_code == 202:
                    sent += due
                    if sent // 100 != (sent - due) // 100:
                        log.info("demo feed", sent=sent, elapsed_s=round(elapsed))
                else:
                    log.warning("demo feed post refused", status=response.status_code,
                                body=response.text[:300])
            try:
                await asyncio.wait_for(stop.wait(), timeout=0.5)
            except TimeoutError:
                pass
