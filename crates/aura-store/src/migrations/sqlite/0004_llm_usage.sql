-- Migration 4 (SQLite): one row per LLM gateway call (usage records), for usage reports.
-- Applied migrations must never be edited: their checksum is recorded. Append a new file instead.
CREATE TABLE llm_usage (
    id               TEXT    NOT NULL PRIMARY KEY,
    at               INTEGER NOT NULL,
    day              TEXT    NOT NULL,
    agent            TEXT    NOT NULL,
    model            TEXT    NOT NULL,
    provider         TEXT    NOT NULL,
    upstream_model   TEXT    NOT NULL,
    input_tokens     INTEGER NOT NULL,
    output_tokens    INTEGER NOT NULL,
    cached_tokens    INTEGER NOT NULL,
    cost_micros      INTEGER NOT NULL,
    status           TEXT    NOT NULL,
    streamed         INTEGER NOT NULL,
    latency_ms       INTEGER NOT NULL
);
CREATE INDEX llm_usage_day ON llm_usage (day, agent, model);
