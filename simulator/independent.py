"""An independent small generator of card transactions, with a fraud process unlike simulator.generator.

Purpose: the pipeline must never be tested only on the data it was designed around. This
generator shares nothing with simulator/generator.py but the output columns (the message
contract's fields plus ``is_fraud`` and ``label_time``); its world and its fraud process were
designed from patterns described in public literature, NOT from the project's features (do not
tune features to it):

- Compromised (collusive or breached) merchants: for weeks, stolen card numbers are run through
  the merchant and some genuine customers are over-charged there: every card that uses the
  merchant during the period is at risk (the "compromised terminal" pattern of the Fraud
  Detection Handbook of Le Borgne et al., ULB/Worldline; merchant collusion in the Visa/EMVCo
  literature).
- Skimmed terminals: cards used at a skimmed POS/ATM terminal during its compromise are captured
  and cashed out days later elsewhere (the common point of purchase pattern).
- Compromised cards (phishing, data breaches): a burst of spending over the following days,
  online, in resalable categories, often at night, sometimes abroad.
- Card testing (enumeration attacks): a few tiny or zero-amount authorisations at a small online
  merchant within minutes, then a large purchase.
- Genuine zero-amount card verifications (account verification, hotel/subscription checks).
- Messy delivery: naive timestamps (meaning UTC), exact duplicate rows (replays) and a few
  refunds sent as negative amounts (invalid in the contract: a loader must drop them, counted).

Labels: a compromised card's frauds are all labelled when the cardholder disputes (days after
the first fraud); later frauds of the card a day after they happen; genuine transactions are
confirmed 40 days after they happen.

Use (deterministic by seed; ~30 days x 2,000 cards in a few seconds)::

    from simulator.independent import generate_independent
    frame = generate_independent(days=30, cards=2000, seed=0)

Importing this module has no side effects.
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd

from fraudops.contract.messages import TRANSACTION_COLUMNS

INDEPENDENT_COLUMNS: list[str] = [*TRANSACTION_COLUMNS, "is_fraud", "label_time", "fraud_pattern"]
PATTERNS: tuple[str, ...] = ("none", "merchant_compromise", "skimmed_card", "card_burst", "card_testing")
DEFAULT_START = datetime(2024, 4, 1)  # naive on purpose: the output's timestamps are naive (UTC)
GENUINE_CONFIRMATION_DAYS = 40.0

_DAY_S = 86_400.0
_HOME_COUNTRY, _CURRENCY = "FR", "EUR"
_FOREIGN = np.array(["ES", "IT", "DE", "BE", "GB", "US", "NL", "MA", "PT", "CH"], dtype=object)
# category: (typical amount EUR, share of terminals, online share, resalable for fraudsters)
_CATEGORIES: dict[str, tuple[float, float, float, bool]] = {
    "supermarket": (38.0, 0.22, 0.05, False),
    "bakery_cafe": (9.0, 0.12, 0.0, False),
    "restaurant": (32.0, 0.14, 0.05, False),
    "fuel": (52.0, 0.07, 0.0, False),
    "pharmacy": (21.0, 0.05, 0.1, False),
    "fashion": (65.0, 0.08, 0.45, True),
    "electronics": (180.0, 0.04, 0.6, True),
    "travel": (240.0, 0.03, 0.8, True),
    "gift_cards": (60.0, 0.02, 0.8, True),
    "streaming_media": (12.0, 0.04, 1.0, False),
    "hotel": (130.0, 0.04, 0.6, False),
    "atm": (80.0, 0.07, 0.0, False),
    "charity": (15.0, 0.02, 1.0, False),
    "utilities": (70.0, 0.06, 1.0, False),
}
_CAT_NAMES = np.array(list(_CATEGORIES), dtype=object)
_CAT_AMOUNT = np.array([v[0] for v in _CATEGORIES.values()])
_CAT_SHARE = np.array([v[1] for v in _CATEGORIES.values()])
_CAT_ONLINE = np.array([v[2] for v in _CATEGORIES.values()])
_CAT_RESALABLE = np.array([v[3] for v in _CATEGORIES.values()])
_CAT = {name: i for i, name in enumerate(_CATEGORIES)}


def _terminals(rng: np.random.Generator, cards: int, cities: int) -> dict[str, np.ndarray]:
    n = max(40, cards // 2)
    category = rng.choice(len(_CAT_NAMES), size=n, p=_CAT_SHARE / _CAT_SHARE.sum())
    online = rng.random(n) < _CAT_ONLINE[category]
    country = np.where(online & (rng.random(n) < 0.35), rng.choice(_FOREIGN, size=n), _HOME_COUNTRY)
    return {
        "category": category,
        "online": online,
        "city": rng.integers(0, cities, size=n),
        "country": country.astype(object),
        "popularity": rng.pareto(1.6, size=n) + 1.0,
        "id": np.array([f"T{i:05d}" for i in range(n)], dtype=object),
        "name": np.array([f"{_CAT_NAMES[c].replace('_', ' ').title()} #{i}" for i, c in enumerate(category)], dtype=object),
    }


def _genuine(rng, days: int, cards: int, term: dict[str, np.ndarray], cities: int) -> dict[str, np.ndarray]:
    """Everyday spending: each card at ~12 usual terminals of its city plus online merchants."""
    city = rng.integers(0, cities, size=cards)
    rate = rng.gamma(2.0, 1.1, size=cards)  # transactions per day, mean 2.2
    scale = rng.lognormal(0.0, 0.45, size=cards)  # spending level of the cardholder
    peak = np.clip(rng.normal(14.0, 3.0, size=cards), 7.0, 22.0)  # hour of most activity
    counts = rng.poisson(rate * days)
    card = np.repeat(np.arange(cards), counts)
    n = len(card)
    local = [np.flatnonzero((term["city"] == c) & ~term["online"]) for c in range(cities)]
    online = np.flatnonzero(term["online"])
    usual = np.stack([rng.choice(local[c], size=12, p=term["popularity"][local[c]] / term["popularity"][local[c]].sum())
                      for c in city])  # (cards, 12)
    use_online = rng.random(n) < 0.22
    pick_online = rng.choice(online, size=n, p=term["popularity"][online] / term["popularity"][online].sum())
    terminal = np.where(use_online, pick_online, usual[card, rng.integers(0, 12, size=n)])
    hour = np.mod(rng.normal(peak[card], 3.5), 24.0)
    t = rng.integers(0, days, size=n) * _DAY_S + hour * 3_600.0
    cat = term["category"][terminal]
    amount = _CAT_AMOUNT[cat] * scale[card] * rng.lognormal(0.0, 0.65, size=n)
    amount = np.where(rng.random(n) < 0.004, amount * rng.uniform(5, 15, size=n), amount)  # rare big buys
    verification = rng.random(n) < np.where(np.isin(cat, [_CAT["hotel"], _CAT["streaming_media"]]), 0.08, 0.004)
    amount = np.where(verification, 0.0, np.round(amount, 2))
    return {"card": card, "t": t, "terminal": terminal, "amount": amount,
            "pattern": np.zeros(n, dtype=np.int64), "scale": scale, "city": city}


def _windows(rng, days: int, candidates: np.ndarray, per_day: float, duration: tuple[float, float]):
    """Compromise periods: (terminal, start second, end second) of terminals picked among candidates."""
    count = rng.poisson(per_day * days)
    chosen = rng.choice(candidates, size=count, replace=count > len(candidates))
    start = rng.uniform(-0.3 * days, days, size=count) * _DAY_S
    end = start + rng.uniform(*duration, size=count) * _DAY_S
    return chosen, start, end


def _in_window(terminal: np.ndarray, t: np.ndarray, windows) -> np.ndarray:
    """Index of the window each (terminal, t) falls in, -1 if none."""
    hit = np.full(len(t), -1)
    for k, (w_term, w_start, w_end) in enumerate(zip(*windows, strict=True)):
        hit[(terminal == w_term) & (t >= w_start) & (t < w_end) & (hit < 0)] = k
    return hit


def _merchant_compromise(rng, days, cards, term, g, scale_factor):
    """Stolen card numbers run through a compromised online/POS merchant; genuine users over-charged."""
    candidates = np.flatnonzero(~np.isin(term["category"], [_CAT["atm"], _CAT["utilities"]]))
    windows = _windows(rng, days, candidates, 0.3 * scale_factor, (10.0, 35.0))
    overcharged = (_in_window(g["terminal"], g["t"], windows) >= 0) & (rng.random(len(g["t"])) < 0.25)
    g["amount"] = np.where(overcharged, np.round(g["amount"] * rng.uniform(1.5, 4.0, len(g["t"])) + 20, 2), g["amount"])
    g["pattern"] = np.where(overcharged, 1, g["pattern"])
    rows = []
    for w_term, w_start, w_end in zip(*windows, strict=True):
        lo, hi = max(w_start, 0.0), min(w_end, days * _DAY_S)
        if hi <= lo:
            continue
        n = rng.poisson(rng.uniform(1.0, 4.0) * (hi - lo) / _DAY_S)
        t = rng.uniform(lo, hi, size=n)
        cat = term["category"][w_term]
        rows.append((rng.integers(0, cards, size=n), t, np.full(n, w_term),
                     np.round(_CAT_AMOUNT[cat] * rng.lognormal(0.6, 0.6, size=n), 2)))
    return rows


def _card_spree(rng, term, card, t0, g_scale, days, testing):
    """A compromised card's burst over the next days (optionally opened by card testing)."""
    resalable = np.flatnonzero(_CAT_RESALABLE[term["category"]])
    small = np.flatnonzero(np.isin(term["category"], [_CAT["charity"], _CAT["streaming_media"]]) & term["online"])
    card_rows, t_rows, term_rows, amt_rows, pat_rows = [], [], [], [], []
    start = t0 + rng.uniform(0.2, 4.0) * _DAY_S
    if testing and len(small):
        k = rng.integers(1, 5)
        tt = start + np.sort(rng.uniform(0, 1_800, size=k))
        amounts = np.where(rng.random(k) < 0.4, 0.0, np.round(rng.uniform(0.5, 2.5, size=k), 2))
        for rows, values in zip((card_rows, t_rows, term_rows, amt_rows, pat_rows),
                                (np.full(k, card), tt, rng.choice(small, size=k), amounts, np.full(k, 4)), strict=True):
            rows.append(values)
        start = tt[-1] + rng.uniform(600, 4 * 3_600)
    n = 1 + rng.poisson(3.0)
    tt = start + np.sort(rng.exponential(0.8, size=n).cumsum()) * _DAY_S
    abroad = rng.random() < 0.3
    pool = resalable if not abroad else np.flatnonzero(term["country"] != _HOME_COUNTRY)
    terms = rng.choice(pool if len(pool) else resalable, size=n)
    atm = np.flatnonzero(term["category"] == _CAT["atm"])
    terms = np.where(rng.random(n) < 0.2, rng.choice(atm, size=n), terms)
    night = (np.floor(tt / _DAY_S) + 1) * _DAY_S + rng.uniform(0, 5, size=n) * 3_600
    tt = np.where(rng.random(n) < 0.35, night, tt)  # some moved to the small hours of the next day
    amounts = np.round(np.maximum(_CAT_AMOUNT[term["category"][terms]], 60.0 * g_scale) * rng.lognormal(0.5, 0.55, size=n), 2)
    for rows, values in zip((card_rows, t_rows, term_rows, amt_rows, pat_rows),
                            (np.full(n, card), tt, terms, amounts, np.full(n, 2 if testing is None else 3)), strict=True):
        rows.append(values)
    keep = [np.concatenate(x) for x in (card_rows, t_rows, term_rows, amt_rows, pat_rows)]
    inside = keep[1] < days * _DAY_S
    return [k[inside] for k in keep]


