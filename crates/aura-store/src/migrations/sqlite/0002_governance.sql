-- Migration 2 (SQLite): governance state — budget counters and holds, approvals, halts, agent dependencies.
-- Applied migrations must never be edited: their checksum is recorded. Append a new file instead.

-- One row per budget key (budget, scope, period window). Money is integer micro-dollars.
-- `limit_*` are the limits seen at the last reservation (NULL: no limit on that dimension).
CREATE TABLE budget_counters (
    key             TEXT    NOT NULL PRIMARY KEY,
    spent_cost      INTEGER NOT NULL DEFAULT 0,
    spent_effort    INTEGER NOT NULL DEFAULT 0,
    spent_risk      INTEGER NOT NULL DEFAULT 0,
    reserved_cost   INTEGER NOT NULL DEFAULT 0 CHECK (reserved_cost >= 0),
    reserved_effort INTEGER NOT NULL DEFAULT 0 CHECK (reserved_effort >= 0),
    reserved_risk   INTEGER NOT NULL DEFAULT 0 CHECK (reserved_risk >= 0),
    limit_cost      INTEGER NULL,
    limit_effort    INTEGER NULL,
    limit_risk      INTEGER NULL,
    override_by     TEXT    NULL,
    override_reason TEXT    NULL,
    override_at     INTEGER NULL,
    updated_at      INTEGER NOT NULL
);

-- A reservation: amounts held on every one of its keys until settled, released or expired.
CREATE TABLE budget_holds (
    id          TEXT    NOT NULL PRIMARY KEY,
    state       TEXT    NOT NULL CHECK (state IN ('held', 'settled', 'released', 'expired')),
    cost        INTEGER NOT NULL CHECK (cost >= 0),
    effort      INTEGER NOT NULL CHECK (effort >= 0),
    risk        INTEGER NOT NULL CHECK (risk >= 0),
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    finished_at INTEGER NULL
);
CREATE INDEX budget_holds_state_expiry ON budget_holds (state, expires_at);
CREATE INDEX budget_holds_finished ON budget_holds (finished_at) WHERE state <> 'held';

CREATE TABLE budget_hold_keys (
    hold_id  TEXT    NOT NULL REFERENCES budget_holds (id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    key      TEXT    NOT NULL,
    PRIMARY KEY (hold_id, position)
);

-- Approval requests, bound to the agent and the SHA-256 (hex) of the exact action.
CREATE TABLE approvals (
    id          TEXT    NOT NULL PRIMARY KEY,
    agent       TEXT    NOT NULL,
    action_hash TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    target      TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    status      TEXT    NOT NULL CHECK (status IN ('pending', 'approved', 'denied', 'expired')),
    decided_by  TEXT    NULL,
    decided_at  INTEGER NULL,
    reason      TEXT    NULL,
    consumed_at INTEGER NULL
);
-- At most one pending request per (agent, action).
CREATE UNIQUE INDEX approvals_one_pending ON approvals (agent, action_hash) WHERE status = 'pending';
CREATE INDEX approvals_action ON approvals (agent, action_hash, created_at);
CREATE INDEX approvals_created ON approvals (created_at, id);

-- Halted and paused agents; agent `*` stands for every agent.
CREATE TABLE halts (
    agent        TEXT    NOT NULL PRIMARY KEY,
    state        TEXT    NOT NULL CHECK (state IN ('halted', 'paused')),
    reason       TEXT    NOT NULL,
    by_principal TEXT    NOT NULL,
    at           INTEGER NOT NULL,
    cause        TEXT    NOT NULL CHECK (cause IN ('manual', 'cascade', 'loop', 'budget')),
    cause_from   TEXT    NULL
);

-- Learned "sends work to" edges between agents (declared edges come from configuration).
CREATE TABLE agent_edges (
    from_agent TEXT    NOT NULL,
    to_agent   TEXT    NOT NULL,
    learned_at INTEGER NOT NULL,
    PRIMARY KEY (from_agent, to_agent)
);
