-- Decisions before authorization (issue 21): the decision service (decisions/) answers
-- approve / review / decline synchronously and publishes each decided transaction to the
-- decisions topic; the streaming job records it here exactly once (ON CONFLICT DO NOTHING on
-- transaction_id) with the service's score, features and decision, never a second one.
-- Transactions the stream alone scored keep decision NULL (no authorization was asked).
ALTER TABLE transactions ADD COLUMN IF NOT EXISTS decision TEXT
    CHECK (decision IN ('approve', 'review', 'decline'));
ALTER TABLE transactions ADD COLUMN IF NOT EXISTS decline_threshold DOUBLE PRECISION;
ALTER TABLE transactions ADD COLUMN IF NOT EXISTS decided_at TIMESTAMPTZ;
-- true: the service could not score in time (feature store or model unavailable, or its
-- timeout budget spent) and answered with its degraded mode; the stream scored the row later.
ALTER TABLE transactions ADD COLUMN IF NOT EXISTS decision_degraded BOOLEAN;
ALTER TABLE transactions ADD COLUMN IF NOT EXISTS degraded_reason TEXT;
ALTER TABLE fraud_alerts ADD COLUMN IF NOT EXISTS decision TEXT
    CHECK (decision IN ('approve', 'review', 'decline'));
CREATE INDEX IF NOT EXISTS transactions_decided_at_idx ON transactions (decided_at) WHERE decided_at IS NOT NULL;

-- Callers of the decision API: one API key per client, stored as its SHA-256 (the key is 256
-- random bits, shown once by `python -m decisions keys create`), with its own rate limit.
CREATE TABLE IF NOT EXISTS decision_clients (
    client_name      TEXT PRIMARY KEY,
    key_hash         TEXT NOT NULL UNIQUE,
    rate_limit_per_s DOUBLE PRECISION NOT NULL DEFAULT 2000 CHECK (rate_limit_per_s > 0),
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at       TIMESTAMPTZ
);
