-- Final outcome of each webhook delivery of an alert event. outcome = 'dead_letter' marks a
-- delivery that failed after all retries (the alert bytes are also on the dead-letter topic).
CREATE TABLE IF NOT EXISTS alert_deliveries
(
    alert_id String,
    status String,
    webhook String,
    url String,
    format String,
    outcome String,
    attempts UInt32,
    http_status UInt16,
    error String,
    finished_at DateTime('UTC'),
    inserted_ms UInt64
)
ENGINE = ReplacingMergeTree(inserted_ms)
PARTITION BY toYYYYMM(finished_at)
ORDER BY (alert_id, status, webhook)
