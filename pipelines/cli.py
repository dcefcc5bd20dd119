"""Console-script entry points of the pipeline steps (pyproject.toml ``[project.scripts]``).

Each step's ``main(argv)`` returns its result object to Python callers (``pipelines.train.main``
returns the TrainResult); a console script needs an exit code. These wrappers run the step's
``main`` and return its code when it gives one, else 0 (a failing step raises, as with
``python -m pipelines.<step>``). The step module is imported only when its command runs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence


def _step(module: str) -> Callable[[Sequence[str] | None], int]:
    def run(argv: Sequence[str] | None = None) -> int:
        result = importlib.import_module(f"pipelines.{module}").main(argv)
        return result if isinstance(result, int) else 0

    run.__name__ = module
    run.__doc__ = f"`python -m pipelines.{module}` as a console script; returns the exit code."
    return run


pipeline = _step("main")
generate = _step("generate")
validate = _step("validate")
train = _step("train")
tune = _step("tune")
evaluate = _step("evaluate")
promote = _step("promote")
drift = _step("drift")
retrain = _step("retrain")
materialize = _step("materialize")
registry = _step("registry")
