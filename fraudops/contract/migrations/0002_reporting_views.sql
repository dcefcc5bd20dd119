-- Reporting views; CREATE OR REPLACE keeps them idempotent.

CREATE OR REPLACE VIEW fraud_summary AS
SELECT
    date_trunc('day', t.transaction_time)::date          AS day,
    count(*)                                             AS total_transactions,
    count(*) FILTER (WHERE t.is_fraud)                   AS flagged_transactions,
    round(100.0 * count(*) FILTER (WHERE t.is_fraud) / NULLIF(count(*), 0), 3) AS flagged_rate_pct,
    round(sum(t.amount)::numeric, 2)                     AS total_amount,
    round(coalesce(sum(t.amount) FILTER (WHERE t.is_fraud), 0)::numeric, 2) AS flagged_amount,
    round(avg(t.fraud_score)::numeric, 4)                AS avg_fraud_score,
    count(l.transaction_id) FILTER (WHERE l.is_fraud)    AS confirmed_frauds
FROM transactions t
LEFT JOIN (SELECT DISTINCT ON (transaction_id) transaction_id, is_fraud
           FROM labels ORDER BY transaction_id, labeled_at DESC) l
       ON l.transaction_id = t.transaction_id
GROUP BY 1
ORDER BY 1 DESC;

CREATE OR REPLACE VIEW daily_transaction_stats AS
SELECT
    date_trunc('day', transaction_time)::date AS day,
    transaction_type,
    currency,
    count(*)                                  AS transaction_count,
    count(DISTINCT user_id)                   AS unique_users,
    round(sum(amount)::numeric, 2)            AS total_amount,
    round(avg(amount)::numeric, 2)            AS avg_amount,
    count(*) FILTER (WHERE is_fraud)          AS alert_count,
    round(avg(fraud_score)::numeric, 4)       AS avg_fraud_score,
    max(fraud_score)                          AS max_fraud_score
FROM transactions
GROUP BY 1, 2, 3
ORDER BY 1 DESC, 2, 3;
