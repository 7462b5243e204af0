-- CEM figures per touchpoint x channel x journey stage x window (issue 5). channel = '' and
-- stage = '' are the "all channels" / "all stages" rows; stage = 'unknown' counts events that
-- carried no stage. Counts are stored next to the ratios so coarser windows are exact sums of
-- finer ones (5m from 1m, 1h from 5m, 1d from 1h). Each recomputation inserts a row with a larger
-- computed_ms; the newest wins (FINAL). The expectation gap of each metric that has a target is
-- stored in the aligned arrays gap_metrics / gap_targets / gaps.
CREATE TABLE IF NOT EXISTS cem_scores
(
    touchpoint String,
    channel String,
    stage String,
    window_seconds UInt32,
    window_start DateTime('UTC'),
    volume UInt64,
    positive_count UInt64,
    neutral_count UInt64,
    negative_count UInt64,
    sentiment_sum Float64,
    mean_sentiment Float64,
    net_sentiment Float64,
    negative_share Float64,
    nps_responses UInt64,
    nps_promoters UInt64,
    nps_detractors UInt64,
    nps Nullable(Float64),
    csat_responses UInt64,
    csat_satisfied UInt64,
    csat Nullable(Float64),
    ces_responses UInt64,
    ces_sum Float64,
    ces Nullable(Float64),
    complaint_count UInt64,
    complaint_rate Float64,
    urgent_count UInt64,
    escalation_threat_count UInt64,
    churn_intent_count UInt64,
    repeat_contact_count UInt64,
    safety_count UInt64,
    gap_metrics Array(String),
    gap_targets Array(Float64),
    gaps Array(Float64),
    computed_ms UInt64
)
ENGINE = ReplacingMergeTree(computed_ms)
PARTITION BY toYYYYMM(window_start)
ORDER BY (touchpoint, window_seconds, channel, stage, window_start);

-- Per topic of each score row: events mentioning the topic, the mean of the topic's own
-- (aspect) sentiment, and the event-level sums of those events, which is what the impact of a
-- topic (score minus score without the topic's events) and data-derived importance need.
CREATE TABLE IF NOT EXISTS topic_scores
(
    touchpoint String,
    channel String,
    stage String,
    topic String,
    window_seconds UInt32,
    window_start DateTime('UTC'),
    mentions UInt64,
    topic_sentiment_sum Float64,
    mean_topic_sentiment Float64,
    sentiment_sum Float64,
    positive_count UInt64,
    negative_count UInt64,
    nps_responses UInt64,
    nps_promoters UInt64,
    nps_detractors UInt64,
    csat_responses UInt64,
    csat_satisfied UInt64,
    complaint_count UInt64,
    computed_ms UInt64
)
ENGINE = ReplacingMergeTree(computed_ms)
PARTITION BY toYYYYMM(window_start)
ORDER BY (touchpoint, window_seconds, channel, stage, topic, window_start);

-- Events that arrived after the scorer's watermark (newest stored event time of their
-- touchpoint minus VOC_ALLOWED_LATENESS_S) are stored but flagged, so no later recomputation
-- lets them change a window that was already final.
ALTER TABLE feedback ADD COLUMN too_late UInt8 DEFAULT 0
