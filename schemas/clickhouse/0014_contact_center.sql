-- Contact-center figures (issue 19, docs/metrics.md): the agent and queue of each call as
-- columns to group and filter by, and the call counts of every score row. The agent and queue
-- DEFAULTs read them from the stored enriched event for rows stored before this migration
-- (its JSON has no spaces, and only call facts have these keys); score rows stored before
-- hold 0 calls until their window is recomputed.
ALTER TABLE feedback ADD COLUMN call_agent String DEFAULT visitParamExtractString(enriched_json, 'agent_id');
ALTER TABLE feedback ADD COLUMN call_queue String DEFAULT visitParamExtractString(enriched_json, 'queue');
ALTER TABLE cem_scores ADD COLUMN call_count UInt64;
ALTER TABLE cem_scores ADD COLUMN tone_worsened_count UInt64;
ALTER TABLE cem_scores ADD COLUMN tone_improved_count UInt64;
ALTER TABLE cem_scores ADD COLUMN hold_s_sum Float64;
ALTER TABLE cem_scores ADD COLUMN silence_s_sum Float64;
ALTER TABLE cem_scores ADD COLUMN transfer_count UInt64;
ALTER TABLE cem_scores ADD COLUMN tone_worsened_share Nullable(Float64);
ALTER TABLE cem_scores ADD COLUMN tone_improved_share Nullable(Float64);
ALTER TABLE cem_scores ADD COLUMN mean_hold_s Nullable(Float64);
ALTER TABLE cem_scores ADD COLUMN mean_silence_s Nullable(Float64);
ALTER TABLE cem_scores ADD COLUMN transfers_per_call Nullable(Float64)
