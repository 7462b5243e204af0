-- Candidate phrases of each event (services/core/phrases.py: content words and runs of two or
-- three of them, words joined by a space, at most 64 per event), which the emerging-topic
-- detector counts per window with ARRAY JOIN (docs/emerging.md). Rows stored before this
-- migration have none and count for nothing.
ALTER TABLE feedback ADD COLUMN phrases Array(String)
