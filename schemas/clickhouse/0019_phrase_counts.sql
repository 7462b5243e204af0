-- Phrase counts per touchpoint per bucket of event time (VOC_EMERGING_BUCKET_S, an hour by
-- default), so the emerging-topic detector reads its 24-hour baseline from a few rows per
-- phrase instead of ARRAY JOIN over every feedback row of the day (docs/emerging.md).
--
-- Rolled up, not summed: services/alerting/phrase_rollup.py writes a closed bucket's counts
-- from `feedback FINAL` in one INSERT ... SELECT (phrase '' holds the bucket's events), so a
-- redelivered event, which FINAL collapses, is counted once. A SummingMergeTree written per
-- scoring batch would count a replayed batch twice: the batch is retried whole after a
-- failure, and whatever part of it was summed before stays summed. Here re-running a bucket
-- (a late event arrived, or the last run failed half-way) writes every phrase of the bucket
-- again with a newer rolled_ms, and ReplacingMergeTree keeps the newest row per (bucket_s,
-- touchpoint, phrase, bucket): one row each, the bound. Readers use FINAL.
--
-- phrase_rollups records each run per bucket: a row with done = 0 before the counts are
-- written, one with done = 1 and the bucket's feedback rows counted before the run after.
-- Readers take only buckets whose newest record is done (the rest they count from feedback),
-- and the next run redoes every bucket whose newest record is not done or whose feedback rows
-- changed since, so a run a store fault cut short is neither read nor skipped.
--
-- No TTL on 18.16: old buckets go by month, `ALTER TABLE phrase_counts DROP PARTITION 202611`
-- and the same for phrase_rollups (a dropped bucket is counted from feedback again if read).
CREATE TABLE IF NOT EXISTS phrase_counts
(
    bucket_s UInt32,
    bucket DateTime('UTC'),
    touchpoint String,
    phrase String,
    mentions UInt64,
    rolled_ms UInt64
)
ENGINE = ReplacingMergeTree(rolled_ms)
PARTITION BY toYYYYMM(bucket)
ORDER BY (bucket_s, bucket, phrase, touchpoint);

CREATE TABLE IF NOT EXISTS phrase_rollups
(
    bucket_s UInt32,
    bucket DateTime('UTC'),
    rolled_ms UInt64,
    done UInt8,
    events UInt64
)
ENGINE = ReplacingMergeTree(rolled_ms)
PARTITION BY toYYYYMM(bucket)
ORDER BY (bucket_s, bucket)
