"""Promote a registered version by the policy of pipelines.promotion_policy.

Reads:  the candidate version (--version N or latest) and the current Production version of the
        registered model (settings.model_name, fraud-detector), and --data, labelled history.
        Both models score the SAME out-of-time holdout (default: the last 20% of the history).
Writes: unless --dry-run true: the candidate's stage (Staging when it passes validation,
        Production, with the previous Production archived and the alias ``champion`` moved, when
        it also beats the champion or there is none), version tags (validation_status,
        promotion_decision), an audit_log row in PostgreSQL, and an MLflow run with both models'
        metrics and the decision. With --dry-run true it only prints the decision and why.

Run:
    python -m pipelines.promote --version latest --data data/history.parquet --dry-run false [--pg-schema public]
    mlflow run . -e promote --env-manager local -P version=3 -P dry_run=true
On live evidence (the challenger's shadow scores against the champion's on the live labels,
monitoring.challenger; a losing challenger is archived with the reason):
    python -m pipelines.promote --live true --min-live-labels 500 --live-margin 0.01 [--pg-schema public]
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipelines.common import (
    DEFAULT_DATA,
    cli_text,
    configure_logging,
    defaults_of,
    log_finite_metrics,
    parse_bool,
    start_step_run,
    use_experiment,
)
from pipelines.evaluate import EvaluationResult, Holdout, evaluate_on_holdout, load_holdout
from pipelines.promotion_policy import (
    DEFAULT_POLICY,
    PRODUCTION,
    STAGING,
    PromotionDecision,
    PromotionPolicy,
    decide,
)

log = logging.getLogger("pipelines.promote")

DEFAULT_EXPERIMENT = "fraud-detection-promotion"
AUDIT_EVENT = "model_promotion"
AUDIT_ACTOR = "pipelines.promote"
REPORTED_METRICS = ("auc_roc", "average_precision", "precision", "recall", "f1", "card_precision_at_100",
                    "fraud_amount_caught_share")


@dataclass(frozen=True)
class PromotionOutcome:
    """The decision for one candidate, the evidence, and what was applied."""

    model_name: str
    candidate_version: str
    champion_version: str | None
    decision: PromotionDecision
    candidate: EvaluationResult
    champion: EvaluationResult | None
    dry_run: bool
    applied_stage: str | None  # None in dry-run mode or when nothing changed

    def summary(self) -> dict[str, Any]:
        """JSON-friendly summary (audit_log details, CLI output)."""
        def pick(result: EvaluationResult | None) -> dict[str, float] | None:
            return None if result is None else {k: round(float(result.metrics[k]), 6) for k in REPORTED_METRICS}

        return {
            "model": self.model_name, "candidate_version": self.candidate_version,
            "champion_version": self.champion_version, "decision_stage": self.decision.stage,
            "applied_stage": self.applied_stage, "dry_run": self.dry_run,
            "passes_validation": self.decision.passes_validation, "beats_champion": self.decision.beats_champion,
            "reasons": list(self.decision.reasons), "holdout": list(self.candidate.period),
            "candidate_metrics": pick(self.candidate), "champion_metrics": pick(self.champion),
        }


def evaluate_champion(name: str, candidate_version: str, holdout: Holdout, client):
    """The champion's result on the holdout (the alias ``champion``, else the Production stage),
    (None, None) when there is none.

    Returns:
        (champion version or None, EvaluationResult or None, reason it could not be compared or None)
    """
    from fraudops.modeling.champion import champion_version

    champion = champion_version(name, client)
    if champion is None or str(champion.version) == candidate_version:
        return (None if champion is None else str(champion.version)), None, None
    try:
        return str(champion.version), evaluate_on_holdout(f"models:/{name}/{champion.version}", holdout, client), None
    except ValueError as exc:  # e.g. trained on another feature set: not comparable on this holdout
        return str(champion.version), None, str(exc)


def decide_promotion(candidate: EvaluationResult, champion: EvaluationResult | None, incomparable: str | None,
                     policy: PromotionPolicy) -> PromotionDecision:
    """The policy's decision; a champion that cannot be scored here blocks automatic Production."""
    decision = decide(candidate.metrics, None if champion is None else champion.metrics, policy)
    if incomparable and decision.stage == PRODUCTION:
        return PromotionDecision(STAGING, True, None, (*decision.reasons[:1],
                                 f"champion not comparable on this holdout ({incomparable}); promote by hand"))
    return decision


