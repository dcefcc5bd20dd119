"""Many users at once (users_window_features, BucketState) equal the per-user function, exactly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import features.user_state as user_state
from features.definition import SEEN_HORIZON_SECONDS
from features.user_state import (
    SEEN_KINDS,
    USER_FEATURES,
    BucketState,
    UserState,
    user_window_features,
    users_window_features,
)

pytestmark = pytest.mark.unit

T0 = pd.Timestamp("2024-03-01", tz="UTC")
DAY_MINUTES = 24 * 60


def random_history(seed: int, users: int = 14, days: int = 200) -> pd.DataFrame:
    """Random events of several users: ties, tiny amounts, missing device/merchant_id, a sleeper."""
    rng = np.random.default_rng(seed)
    n = 60 * users
    user = rng.integers(0, users, n)
    minutes = rng.integers(0, days * DAY_MINUTES, n) // 30 * 30  # coarse: many equal times
    # u0 sleeps for longer than the horizon (pruned from the bucket, then back); u1 bursts at one time.
    sleeper = np.flatnonzero(user == 0)
    minutes[sleeper[::2]] = minutes[sleeper[::2]] % (3 * DAY_MINUTES)
    minutes[sleeper[1::2]] = (days - 3) * DAY_MINUTES + minutes[sleeper[1::2]] % (3 * DAY_MINUTES)
    burst = np.flatnonzero(user == 1)[:12]
    minutes[burst] = minutes[burst[0]]
    frame = pd.DataFrame(
        {
            "transaction_id": [f"tx{i:05d}" for i in rng.permutation(n)],
            "user_id": [f"u{u}" for u in user],
            "amount": rng.choice([0.5, 4.99, 5.0, 12.34, 75.1, 999.99, 0.01], n) * rng.choice([1, 1, 3.7], n),
            "currency": "USD",
            "merchant": rng.choice(["Shop", "Cafe", "Fuel", "Air", "Book"], n),
            "merchant_id": rng.choice(["M1", "M2", None, None], n),
            "transaction_time": T0 + pd.to_timedelta(minutes, unit="min"),
            "country": rng.choice(["US", "US", "FR", "DE"], n),
            "transaction_type": "purchase",
            "device_id": rng.choice(["d1", "d2", "d3", None], n),
        }
    )
    return frame.sort_values(["transaction_time", "transaction_id"]).reset_index(drop=True)


def micro_batches(frame: pd.DataFrame, count: int, seed: int) -> list[pd.DataFrame]:
    """Consecutive time slices, shuffled within. Half of the events followed by an event of the
    same user in the same slice within a day arrive one slice late (late events)."""
    rng = np.random.default_rng(seed)
    t = frame["transaction_time"].astype("int64").to_numpy()
    bounds = np.quantile(t, np.linspace(0, 1, count + 1)[1:-1])
    number = np.searchsorted(bounds, t, side="right")
    by_user = frame.groupby("user_id")
    next_t = by_user["transaction_time"].shift(-1).astype("int64").to_numpy()
    next_number = pd.Series(number, index=frame.index).groupby(frame["user_id"]).shift(-1).to_numpy()
    followed = (next_number == number) & (next_t - t < 86_400e9) & (next_t > t)
    number = number + (followed & (rng.random(len(frame)) < 0.5))
    return [
        frame[number == k].sample(frac=1.0, random_state=k) for k in range(count + 1) if (number == k).any()
    ]


def per_user_reference(
    batches: list[pd.DataFrame], evict: bool = True
) -> tuple[pd.DataFrame, dict[str, UserState]]:
    """user_window_features user by user. ``evict``: drop a user's state at the end of a batch
    when its newest event is older than the newest event so far minus the horizon and a day (what
    the per-user TTL did, in event time; the bucket's pruning rule)."""
    states: dict[str, UserState] = {}
    parts, newest = [], None
    for batch in batches:
        for user, events in batch.groupby("user_id", sort=False):
            feats, states[user] = user_window_features(states.get(user), events)
            parts.append(feats)
        newest = max(int(s.time_us.max()) for s in states.values())
        if evict:
            limit = newest - (SEEN_HORIZON_SECONDS + 86_400) * 1_000_000
            states = {u: s for u, s in states.items() if s.time_us.max() >= limit}
    return pd.concat(parts), states


def bucketed(batches: list[pd.DataFrame]) -> tuple[pd.DataFrame, BucketState, set[str]]:
    """Features, final state, and the users pruned from the state at some point."""
    state, parts, pruned = None, [], set()
    for batch in batches:
        before = set(state.users) if state is not None else set()
        feats, state = users_window_features(state, batch)
        pruned |= before - set(state.users)
        state = BucketState.from_bytes(state.to_bytes())  # as through the state store
        parts.append(feats)
    return pd.concat(parts), state, pruned


def late_events(batches: list[pd.DataFrame]) -> int:
    """Events older than their user's newest event of an earlier micro-batch."""
    newest: dict[str, pd.Timestamp] = {}
    late = 0
    for batch in batches:
        for user, events in batch.groupby("user_id"):
            if user in newest:
                late += int((events["transaction_time"] < newest[user]).sum())
            newest[user] = max(
                newest.get(user, events["transaction_time"].max()), events["transaction_time"].max()
            )
    return late


def assert_same_state(bucket: BucketState, reference: dict[str, UserState]) -> None:
    """Every user has exactly its per-user state."""
    kept = bucket.user_states()
    assert set(kept) == set(reference)
    for user, expected in reference.items():
        actual = kept[user]
        for name in ("time_us", "transaction_id", "amount", "country"):
            np.testing.assert_array_equal(getattr(actual, name), getattr(expected, name), err_msg=name)
        for kind in SEEN_KINDS:
            np.testing.assert_array_equal(actual.seen_items[kind], expected.seen_items[kind], err_msg=kind)
            np.testing.assert_array_equal(
                actual.seen_time_us[kind], expected.seen_time_us[kind], err_msg=kind
            )


def assert_pruning_changes_no_feature(actual: pd.DataFrame, batches: list[pd.DataFrame]) -> None:
    """Against the per-user function that never forgets: counts, gaps and flags exactly equal; sums
    and means (a running sum that no longer contains the forgotten amounts) equal within rounding."""
    expected, _ = per_user_reference(batches, evict=False)
    actual = actual.loc[expected.index]
    rounded = [
        c for c in USER_FEATURES if c.startswith(("user_amount_sum", "user_amount_mean", "user_amount_ratio"))
    ]
    exact = [c for c in USER_FEATURES if c not in rounded]
    pd.testing.assert_frame_equal(actual[exact], expected[exact], check_exact=True)
    np.testing.assert_allclose(
        actual[rounded].to_numpy(), expected[rounded].to_numpy(), rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize(("seed", "count"), [(1, 1), (2, 6), (3, 15)])
def test_bucket_equals_user_by_user(seed, count):
    batches = micro_batches(random_history(seed), count, seed)
    expected, reference_states = per_user_reference(batches)
    actual, state, pruned = bucketed(batches)
    pd.testing.assert_frame_equal(actual.loc[expected.index], expected, check_exact=True)
    assert_same_state(state, reference_states)
    assert_pruning_changes_no_feature(actual, batches)
    if count > 1:  # the cases are not trivial
        assert late_events(batches) > 5 and pruned == {"u0"}


@pytest.mark.parametrize("seed", [4, 5])
def test_bucket_equals_user_by_user_at_the_state_bounds(monkeypatch, seed):
    # Small bounds so that the history cut (with late events) and the seen-item cut both happen.
    monkeypatch.setattr(user_state, "MAX_HISTORY_EVENTS", 7)
    monkeypatch.setattr(user_state, "MAX_SEEN_ITEMS", 2)
    batches = micro_batches(random_history(seed, users=6, days=40), 8, seed)
    expected, reference_states = per_user_reference(batches)
    actual, state, _ = bucketed(batches)
    pd.testing.assert_frame_equal(actual.loc[expected.index], expected, check_exact=True)
    assert_same_state(state, reference_states)
    assert late_events(batches) > 5
    assert max(len(s.time_us) for s in state.user_states().values()) == 7
    assert (np.bincount(state.seen_user * 3 + state.seen_kind) <= 2).all()


def test_expired_users_are_pruned_and_come_back_as_new():
    frame = random_history(7, users=3, days=10)
    late_user = frame[frame["user_id"] == "u2"].assign(
        transaction_time=lambda f: (
            f["transaction_time"] + pd.Timedelta(days=SEEN_HORIZON_SECONDS // 86_400 + 30)
        )
    )
    first = frame[frame["user_id"] != "u2"]
    _, state = users_window_features(None, first)
    assert set(state.users) == {"u0", "u1"}
    feats, state = users_window_features(state, late_user.iloc[:1])
    assert set(state.users) == {"u2"}  # u0, u1 idle for more than the horizon plus a day
    fresh, _ = user_window_features(None, late_user.iloc[:1])
    pd.testing.assert_frame_equal(feats, fresh, check_exact=True)


def test_state_round_trips_through_bytes_and_is_compact():
    frame = random_history(8, users=50, days=20)
    _, state = users_window_features(None, frame)
    blob = state.to_bytes()
    again = BucketState.from_bytes(blob)
    assert again.to_bytes() == blob
    for name in BucketState.__dataclass_fields__:
        np.testing.assert_array_equal(getattr(again, name), getattr(state, name), err_msg=name)
    assert len(blob) < 40 * (len(state.time_us) + len(state.seen_item))
    assert BucketState.from_bytes(BucketState().to_bytes()).is_empty()


def test_empty_batch_and_bad_input():
    feats, state = users_window_features(None, random_history(9, users=2).iloc[:0])
    assert list(feats.columns) == USER_FEATURES and len(feats) == 0 and state.is_empty()
    frame = random_history(9, users=2)
    with pytest.raises(ValueError, match="user_id"):
        users_window_features(None, frame.drop(columns="user_id"))
    frame.loc[frame.index[0], "transaction_time"] = None
    with pytest.raises(ValueError, match="transaction_time"):
        users_window_features(None, frame)


def test_segment_sums_equal_separate_calls_bit_for_bit():
    rng = np.random.default_rng(3)
    lengths = rng.integers(1, 40, 30)
    seg = np.repeat(np.arange(len(lengths)), lengths)
    amount = rng.random(len(seg)) * 10.0 ** rng.integers(-2, 7, len(seg))
    together = user_state._segment_prefix(seg, amount)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    for start, length in zip(starts, lengths, strict=True):
        alone = user_state._prefix(amount[start : start + length])
        assert (together[start : start + length] == alone[:-1]).all()


def test_stream_bucket_function_equals_the_per_user_one():
    from features.stream import features_for_bucket_events, features_for_user_events

    batches = micro_batches(random_history(10, users=5, days=30), 3, 10)
    state, user_states = None, {}
    for batch in batches:
        actual, state = features_for_bucket_events(state, batch)
        parts = []
        for user, events in batch.groupby("user_id", sort=False):
            part, user_states[user] = features_for_user_events(user_states.get(user), events)
            parts.append(part)
        expected = pd.concat(parts).loc[batch.index]
        assert list(actual.columns) == list(expected.columns)
        pd.testing.assert_frame_equal(actual, expected, check_exact=True)
