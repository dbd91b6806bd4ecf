-- Migration 1 (SQLite): API tokens and the agent registry.
-- Applied migrations must never be edited: their checksum is recorded. Append a new file instead.

CREATE TABLE agents (
    name          TEXT    NOT NULL PRIMARY KEY,
    registered_at INTEGER NOT NULL
);

CREATE TABLE tokens (
    id          TEXT    NOT NULL PRIMARY KEY,
    name        TEXT    NOT NULL,
    role        TEXT    NOT NULL CHECK (role IN ('admin', 'operator', 'agent', 'viewer')),
    agent       TEXT    NULL REFERENCES agents (name),
    secret_hash BLOB    NOT NULL CHECK (length(secret_hash) = 32),
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER NULL
);

-- Names are unique among active tokens; a revoked token's name may be reused.
CREATE UNIQUE INDEX tokens_active_name ON tokens (name) WHERE revoked_at IS NULL;
CREATE INDEX tokens_name ON tokens (name, created_at);
CREATE INDEX tokens_created ON tokens (created_at, id);
CREATE INDEX tokens_active_agent ON tokens (agent) WHERE revoked_at IS NULL;