def apply_decision(name: str, version: str, decision: PromotionDecision, client) -> str | None:
    """Move the version to the decided stage and tag it; returns the stage applied (None: none)."""
    from fraudops.modeling.registry import promote_to_production, promote_to_staging

    client.set_model_version_tag(name, version, "validation_status", "passed" if decision.passes_validation else "failed")
    client.set_model_version_tag(name, version, "promotion_decision", decision.explain()[:4900])
    if decision.stage == PRODUCTION:
        promote_to_production(name, version, client)
    elif decision.stage == STAGING:
        promote_to_staging(name, version, client)
    return decision.stage


def record_audit(conn, details: Mapping[str, Any]) -> None:
    """One audit_log row for the promotion decision."""
    from fraudops.records import insert_audit

    with conn:
        insert_audit(conn, AUDIT_EVENT, AUDIT_ACTOR, details)


def log_promotion_run(outcome: PromotionOutcome) -> None:
    """An MLflow run with both models' metrics on the holdout and the decision."""
    import mlflow

    with start_step_run(f"promote-{outcome.model_name}-v{outcome.candidate_version}"):
        mlflow.set_tag("step", "promote")
        # names differ from the CLI flags (version, data, dry_run) that `mlflow run` logged already
        mlflow.log_params({"model": outcome.model_name, "candidate_version": outcome.candidate_version,
                           "champion_version": outcome.champion_version or "",
                           "holdout_start": outcome.candidate.period[0], "holdout_end": outcome.candidate.period[1]})
        log_finite_metrics({f"candidate_{k}": v for k, v in outcome.candidate.metrics.items()})
        if outcome.champion is not None:
            log_finite_metrics({f"champion_{k}": v for k, v in outcome.champion.metrics.items()})
        mlflow.set_tags({"decision_stage": str(outcome.decision.stage), "applied_stage": str(outcome.applied_stage)})
        mlflow.log_dict(outcome.summary(), "promotion/decision.json")


def promote_version(version: str = "latest", data: str = DEFAULT_DATA, dry_run: bool = False,
                    test_start=None, test_end=None, model_name: str | None = None,
                    policy: PromotionPolicy = DEFAULT_POLICY, experiment_name: str = DEFAULT_EXPERIMENT,
                    holdout: Holdout | None = None, pg_schema: str = "public", settings=None) -> PromotionOutcome:
    """Evaluate the candidate and the champion on the same holdout, decide, and (unless dry-run) apply.

    Args:
        version: candidate version number or ``latest``.
        data: labelled history (Parquet/CSV) holding the holdout period.
        dry_run: decide and explain only: no stage change, no tags, no audit row, no MLflow run.
        test_start, test_end: the holdout (ISO; empty: the last 20% of the history).
        model_name: registered model (default settings.model_name).
        policy: thresholds and comparison (pipelines.promotion_policy).
        experiment_name: MLflow experiment of the promotion run.
        holdout: an already featurized holdout (skips reading ``data``).
        pg_schema: PostgreSQL schema whose audit_log gets the decision (the job's schema).
        settings: fraudops Settings (default load_settings()).
    """
    from fraudops.modeling.registry import get_version, registry_client
    from fraudops.settings import load_settings
    from monitoring.storage import connect_schema

    settings = settings or load_settings()
    client = registry_client(settings)
    name = model_name or settings.model_name
    candidate_version = str(get_version(name, version, client).version)
    conn = None if dry_run else connect_schema(settings, pg_schema)  # fail before changing the registry if PostgreSQL is down
    try:
        holdout = holdout or load_holdout(data, test_start, test_end)
        candidate = evaluate_on_holdout(f"models:/{name}/{candidate_version}", holdout, client)
        champion_version, champion, incomparable = evaluate_champion(name, candidate_version, holdout, client)
        if champion_version == candidate_version:
            decision = PromotionDecision(None, True, None, (f"version {candidate_version} is already Production",))
        else:
            decision = decide_promotion(candidate, champion, incomparable, policy)
        applied = None if dry_run or champion_version == candidate_version else apply_decision(
            name, candidate_version, decision, client)
        outcome = PromotionOutcome(name, candidate_version, champion_version, decision, candidate, champion,
                                   dry_run, applied)
        if conn is not None:
            record_audit(conn, outcome.summary())
            use_experiment(experiment_name)
            log_promotion_run(outcome)
        return outcome
    finally:
        if conn is not None:
            conn.close()


