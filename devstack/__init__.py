"""Local service management, not part of the installed product (product code never imports it).

- stack.py: `make stack-up/stack-down`, in order: postgres.py, redis.py (alert cache and online
  feature store), kafka.py, mlflow.py, each waited for with its readiness check in fraudops.health;
  paths.py (the state folder), config.py (the env file, defaults from fraudops.settings_table),
  processes.py (spawn, PIDs, /proc, waits, stop).
- jobs.py: background jobs (the streaming job, the producer, the portal); demo.py and
  portal_demo.py: `make demo`; health.py: `make health`; cluster.py: a local Spark + Kafka cluster;
  settings_docs.py: .env.example and the README's Configuration table from the settings table.

The Makefile runs it from the repository root (`python -m devstack.stack up`).
"""
