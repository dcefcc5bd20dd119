"""A hostile corpus through the real scoring job (Kafka -> Spark -> PostgreSQL, Redis, Kafka).

Every message is either quarantined with its documented reason (fraudops.contract.messages.REJECTION_CODES)
or stored exactly as sent; duplicates of a transaction_id keep the first one; text that looks
like SQL is stored verbatim and never executed; the tables hold exactly what they should.
The SIGKILL/restart case lives in tests/e2e/test_scoring_job_process.py.
"""

from __future__ import annotations

import json
import uuid

import pytest

from fraudops.contract.messages import MAX_MESSAGE_BYTES
from streaming.sinks import MAX_RAW_VALUE_CHARS
from tests import streaming_support as support
from tests.reliability.reliability_support import drain, encoded, job_options, message

pytestmark = [pytest.mark.reliability, pytest.mark.slow, pytest.mark.timeout(1200)]

TEN_MB = 10 * 1024 * 1024
UNICODE_MERCHANT = "Café Zürich 東京 🚀 Ωμέγα"
SQL_MERCHANT = "Robert'); DROP TABLE transactions; --"
SQL_ID = "TXN_'; DELETE FROM quarantine; --"
SQL_USER = "USER_\"); DROP TABLE fraud_alerts; --"
CSV_MERCHANT = 'Joe\'s "Diner", Main St\nSuite 5\\1'


def nested(depth: int) -> dict:
    value: dict = {"leaf": 1}
    for _ in range(depth):
        value = {"a": value}
    return value


def with_amount_literal(literal: str) -> bytes:
    """A valid message whose amount is a raw JSON token (NaN and Infinity are not json.dumps-able
    with allow_nan=False, and 1e308 must stay a literal)."""
    text = json.dumps(message(amount=0.5))
    return text.replace('"amount": 0.5', f'"amount": {literal}').encode()


def hostile_corpus() -> tuple[list[tuple[bytes | None, bytes | None]], dict[str, dict], list[str]]:
    """(messages in produce order, {transaction_id: expected stored fields}, expected reasons in order)."""
    valid = {
        "plain": message(),
        "unicode": message(merchant=UNICODE_MERCHANT, currency="CHF", country="CH"),
        "sql_merchant": message(merchant=SQL_MERCHANT),
        "sql_ids": message(transaction_id=SQL_ID, user_id=SQL_USER),
        "csv_merchant": message(merchant=CSV_MERCHANT),
        "nested_extra": {**message(), "extra": nested(40), "is_fraud_actual": True},
        "offset_time": message(transaction_time="2025-03-01T12:00:00+05:30"),
        "smallest": message(amount=0.01),
        "largest": message(amount=1_000_000.0),
    }
    duplicate_id = f"TXN_DUP_{uuid.uuid4().hex[:8]}"
    first, second = message(transaction_id=duplicate_id, amount=11.0), message(transaction_id=duplicate_id, amount=22.0)
    rejected = [
        (b"not json at all", "not_json"),
        (b'{"transaction_id": "TXN_TRUNC", "amount": 12', "not_json"),
        (b'{"transaction_id": "' + b"A" * TEN_MB + b'"}', "oversized_message"),
        (b"[" * 5000 + b"]" * 5000, "not_json"),
        (b'{"a":' * 2000 + b"1" + b"}" * 2000, "not_json"),
        (with_amount_literal("NaN"), "non_finite:amount"),
        (with_amount_literal("Infinity"), "non_finite:amount"),
        (with_amount_literal("-Infinity"), "non_finite:amount"),
        (encoded(message(amount=-25.0)), "negative:amount"),
        (b'{"transaction_id": "TXN_DUP", "amount": 10, "amount": 99999}', "duplicate_key:amount"),
        (with_amount_literal("1e308"), "absurd_value:amount"),
        (encoded(message(currency="XYZ")), "unknown_currency:XYZ"),
        (encoded(message(currency="USD'; DROP TABLE x;--")), "unknown_currency:USD'; DROP TABLE"),
        (encoded(message(transaction_time="1970-01-01T00:00:00Z")), "time_out_of_range"),
        (encoded(message(transaction_time="2100-01-01T00:00:00Z")), "time_out_of_range"),
        (None, "empty_message"),
        (b"\xff\xfe garbage", "not_utf8"),
    ]
    messages = [(b"USER_H", encoded(m) if isinstance(m, dict) else m) for m in valid.values()]
    messages += [(b"USER_H", encoded(first)), (b"USER_H", encoded(second))]
    messages += [(b"USER_H", value) for value, _ in rejected]
    expected = {m["transaction_id"]: m for m in valid.values()}
    expected[duplicate_id] = first
    return messages, expected, [reason for _, reason in rejected]


@pytest.fixture(scope="module")
def model_name(settings):
    name = f"fraud-detector-hostile-{uuid.uuid4().hex[:8]}"
    support.train_and_register(settings, name, support.small_history())
    return name


