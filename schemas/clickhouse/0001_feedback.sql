-- Every enriched feedback event, one row per event_id. Re-delivered events carry the same
-- sorting key, so ReplacingMergeTree collapses them; readers that need exact figures use FINAL.
CREATE TABLE IF NOT EXISTS feedback
(
    event_id String,
    source String,
    external_id String,
    channel String,
    touchpoint String,
    customer_id String,
    text String,
    occurred_at DateTime('UTC'),
    received_at DateTime('UTC'),
    enriched_at DateTime('UTC'),
    sentiment Float64,
    sentiment_label String,
    sentiment_model String,
    topics Array(String),
    metadata String,
    enriched_json String,
    inserted_ms UInt64
)
ENGINE = ReplacingMergeTree(inserted_ms)
PARTITION BY toYYYYMM(occurred_at)
ORDER BY (touchpoint, occurred_at, event_id)
