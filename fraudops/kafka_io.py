"""Kafka clients on confluent-kafka: producer, consumer, topic admin and a broker check.

Every client is configured from :class:`fraudops.settings.Settings` (``kafka_brokers``) plus
overrides. Overrides use librdkafka names with dots (``**{"linger.ms": 5}``) or the same names
with underscores (``linger_ms=5``); Python callbacks (on_delivery, error_cb, stats_cb, ...) pass
through unchanged. Importing this module opens no connection.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fraudops.settings import Settings

log = logging.getLogger(__name__)

START_STACK_HINT = "start the local stack with `make stack-up`"
_CALLBACK_KEYS = {"error_cb", "throttle_cb", "stats_cb", "oauth_cb", "on_delivery", "oauthbearer_token_refresh_cb", "logger"}

# Throughput-oriented, safe defaults: idempotent, all in-sync replicas, lz4 batches.
PRODUCER_DEFAULTS: dict[str, Any] = {
    "acks": "all",
    "enable.idempotence": True,
    "linger.ms": 20,
    "batch.size": 1_000_000,
    "batch.num.messages": 10_000,
    "compression.type": "lz4",
    "queue.buffering.max.messages": 1_000_000,
    "queue.buffering.max.kbytes": 1_048_576,
    "message.timeout.ms": 30_000,
    "socket.connection.setup.timeout.ms": 5_000,
}
CONSUMER_DEFAULTS: dict[str, Any] = {
    "auto.offset.reset": "earliest",
    "enable.auto.commit": True,
    "socket.connection.setup.timeout.ms": 5_000,
}


def client_config(settings: Settings, defaults: Mapping[str, Any] | None = None, **overrides: Any) -> dict[str, Any]:
    """bootstrap.servers from settings, then ``defaults``, then ``overrides`` (underscores -> dots)."""
    config: dict[str, Any] = {"bootstrap.servers": settings.kafka_brokers, **(defaults or {})}
    for key, value in overrides.items():
        config[key if key in _CALLBACK_KEYS or "." in key else key.replace("_", ".")] = value
    return config


def wait_for_broker(settings: Settings, timeout: float = 5.0) -> None:
    """Return once a broker answers a metadata request; fail fast otherwise.

    Raises:
        ConnectionError: naming Kafka, the address and `make stack-up`, after at most ``timeout``
            seconds (the broker is down or unreachable).
    """
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient

    admin = AdminClient(client_config(settings, {"log_level": 0, "socket.connection.setup.timeout.ms": max(1000, int(timeout * 1000))}))
    try:
        admin.list_topics(timeout=timeout)
    except KafkaException as exc:
        raise ConnectionError(
            f"Kafka broker at {settings.kafka_brokers} is not reachable within {timeout:g}s ({exc.args[0]}); "
            f"{START_STACK_HINT}, or set KAFKA_BROKERS / --broker"
        ) from None


def make_producer(settings: Settings, **overrides: Any):
    """A confluent_kafka.Producer with :data:`PRODUCER_DEFAULTS` and ``overrides``."""
    from confluent_kafka import Producer

    return Producer(client_config(settings, PRODUCER_DEFAULTS, **overrides))


def make_consumer(settings: Settings, group_id: str, **overrides: Any):
    """A confluent_kafka.Consumer in group ``group_id`` (reads from the earliest offset by default)."""
    from confluent_kafka import Consumer

    if not group_id:
        raise ValueError("make_consumer: group_id must be a non-empty string")
    return Consumer(client_config(settings, CONSUMER_DEFAULTS, **{"group.id": group_id, **overrides}))


def make_admin(settings: Settings, **overrides: Any):
    """A confluent_kafka.admin.AdminClient."""
    from confluent_kafka.admin import AdminClient

    return AdminClient(client_config(settings, None, **overrides))


def ensure_topics(settings: Settings, partitions_by_topic: Mapping[str, int], replication_factor: int = 1, timeout: float = 15.0) -> list[str]:
    """Create the topics that do not exist yet (existing ones are left as they are).

    Args:
        settings: Kafka address.
        partitions_by_topic: ``{topic name: number of partitions}``.
        replication_factor: replicas of each new topic (1 on the local stack).
        timeout: seconds to wait for the broker.

    Returns:
        The names of the topics created by this call.

    Raises:
        ConnectionError: the broker is not reachable (see :func:`wait_for_broker`).
        RuntimeError: naming the topic when the broker refuses to create it.
    """
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import NewTopic

    wait_for_broker(settings, timeout=min(timeout, 5.0))
    admin = make_admin(settings)
    existing = set(admin.list_topics(timeout=timeout).topics)
    wanted = [NewTopic(name, int(n), replication_factor) for name, n in partitions_by_topic.items() if name not in existing]
    if not wanted:
        return []
    created = []
    for name, future in admin.create_topics(wanted, operation_timeout=timeout, request_timeout=timeout).items():
        try:
            future.result(timeout=timeout)
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise RuntimeError(f"could not create Kafka topic {name!r}: {exc.args[0]}") from None
    log.info("created Kafka topics %s", created)
    return created


def delete_topics(settings: Settings, names: list[str], timeout: float = 15.0) -> None:
    """Delete topics (used by tests to clean up their own unique topics); missing ones are ignored."""
    from confluent_kafka import KafkaError, KafkaException

    if not names:
        return
    admin = make_admin(settings)  # keep a reference until the futures resolve
    for name, future in admin.delete_topics(list(names), operation_timeout=timeout).items():
        try:
            future.result(timeout=timeout)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                raise RuntimeError(f"could not delete Kafka topic {name!r}: {exc.args[0]}") from None
