"""THE feature definition: names, order, version and parameters of the feature set.

Written once. Training (pipelines/), the streaming job (streaming/) and the model signature all
import the column lists from here; features/ computes them (features.batch for training,
features.stream for Spark Structured Streaming, both through features.user_state and
features.merchant). Changing a name, a window or a parameter changes FEATURE_SET_VERSION.
"""

from __future__ import annotations

FEATURE_SET_VERSION = "fs-v2"  # v2: windowed merchant features (issue 13)

# Window lengths of the per-user features, in seconds (name suffix -> length).
WINDOWS_SECONDS: dict[str, int] = {"1h": 3_600, "24h": 86_400, "7d": 7 * 86_400, "30d": 30 * 86_400}
LONGEST_WINDOW_SECONDS = max(WINDOWS_SECONDS.values())

# How long a user's merchants/countries/devices are remembered (also the cap of the "seconds since
# previous transaction" feature, whose value when there is no earlier transaction in that horizon).
SEEN_HORIZON_SECONDS = 90 * 86_400
NO_PREVIOUS_SECONDS = float(SEEN_HORIZON_SECONDS)

TINY_AMOUNT = 5.0  # amounts strictly below this count as "tiny" (card testing bursts)
NIGHT_HOURS = range(0, 6)  # UTC hours counted as night
UNKNOWN_CATEGORY = "unknown"  # value of a missing categorical

# Merchant features: per merchant (merchant_id, else name), over each window ending at
# t - label_delay, the number of transactions, of those labelled fraud by then, and the smoothed
# fraud rate (frauds + strength * prior) / (transactions + strength). The label delay is a
# parameter of training and of the job (default below), recorded on the model version.
MERCHANT_WINDOWS_SECONDS: dict[str, int] = {"1d": 86_400, "7d": 7 * 86_400, "30d": 30 * 86_400}
MERCHANT_PRIOR_FRAUD_RATE = 0.01
MERCHANT_PRIOR_STRENGTH = 20.0
DEFAULT_LABEL_DELAY_SECONDS = 3_600


def _window_descriptions() -> dict[str, str]:
    out: dict[str, str] = {}
    for kind, text in (
        ("user_txn_count", "number of the user's earlier transactions in the last {w}"),
        ("user_amount_sum", "sum of the amounts of the user's earlier transactions in the last {w}"),
        ("user_amount_mean", "mean amount of the user's earlier transactions in the last {w} (0 if none)"),
    ):
        for suffix in WINDOWS_SECONDS:
            out[f"{kind}_{suffix}"] = text.format(w=suffix)
    return out


def _merchant_descriptions() -> dict[str, str]:
    out: dict[str, str] = {}
    ends = "ending at t - label_delay"
    for suffix in MERCHANT_WINDOWS_SECONDS:
        out[f"merchant_txn_count_{suffix}"] = f"number of the merchant's transactions in the {suffix} {ends}"
        out[f"merchant_fraud_count_{suffix}"] = (
            f"number of the merchant's transactions in the {suffix} {ends} labelled fraud by then (latest label)"
        )
        out[f"merchant_fraud_rate_{suffix}"] = (
            f"(fraud count + {MERCHANT_PRIOR_STRENGTH:g} x {MERCHANT_PRIOR_FRAUD_RATE:g}) / "
            f"(transaction count + {MERCHANT_PRIOR_STRENGTH:g}) over the {suffix} {ends}"
        )
    return out


NUMERIC_FEATURE_DESCRIPTIONS: dict[str, str] = {
    "amount": "transaction amount, as sent",
    "log_amount": "log(1 + amount)",
    "hour": "hour of day of transaction_time in UTC (0-23)",
    "is_night": "1 if the UTC hour is in 0-5, else 0",
    "is_weekend": "1 if the UTC day is Saturday or Sunday, else 0",
    **_window_descriptions(),
    "user_seconds_since_prev": "seconds since the user's previous transaction (capped at 90 days; 90 days if none)",
    "user_amount_ratio_30d": "amount / mean amount of the user's earlier transactions in 30 days (1.0 if none)",
    "user_tiny_count_1h": f"number of the user's earlier transactions below {TINY_AMOUNT:g} in the last 1h",
    "user_other_country_count_24h": "number of the user's earlier transactions in the last 24h in another country",
    "user_new_merchant": "1 if the user had no transaction at this merchant (merchant_id, else name) in 90 days",
    "user_new_country": "1 if the user had no transaction in this country in 90 days",
    "user_new_device": "1 if the user had not used this device_id in 90 days (0 when device_id is missing)",
    **_merchant_descriptions(),
}

CATEGORICAL_FEATURE_DESCRIPTIONS: dict[str, str] = {
    "cat_currency": "currency (ISO 4217) as a string, 'unknown' if missing",
    "cat_country": "country (ISO 3166 alpha-2) as a string, 'unknown' if missing",
    "cat_merchant_category": "merchant_category as a string, 'unknown' if missing",
    "cat_transaction_type": "transaction_type as a string, 'unknown' if missing",
    "cat_channel": "channel as a string, 'unknown' if missing",
}

# Raw column behind each categorical feature.
CATEGORICAL_SOURCE_COLUMNS: dict[str, str] = {
    name: name.removeprefix("cat_") for name in CATEGORICAL_FEATURE_DESCRIPTIONS
}

NUMERIC_FEATURES: list[str] = list(NUMERIC_FEATURE_DESCRIPTIONS)
CATEGORICAL_FEATURES: list[str] = list(CATEGORICAL_FEATURE_DESCRIPTIONS)
FEATURE_COLUMNS: list[str] = NUMERIC_FEATURES + CATEGORICAL_FEATURES
FEATURE_DESCRIPTIONS: dict[str, str] = {**NUMERIC_FEATURE_DESCRIPTIONS, **CATEGORICAL_FEATURE_DESCRIPTIONS}

# Features computable from the transaction alone (the "stateless only" baseline of issue 4).
STATELESS_FEATURES: list[str] = [
    "amount",
    "log_amount",
    "hour",
    "is_night",
    "is_weekend",
    *CATEGORICAL_FEATURES,
]
STATEFUL_FEATURES: list[str] = [name for name in FEATURE_COLUMNS if name not in STATELESS_FEATURES]

# Raw input columns the feature code reads (merchant/merchant_id only to identify the merchant).
REQUIRED_INPUT_COLUMNS: list[str] = [
    "transaction_id",
    "user_id",
    "amount",
    "currency",
    "merchant",
    "transaction_time",
    "country",
    "transaction_type",
]
OPTIONAL_INPUT_COLUMNS: list[str] = ["merchant_id", "merchant_category", "channel", "device_id"]
