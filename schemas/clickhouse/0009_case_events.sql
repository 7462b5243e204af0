-- Every case transition (case.v1), append-only: the row with the highest seq of a case_id is
-- the case's current state. ack_seconds / resolve_seconds are the case's time to acknowledge
-- and to resolve so far (NULL until it happens), so MTTA / MTTR are plain avg()s over the
-- current rows: see docs/alerting.md.
CREATE TABLE IF NOT EXISTS case_events
(
    case_id String,
    seq UInt32,
    event_id String,
    action String,
    status String,
    at DateTime('UTC'),
    actor String,
    comment String,
    severity String,
    team String,
    assignee String,
    escalation_level UInt32,
    touchpoint String,
    rule_id String,
    alert_ids Array(String),
    feedback_event_ids Array(String),
    opened_at DateTime('UTC'),
    acknowledged_at Nullable(DateTime('UTC')),
    resolved_at Nullable(DateTime('UTC')),
    closed_at Nullable(DateTime('UTC')),
    ack_due_at DateTime('UTC'),
    resolve_due_at DateTime('UTC'),
    followup_outcome String,
    followup_rating Nullable(UInt8),
    ack_seconds Nullable(Float64),
    resolve_seconds Nullable(Float64),
    inserted_ms UInt64
)
ENGINE = ReplacingMergeTree(inserted_ms)
PARTITION BY toYYYYMM(opened_at)
ORDER BY (case_id, seq)
