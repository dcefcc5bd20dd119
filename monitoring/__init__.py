"""Monitoring and the MLOps loop around the scoring job.

* monitoring.drift            Evidently data/score drift of recent scored rows against the model's reference
* monitoring.metrics_collector  operational metrics -> monitoring_metrics + Prometheus (127.0.0.1:9108)
* monitoring.alert_rules      pure alert rules; monitoring.alerts runs them (audit_log, log, webhook)
* monitoring.feedback         analysts list pending alerts and confirm them or mark false positives
* monitoring.storage / queries / performance / windows   the shared pieces of the above

The batch steps with MLflow runs are pipelines.drift and pipelines.retrain.
Importing any of these modules has no side effects.
"""
