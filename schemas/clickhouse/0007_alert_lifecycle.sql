-- alert.v2: lifecycle, routing and latency facts. A resolution is inserted with the same
-- (dedupe_key, alert_id) and a larger inserted_ms, so `alerts FINAL` holds each alert's current
-- status while the alerts topic keeps every transition.
ALTER TABLE alerts ADD COLUMN rule_type String DEFAULT 'threshold';
ALTER TABLE alerts ADD COLUMN channel String DEFAULT '';
ALTER TABLE alerts ADD COLUMN stage String DEFAULT '';
ALTER TABLE alerts ADD COLUMN topic String DEFAULT '';
ALTER TABLE alerts ADD COLUMN baseline Nullable(Float64);
ALTER TABLE alerts ADD COLUMN resolved_at Nullable(DateTime('UTC'));
ALTER TABLE alerts ADD COLUMN emitted_at DateTime('UTC');
ALTER TABLE alerts ADD COLUMN team String DEFAULT '';
ALTER TABLE alerts ADD COLUMN owner String DEFAULT '';
ALTER TABLE alerts ADD COLUMN event_ids Array(String);
ALTER TABLE alerts ADD COLUMN latest_received_at Nullable(DateTime('UTC'));
ALTER TABLE alerts ADD COLUMN fired_window_end DateTime('UTC');
ALTER TABLE alerts ADD COLUMN latency_ms Nullable(Int64)
