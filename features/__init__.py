"""THE feature definition and its computation, shared by training (pipelines/) and scoring (streaming/).

- features.definition: FEATURE_SET_VERSION, NUMERIC_FEATURES, CATEGORICAL_FEATURES, FEATURE_COLUMNS
  and the parameters (windows, horizons, prior). Everything else imports the names from there.
- features.user_state: the per-user pure function both paths call (user_window_features), and
  its many-users form for the stream's bucketed state (users_window_features, BucketState).
- features.merchant: merchant fraud rate from labels known at the time (point in time).
- features.batch: compute_features(transactions, labels) for training (pandas).
- features.spark_batch: add_features_spark(df) on Spark (same functions, applyInPandas).
- features.stream: add_stream_features(stream_df, merchant_risk_df) for the streaming job.

Importing the package imports nothing else (no Spark, no side effects).
"""
