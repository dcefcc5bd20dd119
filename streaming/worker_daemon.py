"""The scoring job's PySpark daemon (``spark.python.daemon.module``): the Python workers'
imports, and the served model, paid ONCE per executor before the daemon forks any worker.

Spark starts one daemon per executor (``python -m <daemon module>``) and forks every Python
worker from it. pyspark's own daemon imports almost nothing, so each new worker paid ~5 s of
imports (pandas, pyarrow, scikit-learn, MLflow) and ~1-3 s of model load before its first
micro-batch: on a start or a restart after a crash, the first batch waited for that. This
daemon imports the scoring pass's modules first and, when the driver names the served version
(``FRAUDOPS_PRELOAD_MODEL_URI``, a pinned ``models:/<name>/<version>`` set in the Python
workers' environment by streaming.scoring_job), loads that registry pyfunc into the per-worker
model cache (streaming.scoring_pass.worker_model) the forked workers inherit. The model that
scores is still the registry pyfunc, loaded by MLflow; a later version is loaded by the workers
as before. Nothing here is required: a failed preload is logged and the workers load as usual.

In local mode the driver has usually done all of that already in a warm daemon
(streaming.worker_zygote, named by FRAUDOPS_WORKER_ZYGOTE): this daemon then hands it its pipes
and environment and only proxies signals; it preloads itself when there is none to take over.

Only imports and unpickling happen before fork: no OpenMP parallel region (scikit-learn's
predict) runs in the daemon, so the forked workers' OpenMP is intact.
"""

from __future__ import annotations

import gc
import os
import sys
import time

_STARTED = time.time()
PRELOAD_MODEL_ENV = "FRAUDOPS_PRELOAD_MODEL_URI"
PRELOAD_TRACKING_ENV = "FRAUDOPS_PRELOAD_TRACKING_URI"


def _say(message: str) -> None:
    # stdout is the daemon's channel to the JVM (it writes its port there): stderr only
    print(f"worker daemon {os.getpid()}: {message}", file=sys.stderr, flush=True)


def preload() -> None:
    """Import what a scoring task needs; load the model the driver names (if any)."""
    started = time.monotonic()
    import_scoring_modules()
    imported = time.monotonic()
    model_uri, tracking_uri = os.environ.get(PRELOAD_MODEL_ENV), os.environ.get(PRELOAD_TRACKING_ENV)
    if model_uri and tracking_uri:
        preload_served_model(model_uri, tracking_uri)
        warm_explainer_of(model_uri)
    _say(f"started at {_STARTED:.1f}, ready at {time.time():.1f}: imports {imported - started:.1f}s, model {model_uri or '-'} {time.monotonic() - imported:.1f}s")


def import_scoring_modules() -> None:
    """The imports of a scoring task (pandas, pyarrow, scikit-learn, MLflow, the pass)."""
    import mlflow.pyfunc  # noqa: F401
    import numpy  # noqa: F401
    import pandas  # noqa: F401
    import pyarrow  # noqa: F401
    import pyspark.sql.pandas.serializers
    import pyspark.worker  # noqa: F401
    import sklearn.ensemble
    import sklearn.pipeline  # noqa: F401

    from streaming import scoring_pass  # noqa: F401


def preload_served_model(model_uri: str, tracking_uri: str):
    """The registry pyfunc at ``model_uri`` into the per-worker model cache (what workers inherit)."""
    from fraudops.modeling.registry import ServedModel
    from streaming import scoring_pass

    # worker_model keys its cache by the pinned URI only
    return scoring_pass.worker_model(ServedModel(name="", version="", model_uri=model_uri, threshold=0.0,
                                                 feature_set_version="", run_id=None), tracking_uri)


def warm_explainer_of(model_uri: str) -> None:
    """Warm the alert explainer of a model already in the cache (see _warm_explainer)."""
    from streaming import scoring_pass

    began = time.monotonic()
    _warm_explainer(scoring_pass._MODELS[model_uri])
    _say(f"alert explainer ready in {time.monotonic() - began:.1f}s")


def _warm_explainer(model) -> None:
    """Build the model's alert explainer (cached per pipeline, so inherited by the workers) and
    run its numba TreeSHAP kernel once on one made-up row: numba loads its compiled code on
    the first call (~2-4 s), which the first micro-batch with an alert would otherwise pay.
    Only the explainers that never call the model's predict (OpenMP) run here."""
    import pandas as pd

    from fraudops.modeling.explain import alert_reasons, explainer_for

    explainer = explainer_for(model)
    if explainer.kind not in ("hgb_tree", "linear"):
        return
    row = {name: [0.0] for name in explainer.numeric_features}
    row.update({name: ["unknown"] for name in explainer.categorical_features})
    alert_reasons(model, pd.DataFrame(row))


def main() -> None:
    from streaming import worker_zygote

    zygote = os.environ.get(worker_zygote.ZYGOTE_ENV)
    if zygote and worker_zygote.hand_over(zygote):
        worker_zygote.proxy_until_exit()  # the warm daemon serves the JVM; never returns
    # anything a library prints while importing must not reach the JVM's end of stdout
    saved_stdout = os.dup(1)
    os.dup2(2, 1)
    try:
        preload()
    except Exception as exc:  # noqa: BLE001 - only a head start: the workers load what they need
        _say(f"preload failed ({type(exc).__name__}: {exc}); workers load on first use")
    finally:
        sys.stdout.flush()
        os.dup2(saved_stdout, 1)
        os.close(saved_stdout)
    freeze_and_serve()


def freeze_and_serve() -> None:
    """pyspark's daemon loop, once what this process holds is frozen out of the workers' GC."""
    # what the daemon holds now is shared with every worker (copy-on-write): keep the workers'
    # garbage collector off it, or each worker's first full collection walks (and copies) the
    # preloaded modules' objects
    gc.collect()
    gc.freeze()
    sys.stdout.flush()
    from pyspark import daemon

    daemon.manager()


if __name__ == "__main__":
    main()
