"""Social posts and comments (Weibo, WeChat, Douyin, Xiaohongshu): the post as written, its
markup listed and dropped from the analysed text, its place in the thread and its reach.

``platform:post_id`` is the message's identity.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter
from pydantic import BeforeValidator, ConfigDict, Field, StringConstraints

from services.core.bounds import clean_input
from services.core.channels import prepare_raw
from services.core.events import (
    MAX_LIST,
    RawFeedback,
    Reach,
    SocialFacts,
    SocialPlatform,
    UtcTime,
    stable_event_id,
    utc_now,
)
from services.core.normalize import normalize_social, to_simplified
from services.core.pii import redact
from services.ingest.deps import PublisherDep, Source
from services.ingest.inputs import Batch, CustomerId, Id, Input, Metadata, Stage, Text, Touchpoint
from services.ingest.publish import Accepted

router = APIRouter()


class SocialPostIn(Input):
    """One post or comment on a social platform."""

    model_config = ConfigDict(extra="forbid")

    platform: SocialPlatform
    post_id: Id
    text: Text
    touchpoint: Touchpoint = "social"
    author: Annotated[str, StringConstraints(max_length=256),
                      BeforeValidator(clean_input)] | None = None
    url: Annotated[str, StringConstraints(max_length=2048)] | None = None
    parent_id: Id | None = Field(default=None, description="The post or comment replied to.")
    root_id: Id | None = Field(default=None, description="The thread's first post.")
    followers: Reach | None = None
    likes: Reach | None = None
    reposts: Reach | None = None
    comments: Reach | None = None
    stage: Stage | None = None
    customer_id: CustomerId | None = None
    posted_at: UtcTime | None = Field(
        default=None, description="RFC 3339 with offset; default: time of receipt.")
    metadata: Metadata = Field(default_factory=dict)


class SocialBatchIn(Input):
    """Posts and comments, e.g. one thread as a listening tool collected it."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"posts": [{
        "platform": "weibo", "post_id": "5032117745603301", "author": "港島小吃貨",
        "url": "https://weibo.com/7781234567/P3x9kAbCd", "touchpoint": "delivery",
        "text": "@優選商城官方 物流太慢了😡 #優選商城配送延誤# https://t.cn/A6x9QwZk",
        "followers": 18342, "likes": 256, "reposts": 87,
        "posted_at": "2026-11-23T09:41:07+08:00"}]}]})

    posts: Batch[SocialPostIn]


def social_event(source: str, item: SocialPostIn) -> RawFeedback:
    """The raw event of one social post; markup is listed and dropped from the analysed text."""
    received = utc_now()
    external = f"{item.platform}:{item.post_id}"
    text = redact(item.text)
    social = normalize_social(text)
    return prepare_raw(RawFeedback(
        event_id=stable_event_id(source, external), source=source, external_id=external,
        channel="social", touchpoint=item.touchpoint, text=text,
        analysis_text=social.analysis or to_simplified(text),
        occurred_at=item.posted_at or received, received_at=received,
        customer_id=item.customer_id, metadata=item.metadata, stage=item.stage,
        social=SocialFacts(
            platform=item.platform, post_id=item.post_id, author=item.author, url=item.url,
            parent_id=item.parent_id, root_id=item.root_id or item.parent_id,
            followers=item.followers, likes=item.likes, reposts=item.reposts,
            comments=item.comments, mentions=social.mentions[:MAX_LIST],
            hashtags=social.hashtags[:MAX_LIST], urls=social.urls[:MAX_LIST],
            emoji=social.emoji[:MAX_LIST]),
    ))


@router.post("/v1/sources/{source}/social", status_code=202, response_model=Accepted,
             summary="Social posts and comments (weibo, wechat, douyin, xiaohongshu, other)")
async def post_social(source: Source, batch: SocialBatchIn, publisher: PublisherDep) -> Accepted:
    return await publisher.accept_batch(batch.posts, lambda item: social_event(source, item),
                                        "posts", "posted_at")
