"""Decisions before authorization: approve / review / decline in milliseconds.

The synchronous path beside the stream (streaming/): the same message contract, the same
features (features.stream over the online feature store and the merchant snapshot), the same
registry model, the same score. Modules: app (the HTTP API), service (wiring and the background
threads), batcher (requests grouped per batch), engine (a batch's decision), policy
(thresholds and degraded modes), records (idempotency), publisher (Kafka), auth (keys, rates).
Run: ``python -m decisions serve`` (`make decisions`).
"""