LIVE_METRICS = ("average_precision", "auc_roc", "precision_at_volume", "recall_at_volume")


def live_decision(comparison, min_live_labels: int, min_margin: float,
                  metric: str = "average_precision") -> tuple[str, list[str]]:
    """``promote``, ``archive`` (the challenger loses) or ``wait`` (too few live labels), with
    the reasons, from a monitoring.challenger.LiveComparison. Pure."""
    if metric not in LIVE_METRICS:
        raise ValueError(f"live metric={metric!r} is not one of {LIVE_METRICS}")
    from monitoring.challenger import label_shortfall

    shortfall = label_shortfall(comparison, min_live_labels)
    if shortfall:
        return "wait", [shortfall]
    counts = f"{comparison.labels} live labels ({comparison.positives} fraud)"
    chall, champ = comparison.challenger[metric], comparison.champion[metric]
    if chall is None or champ is None:
        return "wait", [f"{counts}; live {metric} undefined (challenger {chall}, champion {champ})"]
    margin = chall - champ
    figures = (f"live {metric} challenger v{comparison.challenger_version} {chall:.4f} vs champion "
               f"v{comparison.champion_version} {champ:.4f} (margin {margin:+.4f}, needs > {min_margin:+.4f}) "
               f"on {counts}")
    if margin > min_margin:
        return "promote", ["beats the champion on live labels", figures]
    return "archive", ["does not beat the champion on live labels", figures]


