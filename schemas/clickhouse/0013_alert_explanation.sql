-- alert.v3: a figure alert's explanation (events.Explanation as JSON), kept with the alert so
-- the dashboard and the API show why it fired; '' for alerts without one. A resolution
-- repeats its firing's explanation, so `alerts FINAL` keeps it after the alert resolved.
ALTER TABLE alerts ADD COLUMN explanation String DEFAULT ''