def _compromised_cards(rng, days, cards, term, g, scale_factor):
    """Cards captured at skimmed terminals plus cards stolen elsewhere, each with its spree."""
    pos = np.flatnonzero(~term["online"])
    windows = _windows(rng, days, pos, 0.2 * scale_factor, (5.0, 25.0))
    hit = (_in_window(g["terminal"], g["t"], windows) >= 0) & (rng.random(len(g["t"])) < 0.3)
    skimmed = pd.DataFrame({"card": g["card"][hit], "t": g["t"][hit]}).groupby("card")["t"].min()
    stolen_n = rng.poisson(3.0 * scale_factor * days)
    stolen = pd.Series(rng.uniform(-3, days, size=stolen_n) * _DAY_S, index=rng.integers(0, cards, size=stolen_n))
    sprees = []
    for card, t0 in skimmed.items():
        sprees.append(_card_spree(rng, term, card, t0, g["scale"][card], days, testing=None))
    for card, t0 in stolen.items():
        sprees.append(_card_spree(rng, term, card, t0, g["scale"][card], days, testing=bool(rng.random() < 0.45)))
    return sprees


def _label_times(rng, card: np.ndarray, t: np.ndarray, is_fraud: np.ndarray) -> np.ndarray:
    """Dispute time per compromised card; genuine rows confirmed after GENUINE_CONFIRMATION_DAYS."""
    label = t + GENUINE_CONFIRMATION_DAYS * _DAY_S
    fraud = np.flatnonzero(is_fraud)
    if len(fraud):
        first = pd.Series(t[fraud]).groupby(card[fraud]).transform("min").to_numpy()
        cards, inverse = np.unique(card[fraud], return_inverse=True)
        delay = (0.5 + rng.gamma(2.0, 2.0, size=len(cards))) * _DAY_S
        dispute = first + delay[inverse]
        label[fraud] = np.where(t[fraud] <= dispute, dispute, t[fraud] + _DAY_S)
    return label