@pytest.fixture
def namespace(pg_conn, settings, unique_name, tmp_path):
    ns = support.make_namespace(pg_conn, settings, unique_name, tmp_path, partitions=1)
    yield ns
    support.drop_namespace(pg_conn, ns)


def fetch(pg_conn, sql: str, params=()) -> list[tuple]:
    with pg_conn.cursor() as cur:
        cur.execute(sql, params)
        rows = cur.fetchall()
    pg_conn.rollback()
    return rows


def schema_tables(pg_conn, schema: str) -> list[str]:
    return sorted(r[0] for r in fetch(pg_conn, "SELECT table_name FROM information_schema.tables "
                                               "WHERE table_schema = %s", (schema,)))


def test_hostile_corpus_is_quarantined_or_stored_verbatim(spark, settings, pg_conn, namespace, model_name):
    messages, expected, reasons = hostile_corpus()
    tables_before = schema_tables(pg_conn, namespace.pg_schema)
    support.produce(settings, namespace.topic, messages)

    assert not drain(spark, settings, job_options(namespace, model_name)), "a query failed on hostile input"

    schema = namespace.pg_schema
    stored = {r[0]: r[1:] for r in fetch(pg_conn, f'SELECT transaction_id, user_id, merchant, amount, features::text '
                                                  f'FROM "{schema}".transactions')}
    assert set(stored) == set(expected)
    for tid, sent in expected.items():
        user_id, merchant, amount, features = stored[tid]
        assert (user_id, merchant, amount) == (sent["user_id"], sent["merchant"], float(sent["amount"])), tid
        assert "extra" not in json.loads(features) and "is_fraud_actual" not in json.loads(features)

    quarantined = fetch(pg_conn, f'SELECT reason, raw_size_bytes, length(raw_value), kafka_offset '
                                 f'FROM "{schema}".quarantine ORDER BY kafka_offset')
    assert [r[0] for r in quarantined] == reasons
    oversized = [r for r in quarantined if r[0] == "oversized_message"]
    assert oversized[0][1] > TEN_MB and oversized[0][2] == MAX_RAW_VALUE_CHARS > 0
    assert all(r[1] <= MAX_MESSAGE_BYTES or r[0] == "oversized_message" for r in quarantined)

    assert schema_tables(pg_conn, schema) == tables_before, "a table appeared or vanished"
    assert support.count(pg_conn, namespace, "fraud_alerts") == support.count(pg_conn, namespace, "transactions",
                                                                            "is_fraud")


def test_a_duplicate_in_a_later_batch_keeps_the_first_row(spark, settings, pg_conn, namespace, model_name):
    tid = f"TXN_DUP_{uuid.uuid4().hex[:8]}"
    support.produce(settings, namespace.topic, [(b"USER_D", encoded(message(transaction_id=tid, user_id="USER_D",
                                                                            amount=33.0)))])
    assert not drain(spark, settings, job_options(namespace, model_name))
    support.produce(settings, namespace.topic, [(b"USER_D", encoded(message(transaction_id=tid, user_id="USER_D",
                                                                            amount=44.0)))])
    assert not drain(spark, settings, job_options(namespace, model_name))

    rows = fetch(pg_conn, f'SELECT amount FROM "{namespace.pg_schema}".transactions WHERE transaction_id = %s', (tid,))
    assert rows == [(33.0,)]
    assert support.count(pg_conn, namespace, "quarantine") == 0


# Messages a later stage could not store (each alone would stop the job: the batch fails and the
# supervisor fails again on the same offsets): NUL and lone surrogates are now rejected by the
# contract (bad_characters:<field>), NUL is replaced in quarantined raw values, and the COPY
# NULL marker is CSV's unquoted empty field, so a merchant called "\N" is stored as it is.
POISON_PILLS = [
    pytest.param(encoded(message(merchant="a\u0000b")), id="nul-character"),
    pytest.param(json.dumps(message(merchant="x")).replace('"x"', '"a\\ud800b"').encode(), id="lone-surrogate"),
    pytest.param(b"\xff\xfe\x00 garbage", id="nul-byte-in-a-rejected-message"),
    pytest.param(encoded(message(merchant="\\N")), id="copy-null-marker"),
]


@pytest.mark.parametrize("poison", POISON_PILLS)
def test_a_message_the_sinks_cannot_store_does_not_stop_the_job(spark, settings, pg_conn, namespace, model_name,
                                                                poison):
    before, after = message(), message()
    support.produce(settings, namespace.topic, [(b"USER_P", encoded(before)), (b"USER_P", poison),
                                                (b"USER_P", encoded(after))])
    failed = drain(spark, settings, job_options(namespace, model_name))

    assert not failed, str(failed[0].exception()).splitlines()[0]
    stored = support.count(pg_conn, namespace, "transactions")
    assert stored + support.count(pg_conn, namespace, "quarantine") == 3
    assert support.count(pg_conn, namespace, "transactions",
                         f"transaction_id IN ('{before['transaction_id']}', '{after['transaction_id']}')") == 2
