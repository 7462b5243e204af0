-- Alerts as fired. alert_id is deterministic per breach, so a re-fired duplicate collapses.
CREATE TABLE IF NOT EXISTS alerts
(
    alert_id String,
    dedupe_key String,
    rule_id String,
    severity String,
    status String,
    touchpoint String,
    metric String,
    operator String,
    threshold Float64,
    value Float64,
    volume UInt64,
    window_start DateTime('UTC'),
    window_end DateTime('UTC'),
    fired_at DateTime('UTC'),
    message String,
    inserted_ms UInt64
)
ENGINE = ReplacingMergeTree(inserted_ms)
PARTITION BY toYYYYMM(window_start)
ORDER BY (dedupe_key, alert_id)
