"""devstack.kafka.new_cluster_id: a KRaft cluster id the storage tool's command line accepts.

A random base64url id starts with '-' one time in 64; `kafka-storage format -t -lFnk...` then
fails with "argument --cluster-id/-t: expected one argument" (seen once in a full run)."""

from __future__ import annotations

import uuid

import pytest

from devstack import kafka

pytestmark = pytest.mark.unit


def test_an_id_that_would_start_with_a_dash_is_drawn_again(monkeypatch):
    dashed = uuid.UUID(bytes=b"\xf8" + bytes(15))  # base64url of 0xf8... begins with '-'
    plain = uuid.UUID(bytes=b"\x10" + bytes(15))
    draws = iter([dashed, plain])
    monkeypatch.setattr(kafka.uuid, "uuid4", lambda: next(draws))
    assert kafka.new_cluster_id() == "EAAAAAAAAAAAAAAAAAAAAA"


def test_ids_are_22_url_safe_characters_never_an_option():
    ids = {kafka.new_cluster_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert all(len(i) == 22 and not i.startswith("-") and "=" not in i for i in ids)
