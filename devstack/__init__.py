"""Local service management: start/stop PostgreSQL, Redis, Kafka and MLflow on 127.0.0.1
(stack.py), background jobs (jobs.py), the demo (demo.py) and `make health` (health.py).

Not part of the installed product: the Makefile runs it from the repository root
(`python -m devstack.stack up`); product code never imports it.
"""
