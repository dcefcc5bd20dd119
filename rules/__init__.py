"""Rules and lists beside the model: CEL rules (language), their storage with four-eyes approval
(store), the live snapshot the services apply (ruleset), the final action and the review budget
(policy), backtests on stored transactions (backtest). CLI: ``python -m rules``."""
