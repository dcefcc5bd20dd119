"""The contracts every part of the platform shares: the Kafka message (messages.py) and the
PostgreSQL tables (tables.py: the column lists each writer fills; migrations/: the DDL)."""
