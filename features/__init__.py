"""THE feature definition and its computation, shared by training (pipelines/) and scoring (streaming/).

- features.definition: FEATURE_SET_VERSION, NUMERIC_FEATURES, CATEGORICAL_FEATURES, FEATURE_COLUMNS
  and the parameters (windows, horizons, prior). Everything else imports the names from there.
- features.user_state: the vectorised per-user core both paths call (window_features).
- features.merchant: per-merchant transaction and labelled-fraud counts and smoothed rates over
  1/7/30-day windows ending at t - label_delay (point in time for training, a snapshot for the stream).
- features.batch: compute_features(transactions, labels) for training (pandas).
- features.spark_batch: add_features_spark(df) on Spark (same functions, applyInPandas).
- features.online: the online feature store (each user's recent events in Redis) and the
  per-user features of a micro-batch's events as of each event.
- features.stream: stream_features(events, store, merchant_snapshot) for the streaming job.

Importing the package imports nothing else (no Spark, no side effects).
"""
