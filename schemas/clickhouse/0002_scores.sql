-- Window scores per touchpoint. Each recomputation of a window inserts a new row with a larger
-- computed_ms; the newest wins (FINAL or argMax).
CREATE TABLE IF NOT EXISTS scores
(
    touchpoint String,
    window_seconds UInt32,
    window_start DateTime('UTC'),
    volume UInt64,
    positive_count UInt64,
    neutral_count UInt64,
    negative_count UInt64,
    mean_sentiment Float64,
    negative_share Float64,
    computed_ms UInt64
)
ENGINE = ReplacingMergeTree(computed_ms)
PARTITION BY toYYYYMM(window_start)
ORDER BY (touchpoint, window_seconds, window_start)
