-- Final outcome of each webhook delivery of a case transition to the team owning the case
-- (an SLA escalation pages the next level). outcome = 'dead_letter' marks a delivery that
-- failed after all retries (the case event bytes are also on the dead-letter topic).
CREATE TABLE IF NOT EXISTS case_deliveries
(
    case_id String,
    seq UInt32,
    event_id String,
    action String,
    team String,
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
ORDER BY (case_id, seq, webhook)
