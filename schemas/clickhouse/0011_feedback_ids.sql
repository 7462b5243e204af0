-- One row per stored feedback event, keyed by event_id alone: the scoring stage's duplicate
-- check. `feedback` is sorted by (touchpoint, occurred_at, event_id), so finding an id there
-- fast needs the touchpoint and time, and a re-send that corrected either was stored twice.
-- Written after the event's `feedback` row, so an id here always has its row. too_late
-- mirrors the row's flag. The INSERT backfills the ids stored before this table existed.
-- (GLOBAL: on a cluster both tables are Distributed; on one server it is a plain NOT IN.)
CREATE TABLE IF NOT EXISTS feedback_ids
(
    event_id String,
    too_late UInt8,
    inserted_ms UInt64
)
ENGINE = ReplacingMergeTree(inserted_ms)
ORDER BY event_id;

INSERT INTO feedback_ids (event_id, too_late, inserted_ms)
SELECT event_id, max(too_late), max(inserted_ms) FROM feedback
WHERE event_id GLOBAL NOT IN (SELECT event_id FROM feedback_ids)
GROUP BY event_id
