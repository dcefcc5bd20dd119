"""Select the model on the time split: hyperopt (TPE) across model families and their hyperparameters.

Reads:  --data, labelled history (Parquet/CSV; empty: simulated as in pipelines.train).
Writes: a parent MLflow run ("tune-<model_type>") holding one nested run per trial (its params and
        validation metrics), then, in the parent run, the best model exactly as pipelines.train logs
        one (plots, reference sample, pyfunc), registered as a new version of fraud-detector.

--model-type all (the default) searches across families: random forest, histogram gradient
boosting and logistic regression, each with its own hyperparameters and its class weighting
(none or "balanced": class imbalance handled by weights, chosen by validation like any other
hyperparameter); a single family name searches that family only. Trials fit on the fit period
and are scored by average precision on the validation period (a later period); the test period
is never seen while searching (its metrics are computed once, for the best model).
--parallelism above 1 runs trials on Spark (hyperopt SparkTrials, local[N] here); every trial opens
its nested run with an explicit parent_run_id, so this works on executors too.

Run:
    python -m pipelines.tune --model-type all --data data/history.parquet --max-evals 12 --parallelism 1
    mlflow run . -e tune --env-manager local -P max_evals=12 -P parallelism=2
    mlflow run . -e main --env-manager local -P tune_evals=12     # main trains the tuned best
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipelines.common import (
    DEFAULT_DATA,
    DEFAULT_EXPERIMENT,
    DEFAULT_LABEL_DELAY,
    configure_logging,
    defaults_of,
    start_step_run,
    use_experiment,
    whole_number,
)
from pipelines.train import (
    PreparedData,
    feature_lists,
    fit_pipeline,
    prepare_data,
    register_trained_model,
    score_rows,
    train_in_active_run,
)

log = logging.getLogger("pipelines.tune")

INTEGER_PARAMS = {"max_iter", "max_leaf_nodes", "min_samples_leaf", "n_estimators", "max_depth"}
ALL_FAMILIES = "all"
SEARCHED_FAMILIES = ("random_forest", "hist_gradient_boosting", "logistic")
MODEL_TYPE_KEY = "model_type"


def family_space(model_type: str, prefix: str = "") -> dict[str, Any]:
    """The hyperopt space of one family (keys are estimator parameters; labels get ``prefix``)."""
    from hyperopt import hp

    def name(label: str) -> str:
        return f"{prefix}{label}"

    spaces = {
        "hist_gradient_boosting": lambda: {
            "learning_rate": hp.loguniform(name("learning_rate"), math.log(0.02), math.log(0.3)),
            "max_iter": hp.quniform(name("max_iter"), 100, 400, 50),
            "max_leaf_nodes": hp.quniform(name("max_leaf_nodes"), 15, 63, 8),
            "min_samples_leaf": hp.quniform(name("min_samples_leaf"), 10, 100, 10),
            "l2_regularization": hp.loguniform(name("l2_regularization"), math.log(1e-3), math.log(10.0)),
        },
        "random_forest": lambda: {
            "n_estimators": hp.quniform(name("n_estimators"), 100, 300, 50),
            "min_samples_leaf": hp.quniform(name("min_samples_leaf"), 1, 20, 1),
            "max_features": hp.choice(name("max_features"), ["sqrt", 0.3, 0.5]),
            "max_depth": hp.choice(name("max_depth"), [None, 12, 20]),
        },
        "gradient_boosting": lambda: {
            "n_estimators": hp.quniform(name("n_estimators"), 100, 300, 50),
            "max_depth": hp.quniform(name("max_depth"), 2, 5, 1),
            "learning_rate": hp.loguniform(name("learning_rate"), math.log(0.02), math.log(0.3)),
            "subsample": hp.uniform(name("subsample"), 0.6, 1.0),
        },
        "logistic": lambda: {"C": hp.loguniform(name("C"), math.log(1e-3), math.log(100.0))},
    }
    if model_type not in spaces:
        raise ValueError(f"model_type={model_type!r} is not one of {ALL_FAMILIES}, {', '.join(spaces)}")
    space = spaces[model_type]()
    if model_type != "gradient_boosting":  # GradientBoostingClassifier has no class_weight
        space["class_weight"] = hp.choice(name("class_weight"), [None, "balanced"])
    return {MODEL_TYPE_KEY: model_type, **space}


def search_space(model_type: str) -> dict[str, Any]:
    """The space of ``model_type``: one family, or ``all`` (a choice among SEARCHED_FAMILIES)."""
    from hyperopt import hp

    if model_type == ALL_FAMILIES:
        return {"family": hp.choice("family", [family_space(f, f"{f}.") for f in SEARCHED_FAMILIES])}
    return {"family": family_space(model_type)}


def estimator_params(sampled: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """(model_type, estimator params) of a sampled point (quniform gives floats: cast the integer ones)."""
    family = dict(sampled["family"])
    model_type = family.pop(MODEL_TYPE_KEY)
    return model_type, {k: (int(v) if k in INTEGER_PARAMS and v is not None else v) for k, v in family.items()}


@dataclass(frozen=True)
class TrialContext:
    """What a trial needs, shipped as plain values (a trial may run on a Spark executor)."""

    model_type: str
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    seed: int


def make_objective(prepared: PreparedData, context: TrialContext) -> Callable[[Mapping[str, Any]], dict]:
    """The hyperopt objective: fit on the fit period, loss = -average precision on validation."""
    fit_rows, validation_rows = prepared.frames.fit, prepared.frames.validation

    def objective(sampled: Mapping[str, Any]) -> dict:
        from hyperopt import STATUS_OK

        model_type, params = estimator_params(sampled)
        started = time.perf_counter()
        metrics = trial_metrics(model_type, params, fit_rows, validation_rows, context.seed)
        metrics["fit_seconds"] = time.perf_counter() - started
        log.info("trial %s %s: validation AP %.4f", model_type, params, metrics["val_average_precision"])
        if context.parent_run_id:
            log_trial(context, model_type, params, metrics)
        return {"loss": -metrics["val_average_precision"], "status": STATUS_OK, "metrics": metrics}

    return objective


def trial_metrics(model_type: str, params: Mapping[str, Any], fit_rows, validation_rows, seed: int) -> dict[str, float]:
    """Validation AUC ROC and average precision of one set of params. A model whose validation
    threshold would be degenerate (>= 0.99: it could never be registered, e.g. balanced class
    weights pushing every fraud to ~1) scores AP 0, so the search never picks it."""
    from pipelines.evaluation_metrics import choose_threshold, ranking_metrics
    from pipelines.train import MAX_REGISTRABLE_THRESHOLD

    numeric, categorical = feature_lists("all")
    pipeline = fit_pipeline(model_type, fit_rows, numeric, categorical, params, seed)
    scores = score_rows(pipeline, validation_rows, numeric, categorical)
    ranking = ranking_metrics(validation_rows["is_fraud"], scores)
    threshold = choose_threshold(validation_rows["is_fraud"], scores).threshold
    usable = threshold < MAX_REGISTRABLE_THRESHOLD
    return {"val_auc_roc": ranking["auc_roc"], "val_threshold": threshold,
            "val_average_precision_raw": ranking["average_precision"],
            "val_average_precision": ranking["average_precision"] if usable else 0.0}


def log_trial(context: TrialContext, model_type: str, params: Mapping[str, Any], metrics: Mapping[str, float]) -> None:
    """One nested run under the parent (explicit parent_run_id: works on executors)."""
    import mlflow

    mlflow.set_tracking_uri(context.tracking_uri)
    with mlflow.start_run(experiment_id=context.experiment_id, parent_run_id=context.parent_run_id,
                          nested=True, run_name=f"trial-{model_type}"):
        mlflow.log_params({MODEL_TYPE_KEY: model_type, **{k: str(v) for k, v in params.items()}})
        mlflow.log_metrics(dict(metrics))


def make_trials(parallelism: int):
    """hyperopt Trials, or SparkTrials (local[parallelism] session) when parallelism > 1."""
    if parallelism <= 1:
        from hyperopt import Trials

        return Trials()
    from hyperopt import SparkTrials

    from fraudops.spark_session import build_spark_session

    spark = build_spark_session("fraudops-tune", master=f"local[{parallelism}]")
    return SparkTrials(parallelism=parallelism, spark_session=spark)


def search(objective, model_type: str, max_evals: int, trials, seed: int) -> tuple[str, dict[str, Any]]:
    """Run TPE; returns the best (model_type, params) (hp.choice indices resolved with space_eval)."""
    import numpy as np
    from hyperopt import fmin, space_eval, tpe

    space = search_space(model_type)
    best = fmin(objective, space, algo=tpe.suggest, max_evals=max_evals, trials=trials,
                rstate=np.random.default_rng(seed), show_progressbar=False)
    return estimator_params(space_eval(space, best))


def search_families(prepared: PreparedData, max_evals: int, seed: int = 42,
                    model_type: str = ALL_FAMILIES) -> tuple[str, dict[str, Any]]:
    """The search alone, without MLflow (pipelines.compare_models): the best (model_type, params)."""
    from hyperopt import Trials

    context = TrialContext(model_type, "", "", "", seed)
    return search(make_objective(prepared, context), model_type, max_evals, Trials(), seed)


@dataclass(frozen=True)
class TuneResult:
    """The parent run, the best family and params, their validation AP, and the registered version."""

    run_id: str
    model_type: str
    best_params: dict[str, Any]
    best_val_average_precision: float
    version: str | None
    metrics: dict[str, float]


def run_search(prepared: PreparedData, context: TrialContext, max_evals: int, parallelism: int):
    """The search inside the parent run: (model_type, params, best validation AP)."""
    import mlflow

    trials = make_trials(parallelism)
    model_type, params = search(make_objective(prepared, context), context.model_type, max_evals, trials, context.seed)
    best_ap = -min(loss for loss in trials.losses() if loss is not None)
    mlflow.log_metric("best_trial_val_average_precision", best_ap)
    mlflow.set_tags({"best_model_type": model_type, "best_params": str(params)[:4900]})
    return model_type, params, best_ap


def tune_model(model_type: str = ALL_FAMILIES, data: str = DEFAULT_DATA, max_evals: int = 12,
               parallelism: int = 1, register: bool = True, model_name: str | None = None,
               experiment_name: str = DEFAULT_EXPERIMENT, seed: int = 42, prepared: PreparedData | None = None,
               label_delay: str = DEFAULT_LABEL_DELAY, settings=None) -> TuneResult:
    """Search families and hyperparameters, then log the best model in the parent run and register it.

    Args:
        model_type: ``all`` (across SEARCHED_FAMILIES) or one of fraudops.modeling.model.MODEL_TYPES.
        data: labelled history (empty: simulated).
        max_evals: number of trials.
        parallelism: concurrent trials (> 1: SparkTrials).
        register: register the best model as a new version of ``model_name``.
        model_name: default settings.model_name.
        experiment_name: MLflow experiment.
        seed: TPE and estimator seed.
        prepared: already prepared data.
        label_delay: how long after a transaction its label is known (e.g. ``1h``, ``7d``).
        settings: fraudops Settings.
    """
    import mlflow

    from fraudops.modeling.registry import configure_tracking
    from fraudops.settings import load_settings

    if max_evals < 1 or parallelism < 1:
        raise ValueError(f"max_evals ({max_evals}) and parallelism ({parallelism}) must be >= 1")
    search_space(model_type)  # fail fast on an unknown model type
    settings = settings or load_settings()
    configure_tracking(settings)
    use_experiment(experiment_name)
    prepared = prepared or prepare_data(data, label_delay=label_delay)
    with start_step_run(f"tune-{model_type}") as parent:
        mlflow.set_tag("step", "tune")
        # not "max_evals"/"parallelism": `mlflow run` logged those already, as "12.0"
        mlflow.log_params({"trials": max_evals, "concurrent_trials": parallelism, "searched": model_type})
        context = TrialContext(model_type, settings.mlflow_tracking_uri, parent.info.experiment_id,
                               parent.info.run_id, seed)
        best_type, best, best_ap = run_search(prepared, context, max_evals, parallelism)
        info, threshold, metrics = train_in_active_run(prepared, best_type, best, "all", seed)
        version = None
        if register:
            version = register_trained_model(info, parent.info.run_id, model_name or settings.model_name,
                                             best_type, threshold, metrics, prepared).version
    return TuneResult(parent.info.run_id, best_type, best, best_ap, version, metrics)


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m pipelines.tune`` (MLproject entry point ``tune``)."""
    from fraudops.cli import HelpFormatter
    from fraudops.modeling.model import MODEL_TYPES

    defaults = defaults_of(tune_model)
    parser = argparse.ArgumentParser(prog="python -m pipelines.tune", description=__doc__.split("\n\n")[0],
                                     formatter_class=HelpFormatter)
    parser.add_argument("--model-type", default=defaults["model_type"],
                        help=f"all (across {', '.join(SEARCHED_FAMILIES)}) or one of {', '.join(MODEL_TYPES)}")
    parser.add_argument("--data", default=defaults["data"], help="labelled history; empty: simulate (default: %(default)r)")
    parser.add_argument("--max-evals", type=whole_number, default=defaults["max_evals"], help="hyperopt trials")
    parser.add_argument("--parallelism", type=whole_number, default=defaults["parallelism"],
                        help="trials run at once (> 1: SparkTrials)")
    parser.add_argument("--label-delay", default=defaults["label_delay"],
                        help="how long after a transaction its label is known (30m, 1h, 7d)")
    parser.add_argument("--experiment", default=defaults["experiment_name"],
                        help="MLflow experiment of the run (mlflow run: its own)")
    return parser


def main(argv: Sequence[str] | None = None) -> TuneResult:
    configure_logging()
    args = build_parser().parse_args(argv)
    result = tune_model(args.model_type, args.data, args.max_evals, args.parallelism, experiment_name=args.experiment,
                        label_delay=args.label_delay)
    print(f"run {result.run_id}  best {result.model_type} {result.best_params}  validation AP {result.best_val_average_precision:.4f}"
          f"  registered version {result.version}")
    return result


if __name__ == "__main__":
    main()