def promote_on_live_evidence(settings=None, model_name: str | None = None, pg_schema: str = "public",
                             min_live_labels: int = 500, min_margin: float = 0.0,
                             metric: str = "average_precision", dry_run: bool = False) -> dict:
    """Decide on the challenger (Staging stage or alias ``challenger``) from its live shadow scores
    (monitoring.challenger): promote it to Production when its live ``metric`` beats the
    champion's by more than ``min_margin`` on at least ``min_live_labels`` labels, archive it
    with the reason when it does not, wait when the labels are too few. Unless dry-run: the
    decision and the figures go to audit_log (event model_promotion, evidence live) and to the
    version's tags. Returns the decision's summary."""
    from fraudops.modeling.registry import (
        ARCHIVED,
        CHALLENGER_ALIAS,
        promote_to_production,
        registry_client,
    )
    from fraudops.settings import load_settings
    from monitoring.challenger import compare_live
    from monitoring.storage import connect_schema

    settings = settings or load_settings()
    name = model_name or settings.model_name
    client = registry_client(settings)
    comparison = compare_live(settings, name, pg_schema, write=not dry_run, log_mlflow=not dry_run)
    decision, reasons = live_decision(comparison, min_live_labels, min_margin, metric)
    version = comparison.challenger_version
    summary = {"evidence": "live", "model": name, "candidate_version": version,
               "champion_version": comparison.champion_version, "decision": decision, "reasons": reasons,
               "metric": metric, "min_live_labels": min_live_labels, "min_margin": min_margin,
               "dry_run": dry_run, "comparison": comparison.summary()}
    if dry_run:
        return summary
    conn = connect_schema(settings, pg_schema)  # fail before changing the registry if PostgreSQL is down
    try:
        client.set_model_version_tag(name, version, "live_promotion_decision", f"{decision}: {'; '.join(reasons)}"[:4900])
        client.set_model_version_tag(name, version, "live_evidence", json.dumps(
            {k: summary["comparison"][k] for k in ("labels", "positives", "champion", "challenger")})[:4900])
        if decision == "promote":
            promote_to_production(name, version, client)
        elif decision == "archive":
            import warnings

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                client.transition_model_version_stage(name, version, ARCHIVED)
        if decision != "wait":
            aliases = client.get_registered_model(name).aliases or {}
            if str(aliases.get(CHALLENGER_ALIAS, "")) == version:
                client.delete_registered_model_alias(name, CHALLENGER_ALIAS)
        record_audit(conn, summary)
    finally:
        conn.close()
    return summary


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m pipelines.promote`` (MLproject entry point ``promote``)."""
    from fraudops.cli import HelpFormatter

    defaults = defaults_of(promote_version)
    parser = argparse.ArgumentParser(prog="python -m pipelines.promote", description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--version", default=defaults["version"], help="version number or 'latest'")
    parser.add_argument("--data", default=defaults["data"], help="labelled history holding the shared holdout")
    parser.add_argument("--dry-run", default=cli_text(defaults["dry_run"]).lower(),
                        help="true: print the policy's decision, change nothing")
    parser.add_argument("--test-start", default=cli_text(defaults["test_start"]),
                        help="start of the holdout, ISO-8601 (default: as train chooses it)")
    parser.add_argument("--test-end", default=cli_text(defaults["test_end"]),
                        help="end of the holdout, ISO-8601 (default: the data's end)")
    parser.add_argument("--model-name", default=cli_text(defaults["model_name"]),
                        help="default: MODEL_NAME (fraud-detector)")
    parser.add_argument("--pg-schema", default=defaults["pg_schema"], help="PostgreSQL schema of the audit_log row")
    parser.add_argument("--live", default="false",
                        help="true: decide on the challenger from its live shadow scores (not the holdout)")
    parser.add_argument("--min-live-labels", type=lambda v: int(float(v)), default=500,  # MLflow may pass 500.0
                        help="with --live: labels needed to decide")
    parser.add_argument("--live-margin", type=float, default=0.0,
                        help="with --live: the challenger's live metric must exceed the champion's by more")
    parser.add_argument("--live-metric", default="average_precision", choices=LIVE_METRICS,
                        help="with --live: the metric compared")
    return parser


def main(argv: Sequence[str] | None = None) -> PromotionOutcome | dict:
    configure_logging()
    args = build_parser().parse_args(argv)
    if parse_bool(args.live, "--live"):
        summary = promote_on_live_evidence(model_name=args.model_name or None, pg_schema=args.pg_schema,
                                           min_live_labels=args.min_live_labels, min_margin=args.live_margin,
                                           metric=args.live_metric, dry_run=parse_bool(args.dry_run, "--dry-run"))
        print(json.dumps(summary, indent=2))
        return summary
    version = args.version.strip()
    if version.replace(".0", "", 1).isdigit():  # MLflow may pass "3.0"
        version = str(int(float(version)))
    outcome = promote_version(version, args.data, parse_bool(args.dry_run, "--dry-run"), args.test_start,
                              args.test_end, args.model_name or None, pg_schema=args.pg_schema)
    mode = "DRY RUN, nothing changed" if outcome.dry_run else f"applied: {outcome.applied_stage or 'no change'}"
    print(f"{outcome.model_name} v{outcome.candidate_version} -> {outcome.decision.explain()} ({mode})")
    print(json.dumps(outcome.summary(), indent=2))
    return outcome


if __name__ == "__main__":
    main()
