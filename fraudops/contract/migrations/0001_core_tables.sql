-- Core tables of the storage contract (docs: ../shared/docs/architecture.md, "Storage contract").
-- Idempotent: every statement can run again without effect.

CREATE TABLE IF NOT EXISTS transactions (
    transaction_id     TEXT PRIMARY KEY,
    user_id            TEXT NOT NULL,
    amount             DOUBLE PRECISION NOT NULL CHECK (amount > 0),
    currency           TEXT NOT NULL,
    merchant           TEXT NOT NULL,
    merchant_id        TEXT,
    merchant_category  TEXT,
    transaction_time   TIMESTAMPTZ NOT NULL,
    country            TEXT NOT NULL,
    transaction_type   TEXT NOT NULL,
    channel            TEXT,
    device_id          TEXT,
    fraud_score        DOUBLE PRECISION,
    is_fraud           BOOLEAN,
    decision_threshold DOUBLE PRECISION,
    model_version      TEXT,
    feature_set_version TEXT,
    features           JSONB,
    kafka_partition    INTEGER,
    kafka_offset       BIGINT,
    produced_at        TIMESTAMPTZ,
    scored_at          TIMESTAMPTZ,
    ingested_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS transactions_user_time_idx ON transactions (user_id, transaction_time);
CREATE INDEX IF NOT EXISTS transactions_time_idx ON transactions (transaction_time);
CREATE INDEX IF NOT EXISTS transactions_scored_at_idx ON transactions (scored_at);

CREATE TABLE IF NOT EXISTS fraud_alerts (
    alert_id          BIGSERIAL PRIMARY KEY,
    transaction_id    TEXT NOT NULL UNIQUE REFERENCES transactions (transaction_id) ON DELETE CASCADE,
    user_id           TEXT NOT NULL,
    amount            DOUBLE PRECISION NOT NULL,
    currency          TEXT,
    merchant          TEXT,
    country           TEXT,
    transaction_time  TIMESTAMPTZ NOT NULL,
    fraud_score       DOUBLE PRECISION NOT NULL,
    is_fraud          BOOLEAN NOT NULL DEFAULT TRUE,
    model_version     TEXT,
    detection_time    TIMESTAMPTZ NOT NULL DEFAULT now(),
    alert_status      TEXT NOT NULL DEFAULT 'pending'
                      CHECK (alert_status IN ('pending', 'confirmed', 'false_positive')),
    reviewed_by       TEXT,
    reviewed_at       TIMESTAMPTZ,
    notes             TEXT
);
CREATE INDEX IF NOT EXISTS fraud_alerts_detection_idx ON fraud_alerts (detection_time DESC);
CREATE INDEX IF NOT EXISTS fraud_alerts_status_idx ON fraud_alerts (alert_status);

CREATE TABLE IF NOT EXISTS labels (
    transaction_id TEXT NOT NULL,
    is_fraud       BOOLEAN NOT NULL,
    source         TEXT NOT NULL CHECK (source IN ('chargeback', 'analyst', 'simulator', 'import')),
    labeled_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (transaction_id, source)
);
CREATE INDEX IF NOT EXISTS labels_labeled_at_idx ON labels (labeled_at);

CREATE TABLE IF NOT EXISTS quarantine (
    quarantine_id   BIGSERIAL PRIMARY KEY,
    reason          TEXT NOT NULL,
    raw_value       TEXT,
    raw_size_bytes  INTEGER,
    kafka_topic     TEXT,
    kafka_partition INTEGER,
    kafka_offset    BIGINT,
    kafka_timestamp TIMESTAMPTZ,
    quarantined_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (kafka_topic, kafka_partition, kafka_offset)
);

CREATE TABLE IF NOT EXISTS monitoring_metrics (
    metric_id    BIGSERIAL PRIMARY KEY,
    source       TEXT NOT NULL,
    metric_name  TEXT NOT NULL,
    metric_value DOUBLE PRECISION,
    labels       JSONB NOT NULL DEFAULT '{}'::jsonb,
    recorded_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS monitoring_metrics_name_time_idx ON monitoring_metrics (metric_name, recorded_at DESC);

CREATE TABLE IF NOT EXISTS audit_log (
    audit_id    BIGSERIAL PRIMARY KEY,
    event_type  TEXT NOT NULL,
    actor       TEXT NOT NULL,
    details     JSONB NOT NULL DEFAULT '{}'::jsonb,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS audit_log_event_time_idx ON audit_log (event_type, created_at DESC);
