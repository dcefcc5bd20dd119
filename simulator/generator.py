"""Generative model of a bank's card transactions: one generator, two modes (history and live).

The world (customers, merchants) is built from ``(seed, customers)``. Each simulated UTC day is
generated, vectorized with numpy, from its own random stream ``(seed, day)``, so a day holds the
same transactions whether it comes from :func:`generate_history` (Parquet for training) or from
:class:`LiveSimulator` (the endless, time-ordered stream of streaming/producer.py).

Customers have a home country and currency, a spending scale, preferred merchant categories,
active hours (some are night owls), a rate of transactions per day, usual merchants, devices that
change now and then, and trips abroad. Merchants have a category, a country and a base risk (how
much fraudsters like them). Genuine customers also buy at night, abroad, large amounts, from
foreign online shops and in risky categories, so no single raw field separates fraud.

Fraud scenarios (column ``fraud_scenario``; "none" for genuine rows):
  card_testing             burst of tiny online amounts from a new device, then one or two large ones
  account_takeover         new device (often a new country), a spree of transfers/electronics/crypto
  compromised_merchant     cards used at a breached merchant are misused online days later
  night_abroad_high_value  the seed's scenario: a cloned card used at night abroad for a large amount
  amount_inflation         the card's usual merchants, but amounts several times the usual

Run nothing here directly: pipelines/generate.py writes history, streaming/producer.py streams.
Importing this module has no side effects.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import NamedTuple

import numpy as np
import pandas as pd

from fraudops.contract.messages import TRANSACTION_COLUMNS

# --- public constants ---------------------------------------------------------------------------
SCENARIOS: tuple[str, ...] = (
    "none",
    "card_testing",
    "account_takeover",
    "compromised_merchant",
    "night_abroad_high_value",
    "amount_inflation",
)
FRAUD_SCENARIOS: tuple[str, ...] = SCENARIOS[1:]
HISTORY_COLUMNS: list[str] = [*TRANSACTION_COLUMNS, "is_fraud", "fraud_scenario", "label_time"]
DEFAULT_FRAUD_RATIO = 0.008
DEFAULT_HISTORY_START = datetime(2025, 1, 1, tzinfo=UTC)
MEAN_TX_PER_CUSTOMER_DAY = 2.5
FRAUD_LABEL_DELAY_MIN_DAYS = 1.0  # chargebacks arrive 1 day + Gamma(2, 3.5) days after the fraud
GENUINE_LABEL_DELAY_DAYS = 30.0  # a genuine transaction counts as confirmed after 30-35 days
CHANNELS: tuple[str, ...] = ("pos", "online", "mobile", "atm")
TRANSACTION_TYPE_ORDER: tuple[str, ...] = ("purchase", "withdrawal", "transfer", "payment")

_DAY_MS = 86_400_000
_HOUR_MS = 3_600_000

# category: base amount (USD), log-sd, popularity, risk, channel probs (pos, online, mobile, atm),
# transaction type probs (purchase, withdrawal, transfer, payment), name stems
_CATEGORY_TABLE: tuple[tuple, ...] = (
    ("grocery", 45, 0.5, 0.20, 0.010, (0.85, 0.10, 0.05, 0), (0.97, 0, 0, 0.03), ("FreshMart", "Daily Foods", "Green Grocer")),
    ("restaurant", 30, 0.6, 0.14, 0.010, (0.80, 0.05, 0.15, 0), (1, 0, 0, 0), ("Bistro", "Noodle Bar", "Burger Place")),
    ("fuel", 55, 0.35, 0.07, 0.015, (1, 0, 0, 0), (1, 0, 0, 0), ("Shell Gas", "FuelStop", "PetroMax")),
    ("pharmacy", 25, 0.6, 0.05, 0.010, (0.9, 0.1, 0, 0), (1, 0, 0, 0), ("HealthPlus", "City Pharmacy")),
    ("clothing", 70, 0.7, 0.06, 0.020, (0.6, 0.4, 0, 0), (1, 0, 0, 0), ("Urban Wear", "Style Co")),
    ("online_retail", 60, 0.9, 0.12, 0.030, (0, 0.7, 0.3, 0), (0.95, 0, 0, 0.05), ("Amazon", "ShopNow", "MegaMarket Online")),
    ("electronics", 250, 0.9, 0.04, 0.060, (0.4, 0.6, 0, 0), (1, 0, 0, 0), ("Best Buy", "Gadget Hub", "Apple Store")),
    ("travel", 400, 0.8, 0.03, 0.030, (0.2, 0.8, 0, 0), (0.9, 0, 0, 0.1), ("FlyAway", "Hotel Stay", "RailPass")),
    ("entertainment", 25, 0.7, 0.06, 0.020, (0.3, 0.5, 0.2, 0), (0.9, 0, 0, 0.1), ("Netflix", "Cinema City", "Steam Games")),
    ("digital_goods", 8, 1.0, 0.06, 0.060, (0, 0.5, 0.5, 0), (1, 0, 0, 0), ("Google Play", "App Store", "PlayStation Store")),
    ("utilities", 90, 0.5, 0.05, 0.005, (0, 0.8, 0.2, 0), (0, 0, 0, 1), ("PowerCo", "WaterWorks", "Telecom")),
    ("jewelry", 400, 0.9, 0.01, 0.050, (0.8, 0.2, 0, 0), (1, 0, 0, 0), ("Gold & Co", "Diamond House")),
    ("gambling", 50, 1.0, 0.015, 0.100, (0, 0.6, 0.4, 0), (1, 0, 0, 0), ("Lucky Bet", "Casino Royal Online")),
    ("crypto", 200, 1.1, 0.01, 0.120, (0, 0.6, 0.4, 0), (0.5, 0, 0.5, 0), ("CoinSwap", "Crypto Exchange")),
    ("money_transfer", 250, 1.0, 0.03, 0.060, (0, 0.5, 0.5, 0), (0, 0, 1, 0), ("QuickSend", "Western Transfer")),
    ("atm_cash", 100, 0.6, 0.05, 0.020, (0, 0, 0, 1), (0, 1, 0, 0), ("ATM Bank", "Cash Point")),
)
CATEGORIES: tuple[str, ...] = tuple(row[0] for row in _CATEGORY_TABLE)

# country, currency, units per USD, home weight, travel weight, fraud-origin weight
_COUNTRY_TABLE: tuple[tuple, ...] = (
    ("US", "USD", 1.0, 0.30, 0.10, 0.10),
    ("GB", "GBP", 0.79, 0.12, 0.08, 0.07),
    ("DE", "EUR", 0.92, 0.10, 0.05, 0.03),
    ("FR", "EUR", 0.92, 0.08, 0.12, 0.03),
    ("ES", "EUR", 0.92, 0.05, 0.12, 0.02),
    ("IT", "EUR", 0.92, 0.05, 0.10, 0.02),
    ("NL", "EUR", 0.92, 0.03, 0.04, 0.03),
    ("IE", "EUR", 0.92, 0.02, 0.02, 0.01),
    ("CA", "CAD", 1.36, 0.05, 0.04, 0.02),
    ("AU", "AUD", 1.52, 0.03, 0.03, 0.02),
    ("JP", "JPY", 150.0, 0.03, 0.04, 0.02),
    ("SG", "SGD", 1.34, 0.01, 0.02, 0.02),
    ("IN", "INR", 83.0, 0.03, 0.02, 0.07),
    ("BR", "BRL", 5.0, 0.02, 0.02, 0.08),
    ("MX", "MXN", 17.0, 0.02, 0.05, 0.06),
    ("PL", "PLN", 4.0, 0.02, 0.02, 0.03),
    ("SE", "SEK", 10.5, 0.01, 0.01, 0.01),
    ("CH", "CHF", 0.88, 0.01, 0.02, 0.01),
    ("AE", "AED", 3.67, 0.01, 0.03, 0.05),
    ("TR", "TRY", 32.0, 0.01, 0.05, 0.08),
    ("ZA", "ZAR", 18.5, 0.01, 0.01, 0.04),
    ("CN", "CNY", 7.2, 0.02, 0.02, 0.10),
    ("RU", "RUB", 90.0, 0.005, 0.005, 0.12),
    ("TH", "THB", 36.0, 0.005, 0.045, 0.04),
)
SIM_COUNTRIES: tuple[str, ...] = tuple(row[0] for row in _COUNTRY_TABLE)

_K = len(CATEGORIES)
_CAT = {name: i for i, name in enumerate(CATEGORIES)}
_SCN = {name: i for i, name in enumerate(SCENARIOS)}
_CH = {name: i for i, name in enumerate(CHANNELS)}
_USUAL_MERCHANTS = 8
_MAX_LOCAL_AMOUNT = 900_000.0  # below fraudops.contract.messages.MAX_AMOUNT

# scenario -> (share of fraud transactions, mean transactions per instance)
_SCENARIO_MIX: dict[str, tuple[float, float]] = {
    "card_testing": (0.20, 7.0),
    "account_takeover": (0.25, 8.0),
    "compromised_merchant": (0.20, 1.7),  # 2 per victim; some fall outside a finite history
    "night_abroad_high_value": (0.15, 1.3),
    "amount_inflation": (0.20, 3.5),
}


# --- deterministic hashing (trips, devices: the same in every mode and chunking) ----------------
_M1, _M2, _GOLD = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB), np.uint64(0x9E3779B97F4A7C15)


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64 finalizer on a uint64 array (wrapping arithmetic)."""
    x = x + _GOLD
    x = (x ^ (x >> np.uint64(30))) * _M1
    x = (x ^ (x >> np.uint64(27))) * _M2
    return x ^ (x >> np.uint64(31))


