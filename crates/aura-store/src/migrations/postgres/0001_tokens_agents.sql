-- Migration 1 (PostgreSQL): API tokens and the agent registry.
-- Applied migrations must never be edited: their checksum is recorded. Append a new file instead.
-- Text keys use the "C" collation so that ORDER BY is bytewise, as in SQLite.

CREATE TABLE agents (
    name          TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    registered_at BIGINT           NOT NULL
);

CREATE TABLE tokens (
    id          TEXT COLLATE "C" NOT NULL,
    name        TEXT COLLATE "C" NOT NULL,
    role        TEXT             NOT NULL CHECK (role IN ('admin', 'operator', 'agent', 'viewer')),
    agent       TEXT COLLATE "C" NULL REFERENCES agents (name),
    secret_hash BYTEA            NOT NULL CHECK (octet_length(secret_hash) = 32),
    created_at  BIGINT           NOT NULL,
    revoked_at  BIGINT           NULL,
    CONSTRAINT tokens_pkey PRIMARY KEY (id)
);

-- Names are unique among active tokens; a revoked token's name may be reused.
CREATE UNIQUE INDEX tokens_active_name ON tokens (name) WHERE revoked_at IS NULL;
CREATE INDEX tokens_name ON tokens (name, created_at);
CREATE INDEX tokens_created ON tokens (created_at, id);
CREATE INDEX tokens_active_agent ON tokens (agent) WHERE revoked_at IS NULL;
