-- Migration 4 (PostgreSQL): one row per LLM gateway call (usage records), for usage reports.
-- Applied migrations must never be edited: their checksum is recorded. Append a new file instead.
CREATE TABLE llm_usage (
    id               TEXT    NOT NULL PRIMARY KEY,
    at               BIGINT   NOT NULL,
    day              TEXT    NOT NULL,
    agent            TEXT    NOT NULL,
    model            TEXT    NOT NULL,
    provider         TEXT    NOT NULL,
    upstream_model   TEXT    NOT NULL,
    input_tokens     BIGINT   NOT NULL,
    output_tokens    BIGINT   NOT NULL,
    cached_tokens    BIGINT   NOT NULL,
    cost_micros      BIGINT   NOT NULL,
    status           TEXT    NOT NULL,
    streamed         BIGINT   NOT NULL,
    latency_ms       BIGINT   NOT NULL
);
CREATE INDEX llm_usage_day ON llm_usage (day, agent, model);
