-- repeat_contact_rate (docs/metrics.md): the share of a row's events that carry the
-- repeat_contact urgency flag, stored next to its count like every ratio. The DEFAULT derives
-- it for the rows stored before this migration from the counts they already hold, as the
-- scorer does (0 for an empty row), so old windows answer without being recomputed.
ALTER TABLE cem_scores ADD COLUMN repeat_contact_rate Float64 DEFAULT if(volume = 0, 0, round(repeat_contact_count / volume, 10))
