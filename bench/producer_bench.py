"""Benchmark of the Kafka producer into the local broker (`make stack-up` first).

Reads: settings (KAFKA_BROKERS).
Writes: messages to a fresh topic bench-producer-<id> (deleted afterwards),
        bench/results/producer_bench.json (git-ignored) and a summary on stdout.
Run:    .venv/bin/python -m bench.producer_bench --num 200000

Measured (target >= 20,000 messages/s with no rate limit):
* end to end: streaming.producer.produce_transactions at --rate 0 (live simulator -> serialize ->
  produce -> final flush), transactions per second;
* Kafka only: the same producer settings sending pre-serialized messages, messages per second.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "producer_bench.json"
START = datetime(2025, 1, 1, tzinfo=UTC)


def bench_end_to_end(settings, num: int) -> dict:
    from simulator.generator import LiveSimulator
    from streaming.producer import produce_transactions

    simulator = LiveSimulator(seed=42, fraud_ratio=0.05, start=START)
    cpu = time.process_time()
    stats = produce_transactions(settings, simulator, num=num, rate=0, labels_topic=None, progress=False)
    cpu = time.process_time() - cpu
    return {"messages": stats.transactions, "failed": stats.failed, "seconds": round(stats.seconds, 3),
            "messages_per_second": round(stats.transactions / stats.seconds), "cpu_seconds": round(cpu, 3)}


def bench_kafka_only(settings, num: int) -> dict:
    from fraudops.contract.messages import serialize_message
    from fraudops.kafka_io import make_producer
    from simulator.generator import LiveSimulator

    events = itertools.islice((e for e in LiveSimulator(seed=43, start=START) if e.kind == "transaction"), num)
    payloads = [(e.key.encode(), serialize_message(e.message)) for e in events]
    producer = make_producer(settings)
    started = time.perf_counter()
    for i, (key, value) in enumerate(payloads):
        while True:
            try:
                producer.produce(settings.kafka_topic, value=value, key=key)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 1000 == 0:
            producer.poll(0)
    remaining = producer.flush(60)
    seconds = time.perf_counter() - started
    return {"messages": len(payloads), "undelivered": remaining, "seconds": round(seconds, 3),
            "messages_per_second": round(len(payloads) / seconds)}


def main(argv: list[str] | None = None) -> dict:
    from fraudops.kafka_io import delete_topics, ensure_topics
    from fraudops.settings import load_settings

    parser = argparse.ArgumentParser(description="Kafka producer benchmark")
    parser.add_argument("--num", type=int, default=200_000)
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args(argv)
    topic = f"bench-producer-{uuid.uuid4().hex[:8]}"
    settings = dataclasses.replace(load_settings(), kafka_topic=topic)
    ensure_topics(settings, {topic: args.partitions})
    try:
        results = {"end_to_end": bench_end_to_end(settings, args.num), "kafka_only": bench_kafka_only(settings, args.num)}
    finally:
        delete_topics(settings, [topic])
    results.update({"partitions": args.partitions, "load_average_1m": round(os.getloadavg()[0], 2), "cpus": os.cpu_count()})
    e2e, raw = results["end_to_end"], results["kafka_only"]
    print(f"end to end (simulate+serialize+produce): {e2e['messages']:,} in {e2e['seconds']}s = {e2e['messages_per_second']:,} msg/s")
    print(f"kafka only (pre-serialized):             {raw['messages']:,} in {raw['seconds']}s = {raw['messages_per_second']:,} msg/s")
    print(f"load average {results['load_average_1m']} on {results['cpus']} CPUs (the broker shares them)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
