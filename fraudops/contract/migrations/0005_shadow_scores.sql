-- Champion/challenger shadow scoring (issue 15): the challenger's score of every transaction the
-- job scored while a challenger (registry stage Staging or alias `challenger`) existed. Its
-- threshold decision (would_alert) is stored but never raises an alert. Written in the same
-- PostgreSQL transaction as the transactions rows, ON CONFLICT DO NOTHING: replays never duplicate.
CREATE TABLE IF NOT EXISTS shadow_scores (
    transaction_id TEXT NOT NULL,
    model_version  TEXT NOT NULL,
    fraud_score    DOUBLE PRECISION NOT NULL,
    would_alert    BOOLEAN NOT NULL,
    threshold      DOUBLE PRECISION NOT NULL,
    scored_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (transaction_id, model_version)
);
CREATE INDEX IF NOT EXISTS shadow_scores_version_idx ON shadow_scores (model_version, scored_at);
