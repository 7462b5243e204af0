-- Effort read from the text (issue 19, docs/nlp.md "Effort", docs/metrics.md): whether an
-- event's text holds an effort cue and its effort score in [0, 1], as columns to count and
-- filter by, and the effort figures of every score row. Rows stored before this migration
-- were analysed without effort and read 0; score rows stored before hold 0 until their window
-- is recomputed.
ALTER TABLE feedback ADD COLUMN effort UInt8;
ALTER TABLE feedback ADD COLUMN effort_score Float64;
ALTER TABLE cem_scores ADD COLUMN effort_count UInt64;
ALTER TABLE cem_scores ADD COLUMN effort_score_sum Float64;
ALTER TABLE cem_scores ADD COLUMN effort_flag_rate Float64;
ALTER TABLE cem_scores ADD COLUMN text_effort Float64
