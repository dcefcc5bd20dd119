"""Kafka producer of simulated banking transactions (and their delayed chargeback labels).

Reads: nothing but settings (KAFKA_BROKERS, KAFKA_TOPIC, KAFKA_LABELS_TOPIC; flags win).
Writes: JSON transactions (fraudops.contract.messages.serialize_message, key = user_id) to --topic, and a
label per fraud (fraudops.contract.messages.serialize_label, key = transaction_id, source "chargeback") to
--labels-topic, --label-delay seconds of event time after the transaction. The ground truth never
travels in the transaction itself. Transactions come from simulator.generator.LiveSimulator: the
same generator as the training history.

Commands (the seed's flags still work):
    .venv/bin/python -m streaming.producer --delay 0.5 --fraud-rate 0.05 --num 1000
    .venv/bin/python -m streaming.producer --rate 200 --seed 7            # endless, 200 tx/s
    .venv/bin/python -m streaming.producer --rate 0 --num 200000 --no-labels   # as fast as possible

Pacing: --rate (transactions per second) or --delay (seconds between transactions, the seed's
flag); 0 means unlimited; neither means the seed's default of 1 transaction per second.
Event time: transactions keep the simulator's natural spacing (velocity features stay realistic).
Customers default to enough for the simulated clock to keep pace with --rate (up to 50,000, i.e.
about 1.4 tx/s); with --num the stream starts early enough to end at "now"; an endless run faster
than that drifts ahead of the wall clock (a note says so; the stream quarantines rows > 1 day ahead). Ctrl-C
or SIGTERM stops, flushes and prints the final count. A broker that is down fails within seconds.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import signal
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from fraudops.contract.messages import MAX_FUTURE_SKEW, serialize_label, serialize_message
from fraudops.kafka_io import ensure_topics, make_producer, wait_for_broker
from fraudops.settings import Settings, load_settings
from simulator.generator import MEAN_TX_PER_CUSTOMER_DAY, LiveSimulator, customers_for_rate

DEFAULT_FRAUD_RATE = 0.05  # the seed's default
DEFAULT_TOPIC_PARTITIONS = 4
PROGRESS_EVERY = 500


@dataclass
class ProduceStats:
    """What a run sent: transactions and labels handed to Kafka, deliveries confirmed or failed."""

    transactions: int = 0
    labels: int = 0
    delivered: int = 0
    failed: int = 0
    last_error: str | None = None
    seconds: float = 0.0

    def on_delivery(self, err, _msg) -> None:
        if err is None:
            self.delivered += 1
        else:
            self.failed += 1
            self.last_error = str(err)

    def summary(self, topic: str) -> str:
        rate = self.transactions / self.seconds if self.seconds > 0 else 0.0
        text = (
            f"produced {self.transactions} transactions to {topic} and {self.labels} labels in "
            f"{self.seconds:.1f}s ({rate:,.0f} tx/s); delivered {self.delivered}, failed {self.failed}"
        )
        return text + (f" (last error: {self.last_error})" if self.last_error else "")


class _StopFlag:
    """Set by SIGINT/SIGTERM so the loop ends cleanly and flushes."""

    def __init__(self):
        self.stopped = False

    def __call__(self, signum, _frame) -> None:
        self.stopped = True

    def install(self) -> None:
        signal.signal(signal.SIGINT, self)
        signal.signal(signal.SIGTERM, self)


def messages_per_second(rate: float | None, delay: float | None) -> float:
    """Target rate from --rate / --delay (0 = unlimited; neither = 1/s, the seed's default)."""
    if rate is not None:
        if rate < 0:
            raise ValueError(f"--rate must be >= 0 (0 = unlimited), got {rate}")
        return rate
    if delay is None:
        return 1.0
    if delay < 0:
        raise ValueError(f"--delay must be >= 0 (0 = unlimited), got {delay}")
    return 0.0 if delay == 0 else 1.0 / delay


def natural_rate(customers: int) -> float:
    """Transactions per second that ``customers`` make in simulated time."""
    return customers * MEAN_TX_PER_CUSTOMER_DAY / 86_400


def clock_speedup(rate: float, customers: int) -> float:
    """How much faster than the wall clock the simulated clock runs at ``rate`` (inf if unlimited)."""
    return math.inf if rate <= 0 else rate / natural_rate(customers)


def default_start(num: int | None, customers: int) -> datetime:
    """Event time of the first transaction: now for an endless run; for ``num`` transactions, early
    enough that the last one is not later than now (so none is "in the future" for the stream)."""
    now = datetime.now(UTC)
    if not num:
        return now
    return now - timedelta(seconds=num / natural_rate(customers))


def _produce(producer, topic: str, key: str, value: bytes, callback) -> None:
    while True:
        try:
            producer.produce(topic, value=value, key=key, on_delivery=callback)
            return
        except BufferError:  # local queue full: let librdkafka send, then retry
            producer.poll(0.05)


def _pace(started: float, sent: int, rate: float) -> None:
    if rate > 0:
        ahead = started + sent / rate - time.monotonic()
        if ahead > 0.001:
            time.sleep(ahead)


def produce_transactions(
    settings: Settings,
    simulator: LiveSimulator,
    num: int | None = None,
    rate: float = 1.0,
    labels_topic: str | None = None,
    progress: bool = True,
    stop: _StopFlag | None = None,
) -> ProduceStats:
    """Send ``num`` transactions (None = until stopped) from ``simulator`` to settings.kafka_topic.

    Args:
        settings: broker and topic (``kafka_brokers``, ``kafka_topic``).
        simulator: the live stream (transactions and label events, in event-time order).
        num: number of transactions; None runs until ``stop`` is set.
        rate: transactions per second; 0 = unlimited.
        labels_topic: where label events go; None drops them.
        progress: show a tqdm progress bar with the rate (on stderr).
        stop: flag checked between messages (set by SIGINT/SIGTERM in the CLI).

    Returns:
        Counts after the final flush.

    Raises:
        ConnectionError: the broker is not reachable (within a few seconds).
    """
    from tqdm import tqdm

    wait_for_broker(settings, timeout=5.0)
    producer = make_producer(settings)
    stats, stop = ProduceStats(), stop or _StopFlag()
    bar = tqdm(total=num, unit="tx", disable=not progress, mininterval=0.5, smoothing=0.1, file=sys.stderr)
    started, shown = time.monotonic(), 0
    try:
        for event in simulator:
            if stop.stopped or (num is not None and stats.transactions >= num):
                break
            if event.kind == "label":
                if labels_topic:
                    _produce(producer, labels_topic, event.key, serialize_label(event.message), stats.on_delivery)
                    stats.labels += 1
                continue
            _produce(producer, settings.kafka_topic, event.key, serialize_message(event.message), stats.on_delivery)
            stats.transactions += 1
            if stats.transactions % PROGRESS_EVERY == 0 or rate and rate < 50:
                producer.poll(0)
                bar.update(stats.transactions - shown)
                shown = stats.transactions
            _pace(started, stats.transactions, rate)
    finally:
        producer.flush(30)
        stats.seconds = time.monotonic() - started
        bar.update(stats.transactions - shown)
        bar.close()
    return stats


def build_parser(settings: Settings | None = None) -> argparse.ArgumentParser:
    """The producer's command line; broker and topics default to the settings."""
    from fraudops.cli import HelpFormatter

    settings = settings or load_settings()
    p = argparse.ArgumentParser(prog="python -m streaming.producer", description="Kafka producer of simulated transactions",
                                formatter_class=HelpFormatter)
    p.add_argument("--broker", default=settings.kafka_brokers,
                   help="Kafka bootstrap servers (default: KAFKA_BROKERS, here %(default)s)")
    p.add_argument("--topic", default=settings.kafka_topic, help="transactions topic (default: KAFKA_TOPIC, here %(default)s)")
    p.add_argument("--num", type=int, default=None, help="number of transactions (default: endless)")
    p.add_argument("--delay", type=float, default=None,
                   help="seconds between transactions (seed flag; 0 = unlimited; default: 1 s unless --rate)")
    p.add_argument("--rate", type=float, default=None,
                   help="transactions per second (wins over --delay; 0 = unlimited; default: --delay's)")
    p.add_argument("--fraud-rate", type=float, default=DEFAULT_FRAUD_RATE, help="share of fraudulent transactions, < 0.5")
    p.add_argument("--seed", type=int, default=42, help="simulator seed (same seed and --start: same stream)")
    p.add_argument("--customers", type=int, default=None, help="customers (default: enough for the clock to keep pace with --rate)")
    p.add_argument("--start", default=None, help="event time of the first transaction, ISO-8601 (default: now)")
    p.add_argument("--labels-topic", default=settings.kafka_labels_topic,
                   help="labels topic (default: KAFKA_LABELS_TOPIC, here %(default)s)")
    p.add_argument("--label-delay", type=float, default=60.0, help="seconds of event time between a fraud and its chargeback label")
    p.add_argument("--genuine-labels", action="store_true", help="also label genuine transactions (source 'simulator')")
    p.add_argument("--no-labels", action="store_true", help="do not send labels")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def parse_args(argv: list[str] | None = None, settings: Settings | None = None) -> argparse.Namespace:
    """CLI flags; broker and topics default to the settings (environment / stack env file)."""
    p = build_parser(settings)
    args = p.parse_args(argv)
    if args.num is not None and args.num < 0:
        p.error(f"--num must be >= 0, got {args.num}")
    if not 0.0 <= args.fraud_rate < 0.5:
        p.error(f"--fraud-rate must be in [0, 0.5), got {args.fraud_rate}")
    if args.label_delay < 0:
        p.error(f"--label-delay must be >= 0, got {args.label_delay}")
    try:
        args.messages_per_second = messages_per_second(args.rate, args.delay)
        args.start_time = datetime.fromisoformat(args.start) if args.start else None
    except ValueError as exc:
        p.error(str(exc))
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the producer CLI; returns the process exit code."""
    base = load_settings()
    args = parse_args(argv, base)
    settings = dataclasses.replace(base, kafka_brokers=args.broker, kafka_topic=args.topic)
    labels_topic = None if args.no_labels else args.labels_topic
    customers = args.customers or customers_for_rate(args.messages_per_second)
    stop = _StopFlag()
    stop.install()
    try:
        wait_for_broker(settings, timeout=5.0)
        ensure_topics(settings, {t: DEFAULT_TOPIC_PARTITIONS for t in (args.topic, labels_topic) if t})
        simulator = LiveSimulator(
            seed=args.seed, fraud_ratio=args.fraud_rate, customers=customers,
            start=args.start_time or default_start(args.num, customers),
            label_delay=timedelta(seconds=args.label_delay), genuine_labels=args.genuine_labels,
        )
        rate_text = "unlimited" if args.messages_per_second == 0 else f"{args.messages_per_second:g} tx/s"
        print(f"producing to {args.topic} at {args.broker} ({rate_text}, fraud rate {args.fraud_rate:g}, "
              f"{customers} customers, start {simulator.start:%Y-%m-%dT%H:%M:%SZ})", file=sys.stderr)
        speedup = clock_speedup(args.messages_per_second, customers)
        if args.num is None and speedup > 1.5:
            print(f"note: at this rate the simulated clock runs {speedup:.0f}x faster than the wall clock; the "
                  f"stream quarantines transactions more than {MAX_FUTURE_SKEW.total_seconds() / 3600:g} h ahead (lower --rate, or set --start)",
                  file=sys.stderr)
        stats = produce_transactions(
            settings, simulator, num=args.num, rate=args.messages_per_second, labels_topic=labels_topic,
            progress=not args.no_progress, stop=stop,
        )
    except ConnectionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(stats.summary(args.topic), flush=True)
    return 0 if stats.failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
