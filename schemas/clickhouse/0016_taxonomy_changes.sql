-- Every change made to the taxonomy through the API (POST /v1/taxonomy/changes): who made it,
-- when, what (a new topic or keywords added to one, from which emerging phrase) and how many
-- stored comments of the preview period its keywords matched (docs/emerging.md).
CREATE TABLE IF NOT EXISTS taxonomy_changes
(
    change_id String,
    at DateTime('UTC'),
    principal String,
    action String,
    topic String,
    name String,
    keywords Array(String),
    phrase String,
    matches UInt64,
    inserted_ms UInt64
)
ENGINE = ReplacingMergeTree(inserted_ms)
ORDER BY (at, change_id)