def generate_independent(
    days: int = 30,
    cards: int = 2000,
    seed: int = 0,
    start: datetime | None = None,
    messy: bool = True,
) -> pd.DataFrame:
    """Generate card transactions with labels from the independent fraud process above.

    Args:
        days: length of the period in days (>= 1).
        cards: number of cards / customers (>= 10); merchants scale with it (cards / 2).
        seed: random seed; the same arguments always give the same frame.
        start: first instant (default 2024-04-01; an aware value is converted to UTC, the
            output is naive either way when ``messy``).
        messy: True (default) delivers data as foreign sources do: naive timestamps (UTC),
            ~0.3 % exact duplicate rows, ~0.1 % refunds with negative amounts (invalid rows a
            loader must drop). False: tz-aware UTC timestamps, unique ids, only valid rows.

    Returns:
        DataFrame with :data:`INDEPENDENT_COLUMNS` (the message fields, ``is_fraud`` int8,
        ``label_time``, and ``fraud_pattern`` for analysis only), sorted by transaction_time.
        The fraud share is about 1 %.
    """
    if not isinstance(days, int | np.integer) or days < 1:
        raise ValueError(f"days must be an integer >= 1, got {days!r}")
    if not isinstance(cards, int | np.integer) or cards < 10:
        raise ValueError(f"cards must be an integer >= 10, got {cards!r}")
    rng = np.random.default_rng([int(seed), 0x1DE9])
    scale_factor = cards / 2000.0
    cities = max(1, cards // 250)
    term = _terminals(rng, cards, cities)
    g = _genuine(rng, int(days), cards, term, cities)
    stolen_numbers = _merchant_compromise(rng, days, cards, term, g, scale_factor)  # updates g too
    parts = [(g["card"], g["t"], g["terminal"], g["amount"], g["pattern"])]
    parts += [(*row, np.ones(len(row[0]), dtype=np.int64)) for row in stolen_numbers]
    parts += [tuple(s) for s in _compromised_cards(rng, days, cards, term, g, scale_factor)]
    card, t, terminal, amount, pattern = (np.concatenate([p[i] for p in parts]) for i in range(5))
    keep = (t >= 0) & (t < days * _DAY_S)
    card, t, terminal, amount, pattern = card[keep], t[keep], terminal[keep], amount[keep], pattern[keep]
    t = np.round(t, 3)
    order = np.lexsort((terminal, card, t))
    card, t, terminal, amount, pattern = card[order], t[order], terminal[order], amount[order], pattern[order]
    return _frame(rng, card, t, terminal, amount, pattern, term, start, messy, seed)


def _frame(rng, card, t, terminal, amount, pattern, term, start, messy, seed) -> pd.DataFrame:
    n = len(t)
    is_fraud = (pattern > 0).astype(np.int8)
    base = pd.Timestamp(start or DEFAULT_START)
    base = base.tz_localize(UTC) if base.tzinfo is None else base.tz_convert(UTC)
    when = base + pd.to_timedelta(t, unit="s")
    label = base + pd.to_timedelta(_label_times(rng, card, t, is_fraud), unit="s")
    cat = term["category"][terminal]
    online = term["online"][terminal]
    abroad_tx = np.where(rng.random(n) < 0.03, rng.choice(_FOREIGN, size=n), _HOME_COUNTRY)
    country = np.where(online, term["country"][terminal], np.where(pattern > 0, term["country"][terminal], abroad_tx))
    channel = np.where(cat == _CAT["atm"], "atm", np.where(online, np.where(rng.random(n) < 0.5, "online", "mobile"), "pos"))
    frame = pd.DataFrame(
        {
            "transaction_id": [f"IND{seed}-{i:08d}" for i in range(n)],
            "user_id": np.char.add("card_", np.char.zfill(card.astype(str), 6)).astype(object),
            "amount": amount.astype("float64"),
            "currency": _CURRENCY,
            "merchant": term["name"][terminal],
            "merchant_id": np.where(rng.random(n) < 0.02, None, term["id"][terminal]),
            "merchant_category": _CAT_NAMES[cat],
            "transaction_time": when,
            "country": country.astype(object),
            "transaction_type": np.where(cat == _CAT["atm"], "withdrawal",
                                         np.where(cat == _CAT["utilities"], "payment", "purchase")).astype(object),
            "channel": np.where(rng.random(n) < 0.05, None, channel).astype(object),
            "device_id": None,
            "is_fraud": is_fraud,
            "label_time": label,
            "fraud_pattern": np.array(PATTERNS, dtype=object)[pattern],
        },
        columns=INDEPENDENT_COLUMNS,
    )
    if not messy:
        return frame
    frame["transaction_time"] = frame["transaction_time"].dt.tz_localize(None)
    frame["label_time"] = frame["label_time"].dt.tz_localize(None)
    refunds = rng.random(n) < 0.001
    frame.loc[refunds, "amount"] = -frame.loc[refunds, "amount"].abs() - 1.0
    duplicated = frame.iloc[np.flatnonzero(rng.random(n) < 0.003)]
    return pd.concat([frame, duplicated]).sort_values("transaction_time", kind="stable").reset_index(drop=True)
