-- Rules and lists beside the model (issue 24): analysts author decision rules (CEL expressions,
-- rules/language.py) and block / allow lists; the decision service applies them (rules/policy.py).
-- Every version of a rule is kept (a new expression, action or priority is a new row); states move
-- draft -> shadow -> active -> retired; publishing, shadowing and retiring, and large list changes,
-- need a second person's approval (rule_change_requests) when four-eyes is on (RULES_FOUR_EYES).
-- Each applied change bumps rules_revisions in the same transaction, which the services poll.

-- the portal's roles gain the rule authors and the approvers (both can also review alerts)
ALTER TABLE portal_users DROP CONSTRAINT IF EXISTS portal_users_role_check;
ALTER TABLE portal_users ADD CONSTRAINT portal_users_role_check
    CHECK (role IN ('analyst', 'viewer', 'rule_author', 'rule_approver'));

CREATE TABLE IF NOT EXISTS rules (
    rule_id     BIGSERIAL PRIMARY KEY,
    name        TEXT NOT NULL CHECK (name ~ '^[a-z][a-z0-9_]{0,63}$'),
    version     INTEGER NOT NULL CHECK (version >= 1),
    expression  TEXT NOT NULL,
    action      TEXT NOT NULL CHECK (action IN ('decline', 'review', 'allow', 'tag')),
    priority    INTEGER NOT NULL DEFAULT 100,
    owner       TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    state       TEXT NOT NULL DEFAULT 'draft' CHECK (state IN ('draft', 'shadow', 'active', 'retired')),
    created_by  TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    state_changed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (name, version)
);
-- at most one live (shadow or active) version per rule name
CREATE UNIQUE INDEX IF NOT EXISTS rules_one_live_version ON rules (name) WHERE state IN ('shadow', 'active');

CREATE TABLE IF NOT EXISTS rule_lists (
    list_name   TEXT PRIMARY KEY CHECK (list_name ~ '^[a-z][a-z0-9_]{0,63}$'),
    kind        TEXT NOT NULL CHECK (kind IN ('block', 'allow')),
    field       TEXT NOT NULL CHECK (field IN ('user_id', 'device_id', 'merchant_id', 'country')),
    description TEXT NOT NULL DEFAULT '',
    created_by  TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- one row per entry ever added: removing sets removed_at (the history stays)
CREATE TABLE IF NOT EXISTS rule_list_entries (
    entry_id    BIGSERIAL PRIMARY KEY,
    list_name   TEXT NOT NULL REFERENCES rule_lists (list_name),
    value       TEXT NOT NULL,
    expires_at  TIMESTAMPTZ,
    reason      TEXT NOT NULL DEFAULT '',
    added_by    TEXT NOT NULL,
    added_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    removed_by  TEXT,
    removed_at  TIMESTAMPTZ
);
CREATE UNIQUE INDEX IF NOT EXISTS rule_list_entries_current ON rule_list_entries (list_name, value)
    WHERE removed_at IS NULL;

-- a change waiting for its second person: publish / shadow / retire a rule version, or a list change
CREATE TABLE IF NOT EXISTS rule_change_requests (
    request_id   BIGSERIAL PRIMARY KEY,
    kind         TEXT NOT NULL CHECK (kind IN ('publish', 'shadow', 'retire', 'list_change')),
    rule_name    TEXT,
    rule_version INTEGER,
    list_name    TEXT REFERENCES rule_lists (list_name),
    payload      JSONB NOT NULL DEFAULT '{}'::jsonb,   -- a list change: {"add": [...], "remove": [...]}
    reason       TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    requested_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    status       TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'applied', 'rejected')),
    decided_by   TEXT,
    decided_at   TIMESTAMPTZ,
    CHECK (decided_by IS NULL OR decided_by <> requested_by)
);
CREATE INDEX IF NOT EXISTS rule_change_requests_pending ON rule_change_requests (requested_at) WHERE status = 'pending';

-- one row per applied change; the services reload when the newest revision moves
CREATE TABLE IF NOT EXISTS rules_revisions (
    revision    BIGSERIAL PRIMARY KEY,
    change      TEXT NOT NULL,
    applied_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- which rules fired on a decided transaction: [{"name", "version", "action", "shadow"}]
ALTER TABLE transactions ADD COLUMN IF NOT EXISTS rules_fired JSONB;
ALTER TABLE fraud_alerts ADD COLUMN IF NOT EXISTS rules_fired JSONB;
