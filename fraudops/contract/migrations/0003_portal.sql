-- Analyst portal (portal/, issue 14): users, sessions, login attempts, alert reasons and
-- escalation, the live-queue notification, and the indexes of the alert queue and the dashboard.
-- Idempotent: every statement can run again without effect.

-- Users of the portal; created with `python -m portal add-user NAME --role analyst|viewer`.
CREATE TABLE IF NOT EXISTS portal_users (
    name          TEXT PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9_.@-]{1,64}$'),
    role          TEXT NOT NULL CHECK (role IN ('analyst', 'viewer')),
    password_hash TEXT NOT NULL,              -- argon2id, encoded with its parameters and salt
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Server-side sessions: the cookie holds a random token, the table only its SHA-256.
CREATE TABLE IF NOT EXISTS portal_sessions (
    token_sha256 TEXT PRIMARY KEY,
    user_name    TEXT NOT NULL REFERENCES portal_users (name) ON DELETE CASCADE,
    csrf_token   TEXT NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at   TIMESTAMPTZ NOT NULL
);
CREATE INDEX IF NOT EXISTS portal_sessions_expires_idx ON portal_sessions (expires_at);

-- Every login attempt (the rate limit counts the failed ones per user name and per client).
CREATE TABLE IF NOT EXISTS portal_login_attempts (
    attempt_id   BIGSERIAL PRIMARY KEY,
    user_name    TEXT NOT NULL,
    client       TEXT NOT NULL,
    succeeded    BOOLEAN NOT NULL,
    attempted_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS portal_login_attempts_user_idx ON portal_login_attempts (user_name, attempted_at DESC);
CREATE INDEX IF NOT EXISTS portal_login_attempts_client_idx ON portal_login_attempts (client, attempted_at DESC);

-- The top contributing features of an alert (name/value/contribution), filled by the scoring
-- job once the models issue lands; NULL for older alerts ("no reasons recorded").
ALTER TABLE fraud_alerts ADD COLUMN IF NOT EXISTS reasons JSONB;

-- An analyst may escalate an alert (no label: the decision is left to someone else).
ALTER TABLE fraud_alerts DROP CONSTRAINT IF EXISTS fraud_alerts_alert_status_check;
ALTER TABLE fraud_alerts ADD CONSTRAINT fraud_alerts_alert_status_check
    CHECK (alert_status IN ('pending', 'confirmed', 'false_positive', 'escalated'));

-- Alert queue: newest first with keyset paging, optionally by status, country or model version.
CREATE INDEX IF NOT EXISTS fraud_alerts_queue_idx ON fraud_alerts (detection_time DESC, alert_id DESC);
CREATE INDEX IF NOT EXISTS fraud_alerts_status_queue_idx
    ON fraud_alerts (alert_status, detection_time DESC, alert_id DESC);
CREATE INDEX IF NOT EXISTS fraud_alerts_country_queue_idx
    ON fraud_alerts (country, detection_time DESC, alert_id DESC);
CREATE INDEX IF NOT EXISTS fraud_alerts_version_queue_idx
    ON fraud_alerts (model_version, detection_time DESC, alert_id DESC);
-- Alert detail: the review history of one transaction.
CREATE INDEX IF NOT EXISTS audit_log_transaction_idx
    ON audit_log ((details ->> 'transaction_id'), created_at DESC)
    WHERE details ? 'transaction_id';

-- Live queue: one notification per INSERT statement on fraud_alerts, sent at COMMIT, naming the
-- schema and the alert_id range it inserted (the portal reads those rows and pushes them).
CREATE OR REPLACE FUNCTION notify_fraud_alerts_inserted() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    low  BIGINT;
    high BIGINT;
BEGIN
    SELECT min(alert_id), max(alert_id) INTO low, high FROM inserted_alerts;
    IF low IS NOT NULL THEN
        PERFORM pg_notify('fraud_alerts_inserted',
                          json_build_object('schema', TG_TABLE_SCHEMA, 'min', low, 'max', high)::text);
    END IF;
    RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS fraud_alerts_notify_inserted ON fraud_alerts;
CREATE TRIGGER fraud_alerts_notify_inserted
    AFTER INSERT ON fraud_alerts REFERENCING NEW TABLE AS inserted_alerts
    FOR EACH STATEMENT EXECUTE FUNCTION notify_fraud_alerts_inserted();