def _hash(*keys) -> np.ndarray:
    with np.errstate(over="ignore"):
        h = np.zeros(np.broadcast(*[np.asarray(k) for k in keys]).shape, dtype=np.uint64)
        for key in keys:
            h = _mix64(h ^ np.asarray(key).astype(np.int64).astype(np.uint64))
    return h


def _hash_uniform(*keys) -> np.ndarray:
    return (_hash(*keys) >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


def _device_names(keys: np.ndarray) -> np.ndarray:
    unique, inverse = np.unique(keys, return_inverse=True)
    names = np.array([f"DEV_{int(k) & 0xFFFFFFFFFFFF:012x}" for k in unique], dtype=object)
    return names[inverse]


# --- the world ----------------------------------------------------------------------------------
@dataclass
class World:
    """Customers and merchants of one simulated bank (built by :func:`build_world`)."""

    seed: int
    country_code: np.ndarray
    country_currency: np.ndarray
    country_fx: np.ndarray
    travel_cum: np.ndarray
    fraud_country_cum: np.ndarray
    merchant_country: np.ndarray
    merchant_category: np.ndarray
    merchant_name: np.ndarray
    merchant_id: np.ndarray
    merchant_risk: np.ndarray
    pool_key_popular: np.ndarray
    pool_key_risky: np.ndarray
    user_id: np.ndarray
    home: np.ndarray
    spend_scale: np.ndarray
    tx_rate: np.ndarray
    category_cum: np.ndarray
    peak_hour: np.ndarray
    hour_sd: np.ndarray
    uniform_hour_share: np.ndarray
    usual_prob: np.ndarray
    usual_merchants: np.ndarray
    travel_prob: np.ndarray
    device_period: np.ndarray
    device_offset: np.ndarray
    second_device_share: np.ndarray
    cat_amount: np.ndarray = field(default_factory=lambda: np.array([r[1] for r in _CATEGORY_TABLE], float))
    cat_sigma: np.ndarray = field(default_factory=lambda: np.array([r[2] for r in _CATEGORY_TABLE], float))
    cat_channel_cum: np.ndarray = field(default_factory=lambda: _row_cum([r[5] for r in _CATEGORY_TABLE]))
    cat_type_cum: np.ndarray = field(default_factory=lambda: _row_cum([r[6] for r in _CATEGORY_TABLE]))

    @property
    def customers(self) -> int:
        return len(self.user_id)

    @cached_property
    def merchant_category_name(self) -> np.ndarray:
        return np.array(CATEGORIES, dtype=object)[self.merchant_category]

    @cached_property
    def merchant_country_code(self) -> np.ndarray:
        return self.country_code[self.merchant_country]

    @cached_property
    def merchant_currency(self) -> np.ndarray:
        return self.country_currency[self.merchant_country]


def _row_cum(rows) -> np.ndarray:
    probs = np.asarray(rows, dtype=float)
    cum = np.cumsum(probs / probs.sum(axis=1, keepdims=True), axis=1)
    cum[:, -1] = 1.0
    return cum


def _sample_rows(cum: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One categorical draw per row of a cumulative-probability matrix."""
    u = rng.random(len(cum))[:, None]
    return np.minimum((u >= cum).sum(axis=1), cum.shape[1] - 1)


def _build_merchants(rng: np.random.Generator, customers: int) -> dict[str, np.ndarray]:
    n_countries = len(_COUNTRY_TABLE)
    country_w = np.array([0.7 * r[3] + 0.3 * r[4] for r in _COUNTRY_TABLE])
    category_w = np.array([r[3] for r in _CATEGORY_TABLE])
    total = int(np.clip(customers // 2, 1_000, 20_000))
    counts = np.maximum(1, np.round(total * np.outer(country_w / country_w.sum(), category_w / category_w.sum()))).astype(int)
    pool = np.repeat(np.arange(n_countries * _K), counts.ravel())  # sorted by (country, category)
    country, category = pool // _K, pool % _K
    n = len(pool)
    popularity = rng.lognormal(0.0, 1.0, n)
    risk = np.array([r[4] for r in _CATEGORY_TABLE])[category] * rng.lognormal(0.0, 0.7, n)
    fences = rng.random(n) < 0.03  # merchants fraudsters favour (cash-out points)
    risk = np.clip(np.where(fences, risk * 10.0, risk), 1e-4, 0.95)
    stems = [r[7] for r in _CATEGORY_TABLE]
    stem_pick = rng.integers(0, 1_000_000, n)
    names = np.array(
        [f"{stems[c][s % len(stems[c])]} #{i:05d}" for i, (c, s) in enumerate(zip(category, stem_pick, strict=True))],
        dtype=object,
    )
    return {
        "merchant_country": country,
        "merchant_category": category,
        "merchant_name": names,
        "merchant_id": np.array([f"MER_{i:05d}" for i in range(n)], dtype=object),
        "merchant_risk": risk,
        "pool_key_popular": _pool_keys(pool, popularity),
        "pool_key_risky": _pool_keys(pool, risk),
    }


def _pool_keys(pool: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """pool index + within-pool cumulative share: one searchsorted picks a weighted member."""
    starts = np.r_[0, np.flatnonzero(np.diff(pool)) + 1]
    cum = np.cumsum(weight)
    base = np.repeat(cum[starts] - weight[starts], np.diff(np.r_[starts, len(pool)]))
    totals = np.repeat(np.add.reduceat(weight, starts), np.diff(np.r_[starts, len(pool)]))
    share = (cum - base) / totals
    ends = np.r_[starts[1:], len(pool)] - 1
    share[ends] = 1.0
    return pool + share


def _pick_merchants(world: World, rng, country: np.ndarray, category: np.ndarray, risky: bool) -> np.ndarray:
    keys = world.pool_key_risky if risky else world.pool_key_popular
    target = country * _K + category + rng.random(len(country)) * (1.0 - 1e-9)
    return np.minimum(np.searchsorted(keys, target, side="right"), len(keys) - 1)


def _customer_hours(rng, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    night_owl = rng.random(n) < 0.12
    peak = np.where(night_owl, rng.normal(23.0, 1.5, n), rng.normal(13.5, 2.5, n)) % 24.0
    return peak, rng.uniform(2.0, 4.0, n), rng.uniform(0.03, 0.10, n)


def build_world(seed: int = 42, customers: int = 2000) -> World:
    """Build the customers and merchants of the simulated bank (deterministic by seed).

    Args:
        seed: random seed of the world.
        customers: number of customers (user ids USER_0001 ...).
    """
    if customers < 1:
        raise ValueError(f"customers must be >= 1, got {customers}")
    rng = np.random.default_rng([seed, 0xC0FFEE])
    merchants = _build_merchants(rng, customers)
    home_w = np.array([r[3] for r in _COUNTRY_TABLE])
    home = rng.choice(len(home_w), size=customers, p=home_w / home_w.sum())
    category_w = np.array([r[3] for r in _CATEGORY_TABLE])
    category_p = rng.dirichlet(category_w * 8.0, size=customers)
    category_cum = np.cumsum(category_p, axis=1)
    category_cum[:, -1] = 1.0
    usual_cat = (rng.random((customers, _USUAL_MERCHANTS, 1)) >= category_cum[:, None, :]).sum(axis=2)
    usual_cat = np.minimum(usual_cat, _K - 1)
    world = World(
        seed=seed,
        country_code=np.array([r[0] for r in _COUNTRY_TABLE], dtype=object),
        country_currency=np.array([r[1] for r in _COUNTRY_TABLE], dtype=object),
        country_fx=np.array([r[2] for r in _COUNTRY_TABLE]),
        travel_cum=_row_cum([[r[4] for r in _COUNTRY_TABLE]])[0],
        fraud_country_cum=_row_cum([[r[5] for r in _COUNTRY_TABLE]])[0],
        user_id=np.array([f"USER_{i:04d}" for i in range(1, customers + 1)], dtype=object),
        home=home,
        spend_scale=rng.lognormal(0.0, 0.6, customers),
        tx_rate=MEAN_TX_PER_CUSTOMER_DAY * rng.lognormal(-0.18, 0.6, customers),
        category_cum=category_cum,
        usual_prob=rng.uniform(0.35, 0.75, customers),
        usual_merchants=np.zeros((customers, _USUAL_MERCHANTS), dtype=np.int64),
        travel_prob=np.clip(rng.beta(0.6, 12.0, customers), 0.0, 0.6),
        device_period=rng.integers(90, 720, customers),
        device_offset=rng.integers(0, 720, customers),
        second_device_share=np.where(rng.random(customers) < 0.25, rng.uniform(0.1, 0.5, customers), 0.0),
        **merchants,
        **dict(zip(("peak_hour", "hour_sd", "uniform_hour_share"), _customer_hours(rng, customers), strict=True)),
    )
    flat_home = np.repeat(home, _USUAL_MERCHANTS)
    world.usual_merchants = _pick_merchants(world, rng, flat_home, usual_cat.ravel(), risky=False).reshape(
        customers, _USUAL_MERCHANTS
    )
    return world


# --- one simulated day --------------------------------------------------------------------------
@dataclass
class _Block:
    """Transactions as parallel arrays (times in epoch milliseconds, amounts in local currency)."""

    cust: np.ndarray
    t_ms: np.ndarray
    merchant: np.ndarray
    amount: np.ndarray
    channel: np.ndarray
    ttype: np.ndarray
    device: np.ndarray
    scenario: np.ndarray

    def __len__(self) -> int:
        return len(self.t_ms)

    @staticmethod
    def concat(blocks: list[_Block]) -> _Block:
        return _Block(*(np.concatenate([getattr(b, f) for b in blocks]) for f in _BLOCK_FIELDS))

    def take(self, index: np.ndarray) -> _Block:
        return _Block(*(getattr(self, f)[index] for f in _BLOCK_FIELDS))


_BLOCK_FIELDS = ("cust", "t_ms", "merchant", "amount", "channel", "ttype", "device", "scenario")


def _day_rng(seed: int, day: int) -> np.random.Generator:
    return np.random.default_rng([seed & 0xFFFFFFFF, day, 0xDA7])


def _trip_destination(world: World, cust: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Country index where the customer is on that day because of a trip, or -1 at home."""
    week, dow = day // 7, day % 7
    travelling = _hash_uniform(world.seed, cust, week, 1) < world.travel_prob[cust]
    start = (_hash_uniform(world.seed, cust, week, 2) * 7).astype(np.int64)
    length = 2 + (_hash_uniform(world.seed, cust, week, 3) * 6).astype(np.int64)
    away = travelling & (dow >= start) & (dow < start + length)
    dest = np.searchsorted(world.travel_cum, _hash_uniform(world.seed, cust, week, 4), side="right")
    dest = np.minimum(dest, len(world.travel_cum) - 1)
    dest = np.where(dest == world.home[cust], (dest + 1) % len(world.travel_cum), dest)
    return np.where(away, dest, -1)


def _customer_devices(world: World, rng, cust: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Device key of each genuine online/mobile transaction (changes every few months)."""
    epoch = (day + world.device_offset[cust]) // world.device_period[cust]
    second = rng.random(len(cust)) < world.second_device_share[cust]
    keys = _hash(world.seed, cust, epoch * 2 + second, 5)
    borrowed = rng.random(len(cust)) < 0.01
    return np.where(borrowed, _hash(world.seed, cust, rng.integers(0, 2**62, len(cust)), 6), keys)


def _to_local(world: World, merchant: np.ndarray, amount_usd: np.ndarray) -> np.ndarray:
    local = amount_usd * world.country_fx[world.merchant_country[merchant]]
    return np.clip(np.round(local, 2), 0.01, _MAX_LOCAL_AMOUNT)


def _device_column(keys: np.ndarray, channel: np.ndarray) -> np.ndarray:
    """Device names for online/mobile rows, None for card-present (pos/atm) rows."""
    out = np.full(len(keys), None, dtype=object)
    has_device = (channel == _CH["online"]) | (channel == _CH["mobile"])
    if has_device.any():
        out[has_device] = _device_names(keys[has_device])
    return out


def _genuine_day(world: World, rng, day: int) -> _Block:
    counts = rng.poisson(world.tx_rate)
    cust = np.repeat(np.arange(world.customers), counts)
    n = len(cust)
    hour = world.peak_hour[cust] + world.hour_sd[cust] * rng.standard_normal(n)
    hour = np.where(rng.random(n) < world.uniform_hour_share[cust], rng.uniform(0, 24, n), hour) % 24.0
    t_ms = day * _DAY_MS + (hour * _HOUR_MS).astype(np.int64)
    days = np.full(n, day, dtype=np.int64)
    dest = _trip_destination(world, cust, days)
    abroad = dest >= 0
    use_usual = ~abroad & (rng.random(n) < world.usual_prob[cust])
    usual = world.usual_merchants[cust, rng.integers(0, _USUAL_MERCHANTS, n)]
    category = _sample_rows(world.category_cum[cust], rng)
    country = np.where(abroad, dest, world.home[cust])
    cross_border = ~abroad & (rng.random(n) < 0.04)  # foreign online shops and services
    foreign = np.minimum(np.searchsorted(world.travel_cum, rng.random(n), side="right"), len(world.travel_cum) - 1)
    country = np.where(cross_border, foreign, country)
    merchant = np.where(use_usual, usual, _pick_merchants(world, rng, country, category, risky=False))
    category = world.merchant_category[merchant]
    channel = _sample_rows(world.cat_channel_cum[category], rng)
    channel = np.where(cross_border & (channel == _CH["pos"]), _CH["online"], channel)
    amount_usd = world.cat_amount[category] * world.spend_scale[cust] * np.exp(world.cat_sigma[category] * rng.standard_normal(n))
    return _Block(
        cust=cust,
        t_ms=t_ms,
        merchant=merchant,
        amount=_to_local(world, merchant, amount_usd),
        channel=channel.astype(np.int8),
        ttype=_sample_rows(world.cat_type_cum[category], rng).astype(np.int8),
        device=_customer_devices(world, rng, cust, days),
        scenario=np.zeros(n, dtype=np.int8),
    )


# --- fraud scenarios ----------------------------------------------------------------------------
def _categories(rng, n: int, weights: dict[str, float]) -> np.ndarray:
    names = list(weights)
    p = np.array([weights[k] for k in names], dtype=float)
    return np.array([_CAT[k] for k in names])[rng.choice(len(names), size=n, p=p / p.sum())]


def _fraud_country(world: World, rng, home: np.ndarray, p_foreign: float) -> np.ndarray:
    origin = np.minimum(np.searchsorted(world.fraud_country_cum, rng.random(len(home)), side="right"), len(world.country_fx) - 1)
    origin = np.where(origin == home, (origin + 1) % len(world.country_fx), origin)
    return np.where(rng.random(len(home)) < p_foreign, origin, home)


def _new_device_keys(world: World, rng, n: int) -> np.ndarray:
    return _hash(world.seed, rng.integers(0, 2**62, n), 7)


def _fraud_rows(world: World, rng, cust, t_ms, category, country, amount_usd, channel, scenario, device, usd=True) -> _Block:
    merchant = _pick_merchants(world, rng, country, category, risky=True)
    amount = _to_local(world, merchant, amount_usd) if usd else np.round(amount_usd, 2)
    return _Block(
        cust=cust,
        t_ms=t_ms.astype(np.int64),
        merchant=merchant,
        amount=amount,
        channel=np.asarray(channel, dtype=np.int8),
        ttype=_sample_rows(world.cat_type_cum[category], rng).astype(np.int8),
        device=device,
        scenario=np.full(len(cust), _SCN[scenario], dtype=np.int8),
    )


def _usual_usd(world: World, cust: np.ndarray, category: np.ndarray) -> np.ndarray:
    return world.cat_amount[category] * world.spend_scale[cust]


def _bursts(rng, t0: np.ndarray, sizes: np.ndarray, mean_gap_ms: float) -> tuple[np.ndarray, np.ndarray]:
    """Instance index and time of each event of bursts starting at t0 with exponential gaps."""
    inst = np.repeat(np.arange(len(t0)), sizes)
    if len(inst) == 0:
        return inst, np.zeros(0)
    gaps = rng.exponential(mean_gap_ms, len(inst))
    first = np.r_[0, np.cumsum(sizes)[:-1]]
    gaps[first] = 0.0
    cum = np.cumsum(gaps)
    return inst, t0[inst] + cum - cum[first][inst]


def _card_testing(world: World, rng, day: int, n: int) -> _Block:
    victims = rng.integers(0, world.customers, n)
    t0 = day * _DAY_MS + rng.uniform(0, _DAY_MS, n)
    country = _fraud_country(world, rng, world.home[victims], 0.5)
    devices = _new_device_keys(world, rng, n)
    inst, t = _bursts(rng, t0, rng.integers(3, 9, n), 45_000.0)
    tests = _fraud_rows(
        world, rng, victims[inst], t, _categories(rng, len(inst), {"digital_goods": 5, "online_retail": 3, "entertainment": 2}),
        country[inst], rng.uniform(0.5, 3.0, len(inst)), np.full(len(inst), _CH["online"]), "card_testing", devices[inst], usd=False,
    )
    last = np.maximum.reduceat(t, np.r_[0, np.flatnonzero(np.diff(inst)) + 1]) if len(t) else t
    inst2, t2 = _bursts(rng, last + rng.uniform(0.3 * _HOUR_MS, 10 * _HOUR_MS, n), rng.integers(1, 3, n), 20 * 60_000.0)
    cats = _categories(rng, len(inst2), {"electronics": 4, "jewelry": 1, "crypto": 2, "money_transfer": 1.5, "online_retail": 1.5})
    big = _fraud_rows(
        world, rng, victims[inst2], t2, cats, country[inst2], rng.uniform(150, 2500, len(inst2)),
        np.full(len(inst2), _CH["online"]), "card_testing", devices[inst2],
    )
    return _Block.concat([tests, big])


def _account_takeover(world: World, rng, day: int, n: int) -> _Block:
    victims = rng.integers(0, world.customers, n)
    country = _fraud_country(world, rng, world.home[victims], 0.6)
    devices = _new_device_keys(world, rng, n)
    inst, t = _bursts(rng, day * _DAY_MS + rng.uniform(0, _DAY_MS, n), rng.integers(4, 13, n), 15 * 60_000.0)
    cust = victims[inst]
    cats = _categories(
        rng, len(inst), {"electronics": 3, "money_transfer": 2.5, "crypto": 1.5, "digital_goods": 1, "online_retail": 1, "jewelry": 1}
    )
    amount = _usual_usd(world, cust, cats) * rng.uniform(1.5, 6.0, len(inst))
    channel = np.where(rng.random(len(inst)) < 0.5, _CH["online"], _CH["mobile"])
    return _fraud_rows(world, rng, cust, t, cats, country[inst], amount, channel, "account_takeover", devices[inst])


def _breach_victims(rng, genuine: _Block, card_present: np.ndarray, n: int) -> np.ndarray:
    """Customers who paid by card at breached merchants today: merchants are breached (in order
    of a random draw of today's card-present payments) until ``n`` cards are exposed."""
    victims = np.zeros(0, dtype=np.int64)
    for row in rng.choice(card_present, size=min(len(card_present), 4 * n + 8), replace=False):
        at_merchant = card_present[genuine.merchant[card_present] == genuine.merchant[row]]
        victims = np.unique(np.r_[victims, genuine.cust[at_merchant]])
        if len(victims) >= n:
            break
    return rng.permutation(victims)[:n]


def _compromised_merchant(world: World, rng, day: int, n: int, genuine: _Block) -> _Block:
    card_present = np.flatnonzero(genuine.channel == _CH["pos"])
    if n == 0 or len(card_present) == 0:
        return _empty_block()
    victims = _breach_victims(rng, genuine, card_present, n)
    m = len(victims)
    start = day * _DAY_MS + rng.uniform(1 * _DAY_MS, 10 * _DAY_MS, m)
    inst, t = _bursts(rng, start, rng.integers(1, 4, m), 3 * _HOUR_MS)
    cust = victims[inst]
    country = _fraud_country(world, rng, world.home[victims], 0.4)[inst]
    cats = _categories(
        rng, len(inst), {"online_retail": 3, "electronics": 2.5, "digital_goods": 1.5, "travel": 1, "money_transfer": 1, "gambling": 1}
    )
    amount = _usual_usd(world, cust, cats) * rng.uniform(1.0, 3.5, len(inst))
    devices = _new_device_keys(world, rng, m)[inst]
    return _fraud_rows(world, rng, cust, t, cats, country, amount, np.full(len(inst), _CH["online"]), "compromised_merchant", devices)


def _night_abroad_high_value(world: World, rng, day: int, n: int) -> _Block:
    victims = rng.integers(0, world.customers, n)
    country = _fraud_country(world, rng, world.home[victims], 1.0)
    t0 = day * _DAY_MS + rng.uniform(0, 5 * _HOUR_MS, n)
    inst, t = _bursts(rng, t0, np.where(rng.random(n) < 0.7, 1, 2), 30 * 60_000.0)
    cats = _categories(rng, len(inst), {"electronics": 3.5, "jewelry": 2.5, "atm_cash": 2.5, "travel": 1.5})
    channel = np.where(cats == _CAT["atm_cash"], _CH["atm"], _CH["pos"])
    amount = rng.uniform(800, 5000, len(inst))
    return _fraud_rows(
        world, rng, victims[inst], t, cats, country[inst], amount, channel, "night_abroad_high_value", np.zeros(len(inst), np.uint64)
    )


def _amount_inflation(world: World, rng, day: int, n: int) -> _Block:
    victims = rng.integers(0, world.customers, n)
    inst, t = _bursts(rng, day * _DAY_MS + rng.uniform(0, _DAY_MS, n), rng.integers(2, 6, n), 14 * _HOUR_MS)
    cust = victims[inst]
    merchant = world.usual_merchants[cust, rng.integers(0, _USUAL_MERCHANTS, len(inst))]
    category = world.merchant_category[merchant]
    channel = _sample_rows(world.cat_channel_cum[category], rng)
    amount_usd = _usual_usd(world, cust, category) * rng.uniform(3.0, 10.0, len(inst))
    return _Block(
        cust=cust,
        t_ms=t.astype(np.int64),
        merchant=merchant,
        amount=_to_local(world, merchant, amount_usd),
        channel=channel.astype(np.int8),
        ttype=_sample_rows(world.cat_type_cum[category], rng).astype(np.int8),
        device=_customer_devices(world, rng, cust, (t // _DAY_MS).astype(np.int64)),
        scenario=np.full(len(inst), _SCN["amount_inflation"], dtype=np.int8),
    )


def _empty_block() -> _Block:
    z = np.zeros(0, dtype=np.int64)
    return _Block(z, z, z, np.zeros(0), z.astype(np.int8), z.astype(np.int8), z.astype(np.uint64), z.astype(np.int8))


def _fraud_day(world: World, rng, day: int, fraud_ratio: float, genuine: _Block) -> _Block:
    fraud_tx = fraud_ratio / (1.0 - fraud_ratio) * float(world.tx_rate.sum())
    instances = {
        name: int(rng.poisson(fraud_tx * share / mean_len)) for name, (share, mean_len) in _SCENARIO_MIX.items()
    }
    blocks = [
        _card_testing(world, rng, day, instances["card_testing"]),
        _account_takeover(world, rng, day, instances["account_takeover"]),
        _compromised_merchant(world, rng, day, instances["compromised_merchant"], genuine),
        _night_abroad_high_value(world, rng, day, instances["night_abroad_high_value"]),
        _amount_inflation(world, rng, day, instances["amount_inflation"]),
    ]
    return _Block.concat(blocks)


def simulate_day(world: World, day: int, fraud_ratio: float) -> _Block:
    """All transactions generated on ``day`` (days since 1970-01-01 UTC), genuine and fraud.

    Fraud follow-ups (e.g. compromised cards) may fall on later days; callers order by time.
    """
    rng = _day_rng(world.seed, day)
    genuine = _genuine_day(world, rng, day)
    fraud = _fraud_day(world, rng, day, fraud_ratio, genuine) if fraud_ratio > 0 else _empty_block()
    block = _Block.concat([genuine, fraud])
    device_keys = block.device.astype(np.uint64)
    return _Block(
        block.cust, block.t_ms, block.merchant, block.amount, block.channel, block.ttype,
        _device_column(device_keys, block.channel), block.scenario,
    )


# --- history mode -------------------------------------------------------------------------------
def _label_delay_ms(world: World, block: _Block) -> np.ndarray:
    """When each label becomes known, after the transaction (deterministic per transaction)."""
    u1 = _hash_uniform(world.seed, block.cust, block.t_ms, 11)
    u2 = _hash_uniform(world.seed, block.cust, block.t_ms, 12)
    fraud_days = FRAUD_LABEL_DELAY_MIN_DAYS - 3.5 * (np.log1p(-u1) + np.log1p(-u2))  # 1 + Gamma(2, 3.5)
    genuine_days = GENUINE_LABEL_DELAY_DAYS + 5.0 * u1
    return (np.where(block.scenario > 0, fraud_days, genuine_days) * _DAY_MS).astype(np.int64)


def _block_frame(world: World, block: _Block, id_prefix: str) -> pd.DataFrame:
    """The history layout (:data:`HISTORY_COLUMNS`) of a time-ordered block."""
    m = block.merchant
    return pd.DataFrame(
        {
            "transaction_id": [f"{id_prefix}{i:09d}" for i in range(len(block))],
            "user_id": world.user_id[block.cust],
            "amount": block.amount.astype(np.float64),
            "currency": world.merchant_currency[m],
            "merchant": world.merchant_name[m],
            "merchant_id": world.merchant_id[m],
            "merchant_category": world.merchant_category_name[m],
            "transaction_time": pd.to_datetime(block.t_ms, unit="ms", utc=True),
            "country": world.merchant_country_code[m],
            "transaction_type": np.array(TRANSACTION_TYPE_ORDER, dtype=object)[block.ttype],
            "channel": np.array(CHANNELS, dtype=object)[block.channel],
            "device_id": block.device,
            "is_fraud": (block.scenario > 0).astype(np.int8),
            "fraud_scenario": np.array(SCENARIOS, dtype=object)[block.scenario],
            "label_time": pd.to_datetime(block.t_ms + _label_delay_ms(world, block), unit="ms", utc=True),
        },
        columns=HISTORY_COLUMNS,
    )


def _as_utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _check_ratio(fraud_ratio: float) -> None:
    if not (isinstance(fraud_ratio, int | float) and 0.0 <= fraud_ratio < 0.5):
        raise ValueError(f"fraud_ratio must be a number in [0, 0.5), got {fraud_ratio!r}")


def generate_history(
    days: int,
    customers: int,
    fraud_ratio: float = DEFAULT_FRAUD_RATIO,
    seed: int = 42,
    start: datetime | None = None,
) -> pd.DataFrame:
    """Generate ``days`` of transactions of ``customers`` customers, with labels.

    Args:
        days: length of the period, in days (>= 1).
        customers: number of customers (>= 1).
        fraud_ratio: expected share of fraudulent transactions (0 <= r < 0.5).
        seed: random seed; the same arguments always give the same frame.
        start: first instant of the period (default 2025-01-01 UTC; naive means UTC).

    Returns:
        DataFrame with :data:`HISTORY_COLUMNS`, sorted by transaction_time
        (datetime64[ns, UTC]): the message fields plus is_fraud (int8), fraud_scenario ("none"
        for genuine) and label_time (when the chargeback / confirmation becomes known).
    """
    if not isinstance(days, int | np.integer) or days < 1:
        raise ValueError(f"days must be an integer >= 1, got {days!r}")
    if not isinstance(customers, int | np.integer) or customers < 1:
        raise ValueError(f"customers must be an integer >= 1, got {customers!r}")
    _check_ratio(fraud_ratio)
    start_ms = int(_as_utc(start or DEFAULT_HISTORY_START).timestamp() * 1000)
    end_ms = start_ms + int(days) * _DAY_MS
    world = build_world(seed, int(customers))
    block = _Block.concat(
        [simulate_day(world, day, fraud_ratio) for day in range(start_ms // _DAY_MS, (end_ms - 1) // _DAY_MS + 1)]
    )
    inside = np.flatnonzero((block.t_ms >= start_ms) & (block.t_ms < end_ms))
    order = inside[np.argsort(block.t_ms[inside], kind="stable")]
    return _block_frame(world, block.take(order), id_prefix=f"TXN_H{seed}_")


def scenario_summary(history: pd.DataFrame) -> pd.DataFrame:
    """Rows and share of all rows per fraud_scenario (index: scenario name)."""
    counts = history["fraud_scenario"].value_counts().reindex(list(SCENARIOS), fill_value=0)
    return pd.DataFrame({"rows": counts, "rate": counts / max(len(history), 1)})


# --- live mode ----------------------------------------------------------------------------------
class LiveEvent(NamedTuple):
    """One event of the live stream, in event-time order.

    Attributes:
        kind: "transaction" (for the transactions topic) or "label" (for the labels topic).
        key: Kafka key: user_id for a transaction, transaction_id for a label.
        message: the transaction (TRANSACTION_COLUMNS, transaction_time a UTC datetime) or the
            label (transaction_id, is_fraud, source, labeled_at); serialize with
            fraudops.contract.messages.serialize_message / serialize_label.
        event_time: transaction_time or labeled_at.
        is_fraud: hidden ground truth of a transaction (never part of its message).
        fraud_scenario: hidden scenario name of a transaction ("none" for genuine).
    """

    kind: str
    key: str
    message: dict
    event_time: datetime
    is_fraud: int | None = None
    fraud_scenario: str | None = None


def customers_for_rate(rate_per_second: float, minimum: int = 2000, maximum: int = 50_000) -> int:
    """Customers whose natural activity matches ``rate_per_second``, within [minimum, maximum].

    With that many customers the simulated clock keeps pace with the wall clock (up to about
    ``maximum * 2.5 / 86400`` = 1.4 tx/s for the default maximum; faster producers run ahead).
    """
    if rate_per_second <= 0:
        return minimum
    return int(min(maximum, max(minimum, math.ceil(rate_per_second * 86_400 / MEAN_TX_PER_CUSTOMER_DAY))))


class LiveSimulator:
    """Endless, time-ordered stream of transactions and (delayed) labels from the history generator.

    The simulated clock starts at ``start`` (default: now) and advances with the transactions'
    natural spacing; a producer emitting faster than ``customers * 2.5 / 86400`` transactions per
    second runs ahead of the wall clock (see :func:`customers_for_rate`). For each fraud, a label
    event (source "chargeback") follows ``label_delay`` later in event time; with
    ``genuine_labels`` genuine transactions get a label (source "simulator") after ``genuine_label_delay``.

    Example:
        >>> sim = LiveSimulator(seed=7, fraud_ratio=0.05)
        >>> event = next(iter(sim))   # LiveEvent(kind="transaction", key="USER_...", ...)
    """

    def __init__(
        self,
        seed: int = 42,
        fraud_ratio: float = DEFAULT_FRAUD_RATIO,
        customers: int = 2000,
        start: datetime | None = None,
        label_delay: timedelta = timedelta(seconds=60),
        genuine_labels: bool = False,
        genuine_label_delay: timedelta | None = None,
    ):
        _check_ratio(fraud_ratio)
        if label_delay < timedelta(0):
            raise ValueError(f"label_delay must be >= 0, got {label_delay}")
        self.seed = seed
        self.fraud_ratio = fraud_ratio
        self.world = build_world(seed, customers)
        self.start = _as_utc(start or datetime.now(UTC))
        self.label_delay_ms = int(label_delay.total_seconds() * 1000)
        self.genuine_labels = genuine_labels
        self.genuine_label_delay_ms = int((genuine_label_delay or 3 * label_delay).total_seconds() * 1000)
        self.id_prefix = f"TXN_L{seed}_{int(self.start.timestamp())}_"

    def __iter__(self) -> Iterator[LiveEvent]:
        return self.events()

    def day_blocks(self) -> Iterator[_Block]:
        """Time-ordered blocks, one per simulated day, from ``start`` on (the history generator's days)."""
        start_ms = int(self.start.timestamp() * 1000)
        day = start_ms // _DAY_MS
        pending = _empty_block_with_devices()
        while True:
            block = _Block.concat([pending, simulate_day(self.world, day, self.fraud_ratio)])
            day_end = (day + 1) * _DAY_MS
            pending = block.take(np.flatnonzero(block.t_ms >= day_end))
            ready = np.flatnonzero((block.t_ms < day_end) & (block.t_ms >= start_ms))
            yield block.take(ready[np.argsort(block.t_ms[ready], kind="stable")])
            day += 1

    def events(self) -> Iterator[LiveEvent]:
        """Transactions and due labels, merged in event-time order (endless)."""
        labels: list[tuple[int, int, dict]] = []
        counter = 0
        for block in self.day_blocks():
            for t_ms, message, scenario in self._messages(block, counter):
                while labels and labels[0][0] <= t_ms:
                    yield _label_event(heapq.heappop(labels)[2])
                counter += 1
                is_fraud = int(scenario != "none")
                yield LiveEvent("transaction", message["user_id"], message, message["transaction_time"], is_fraud, scenario)
                if is_fraud or self.genuine_labels:
                    delay = self.label_delay_ms if is_fraud else self.genuine_label_delay_ms
                    label = _label_message(message["transaction_id"], is_fraud, t_ms + delay)
                    heapq.heappush(labels, (t_ms + delay, counter, label))

    def _messages(self, block: _Block, first_number: int) -> Iterator[tuple[int, dict, str]]:
        w, m = self.world, block.merchant
        columns = (
            [f"{self.id_prefix}{first_number + i:09d}" for i in range(len(block))],
            w.user_id[block.cust].tolist(),
            block.amount.tolist(),
            w.merchant_currency[m].tolist(),
            w.merchant_name[m].tolist(),
            w.merchant_id[m].tolist(),
            w.merchant_category_name[m].tolist(),
            [datetime.fromtimestamp(t / 1000, UTC) for t in block.t_ms.tolist()],
            w.merchant_country_code[m].tolist(),
            np.array(TRANSACTION_TYPE_ORDER, dtype=object)[block.ttype].tolist(),
            np.array(CHANNELS, dtype=object)[block.channel].tolist(),
            block.device.tolist(),
        )
        scenarios = np.array(SCENARIOS, dtype=object)[block.scenario].tolist()
        for t_ms, scenario, *values in zip(block.t_ms.tolist(), scenarios, *columns, strict=True):
            yield t_ms, dict(zip(TRANSACTION_COLUMNS, values, strict=True)), scenario


def _empty_block_with_devices() -> _Block:
    block = _empty_block()
    block.device = np.zeros(0, dtype=object)
    return block


def _label_message(transaction_id: str, is_fraud: int, due_ms: int) -> dict:
    return {
        "transaction_id": transaction_id,
        "is_fraud": is_fraud,
        "source": "chargeback" if is_fraud else "simulator",
        "labeled_at": datetime.fromtimestamp(due_ms / 1000, UTC),
    }


def _label_event(label: dict) -> LiveEvent:
    return LiveEvent("label", label["transaction_id"], label, label["labeled_at"])


def live_transactions(seed: int = 42, fraud_ratio: float = DEFAULT_FRAUD_RATIO, start: datetime | None = None, **kwargs) -> Iterator[LiveEvent]:
    """Shortcut for ``iter(LiveSimulator(seed, fraud_ratio, start=start, **kwargs))``."""
    return iter(LiveSimulator(seed=seed, fraud_ratio=fraud_ratio, start=start, **kwargs))


# --- the seed's two test scenarios --------------------------------------------------------------
def seed_scenario_messages() -> list[dict]:
    """The seed's two test transactions, exactly in the seed producer's format.

    Naive ISO timestamps (UTC) and the extra ``is_fraud_actual`` field, which the validator drops.

    Returns:
        ``[normal, fraud]``: $50.00 at Walmart at 14:00 at home (US), and the seed's fraud
        scenario: $3,500.00 at "Unknown Merchant" at 02:00 abroad (RU), the next night.
    """
    normal = {
        "transaction_id": "TXN_1736949600000_4821",
        "user_id": "USER_0042",
        "amount": 50.0,
        "currency": "USD",
        "merchant": "Walmart",
        "transaction_time": "2025-01-15T14:00:00",
        "country": "US",
        "transaction_type": "purchase",
        "is_fraud_actual": False,
    }
    fraud = {
        "transaction_id": "TXN_1736992800000_7302",
        "user_id": "USER_0042",
        "amount": 3500.0,
        "currency": "USD",
        "merchant": "Unknown Merchant",
        "transaction_time": "2025-01-16T02:00:00",
        "country": "RU",
        "transaction_type": "purchase",
        "is_fraud_actual": True,
    }
    return [normal, fraud]
