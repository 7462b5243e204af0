-- CEM facts of feedback.raw.v2 / feedback.enriched.v2: journey stage, segment, survey ratings,
-- intent, urgency flags, keywords, and per-topic polarity aligned with `topics` (same index).
-- One ALTER per statement: 18.16 has no ADD COLUMN IF NOT EXISTS, so the runner treats
-- "column already exists" as applied.
ALTER TABLE feedback ADD COLUMN stage String DEFAULT '';
ALTER TABLE feedback ADD COLUMN segment String DEFAULT '';
ALTER TABLE feedback ADD COLUMN nps Nullable(UInt8);
ALTER TABLE feedback ADD COLUMN csat Nullable(UInt8);
ALTER TABLE feedback ADD COLUMN ces Nullable(UInt8);
ALTER TABLE feedback ADD COLUMN intent String DEFAULT '';
ALTER TABLE feedback ADD COLUMN urgent_flags Array(String);
ALTER TABLE feedback ADD COLUMN topic_sentiments Array(Float64);
ALTER TABLE feedback ADD COLUMN keywords Array(String)
