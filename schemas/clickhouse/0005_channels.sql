-- Channel facts of surveys, calls, emails and social posts (feedback.enriched.v2's
-- analysis_text, call, call_tone, email and social objects), as columns CEM queries filter
-- and group by. Empty string / NULL when the event is of another channel.
ALTER TABLE feedback ADD COLUMN analysis_text String;
ALTER TABLE feedback ADD COLUMN thread_id String;
ALTER TABLE feedback ADD COLUMN parent_id String;
ALTER TABLE feedback ADD COLUMN call_duration_s Nullable(Float64);
ALTER TABLE feedback ADD COLUMN call_silence_s Nullable(Float64);
ALTER TABLE feedback ADD COLUMN call_hold_s Nullable(Float64);
ALTER TABLE feedback ADD COLUMN call_hold_count Nullable(UInt16);
ALTER TABLE feedback ADD COLUMN call_transfers Nullable(UInt16);
ALTER TABLE feedback ADD COLUMN call_tone String;
ALTER TABLE feedback ADD COLUMN call_tone_change Nullable(Float64);
ALTER TABLE feedback ADD COLUMN social_platform String;
ALTER TABLE feedback ADD COLUMN social_followers Nullable(UInt64);
ALTER TABLE feedback ADD COLUMN social_likes Nullable(UInt64);
ALTER TABLE feedback ADD COLUMN social_reposts Nullable(UInt64);
ALTER TABLE feedback ADD COLUMN hashtags Array(String);
ALTER TABLE feedback ADD COLUMN attachments Array(String)
