"""The final action: rules and lists combined with the model's decision, and the review budget.

Precedence (the first that applies decides; shadow rules are recorded, never applied):
  1. an allow list holds the transaction's user_id / device_id / merchant_id / country -> approve
  2. a block list holds it                                                             -> decline
  3. an active ``allow`` rule fired                                                    -> approve
  4. an active ``decline`` rule fired                                                  -> decline
  5. the model's score reaches the version's decline threshold                         -> decline
  6. an active ``review`` rule fired                                                   -> review
  7. the model's score reaches the review threshold                                    -> review
  8. otherwise                                                                         -> approve
``tag`` rules only tag (recorded in rules_fired). Then the review budget (REVIEW_BUDGET_PER_DAY):
a review beyond what the day can take becomes approve, recorded as ``review_budget``.

The review budget gives the day's N reviews to the highest-risk transactions: it keeps the scores
of the recent review candidates (the last hour) and, from their rate and what is left of the day
and of the budget, the score a candidate must reach to be kept (until it has seen 20 candidates,
it gives out at most a tenth of the budget); never more than N a day (a Redis counter per UTC
day, shared by every process that decides). The streaming job's own alerts (transactions nobody
asked a decision for) are not counted.
"""

from __future__ import annotations

import bisect
import time
from collections import deque
from datetime import UTC, datetime, timedelta

import numpy as np

from rules.ruleset import Outcome, RuleSet

BUDGET_MARK = {"name": "review_budget", "version": 0, "action": "approve", "shadow": False}


def final_decision(model_decision: str, outcome: Outcome) -> tuple[str, str]:
    """(decision, what decided it) per the precedence above."""
    kinds, actions = outcome.list_kinds(), outcome.actions()
    if "allow" in kinds:
        return "approve", "allow_list"
    if "block" in kinds:
        return "decline", "block_list"
    if "allow" in actions:
        return "approve", "allow_rule"
    if "decline" in actions:
        return "decline", "decline_rule"
    if model_decision == "decline":
        return "decline", "model"
    if "review" in actions:
        return "review", "review_rule"
    if model_decision == "review":
        return "review", "model"
    return "approve", "model"


def apply_rules(ruleset: RuleSet | None, rows, scores: np.ndarray,
                model_decisions: np.ndarray) -> tuple[np.ndarray, list[list[dict]]]:
    """The final decision of each row (a DataFrame of the transactions' fields and features),
    and what fired on it (rules_fired), per :func:`final_decision`; the model's decisions when
    there are no rules and lists."""
    final = np.asarray(model_decisions, dtype=object).copy()
    fired: list[list[dict]] = [[] for _ in range(len(final))]
    if ruleset:
        needed = (set(ruleset.fields) | {live.field for live in ruleset.lists.values()}) - {"score"}
        frame = rows[[c for c in rows.columns if c in needed]].assign(score=scores)
        for i, outcome in enumerate(ruleset.evaluate(frame.to_dict("records"))):
            final[i], _ = final_decision(final[i], outcome)
            fired[i] = outcome.recorded()
    return final, fired


class ReviewBudget:
    """At most ``per_day`` reviews a UTC day, kept for the highest scores (see the module docstring)."""

    WINDOW_S = 3600.0
    MIN_SAMPLE = 20
    MAX_SAMPLE = 20_000

    def __init__(self, redis, per_day: int, key_prefix: str = "review_budget:", clock=time.time):
        if per_day < 0:
            raise ValueError(f"REVIEW_BUDGET_PER_DAY={per_day} must be >= 0")
        self.redis, self.per_day, self.prefix, self.clock = redis, per_day, key_prefix, clock
        self._recent: deque[tuple[float, float]] = deque()  # (time, score) of recent candidates
        self._sorted: list[float] = []

    @property
    def enabled(self) -> bool:
        return self.per_day > 0

    def key(self, now: float) -> str:
        return self.prefix + datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%d")

    def used(self, now: float | None = None) -> int:
        value = self.redis.get(self.key(self.clock() if now is None else now))
        return int(value or 0)

    def cutoff(self, now: float, used: int) -> float:
        """The score a candidate needs now: the top share of recent candidates the rest of the
        day's budget can take at their current rate (0.0 while there are too few to tell)."""
        if len(self._sorted) < self.MIN_SAMPLE:
            return 0.0
        day_end = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0) + timedelta(days=1)
        remaining_s = max(day_end.timestamp() - now, 1.0)
        span = max(now - self._recent[0][0], 1.0)
        expected = len(self._recent) / span * remaining_s
        share = min(1.0, max(self.per_day - used, 0) / max(expected, 1.0))
        if share >= 1.0:
            return 0.0
        index = min(int(len(self._sorted) * (1.0 - share)), len(self._sorted) - 1)
        return self._sorted[index]

    def admit(self, score: float | None) -> bool:
        """Whether one more review fits (and counts it when it does)."""
        if not self.enabled:
            return True
        now = self.clock()
        value = 1.0 if score is None else float(score)
        self._remember(now, value)
        key = self.key(now)
        used = int(self.redis.get(key) or 0)
        if used >= self.per_day or value < self.cutoff(now, used):
            return False
        if len(self._sorted) < self.MIN_SAMPLE and used >= max(1, self.per_day // 10):
            return False  # too few candidates seen to know what is high: a tenth of the budget meanwhile
        pipe = self.redis.pipeline()
        pipe.incr(key)
        pipe.expire(key, 2 * 86_400)
        count = pipe.execute()[0]
        if count > self.per_day:  # another process took the last one
            self.redis.decr(key)
            return False
        return True

    def _remember(self, now: float, score: float) -> None:
        if len(self._recent) >= self.MAX_SAMPLE:
            _, old = self._recent.popleft()
            del self._sorted[bisect.bisect_left(self._sorted, old)]
        self._recent.append((now, score))
        bisect.insort(self._sorted, score)
        while self._recent and self._recent[0][0] < now - self.WINDOW_S:
            _, old = self._recent.popleft()
            del self._sorted[bisect.bisect_left(self._sorted, old)]
