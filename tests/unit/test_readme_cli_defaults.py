"""The defaults that README.md and docs/ state for the command lines are the code's defaults.

Each documented fact is found in the text by a pattern (a fact that is reworded or removed fails
here until this list follows) and compared with the argparse default of the CLI it documents
(the settings' own defaults, from fraudops.settings_table, where a CLI default is a setting) or
with the Makefile's variable.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from fraudops.settings import PROJECT_ROOT, Settings

pytestmark = pytest.mark.unit

README = (PROJECT_ROOT / "README.md").read_text()
DOCS = {name: (PROJECT_ROOT / "docs" / name).read_text() for name in ("promotion.md", "champion_challenger.md")}
MAKEFILE = (PROJECT_ROOT / "Makefile").read_text()
TABLE_SETTINGS = Settings()  # the settings table's defaults: what the docs document


def documented(pattern: str, text: str = README) -> tuple[str, ...]:
    """The groups of the pattern's only match in the text (fails when the fact is not there)."""
    matches = re.findall(pattern, text, flags=re.S)
    assert len(matches) == 1, f"expected one documented fact matching {pattern!r}, found {matches}"
    return matches[0] if isinstance(matches[0], tuple) else (matches[0],)


def scoring_job_parser():
    from streaming import scoring_job

    return scoring_job.build_parser(TABLE_SETTINGS)


def subcommand(parser, name: str):
    import argparse

    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices[name]


def test_the_streaming_jobs_documented_command_shows_its_defaults():
    block = documented(r"```bash\n(spark-submit --master 'local\[2\]'.*?)```")[0]
    argv = shlex.split(block.replace("\\\n", " ").split("streaming/scoring_job.py", 1)[1])
    parser = scoring_job_parser()
    shown = vars(parser.parse_args(argv))
    given = {a.dest for a in parser._actions if set(a.option_strings) & set(argv)}
    assert len(given) == 4, given  # "all four options are shown with their defaults"
    assert "all four options are shown with their defaults" in README
    for dest in sorted(given):
        default = parser.get_default(dest)
        if dest == "model_uri":  # None: the setting MODEL_URI
            default = TABLE_SETTINGS.model_uri
        if dest == "checkpoint_dir":
            default, shown[dest] = Path(default), PROJECT_ROOT / shown[dest]
        assert shown[dest] == default, f"README shows --{dest.replace('_', '-')} {shown[dest]}, the code's default is {default}"


def test_scoring_tasks_default():
    (value,) = documented(r"`--scoring-tasks (\d+)` \(default\)")
    assert int(value) == scoring_job_parser().get_default("scoring_tasks")


def test_model_refresh_seconds_default():
    default = scoring_job_parser().get_default("model_refresh_seconds")
    assert float(documented(r"at most `--model-refresh-seconds`, (\d+) s")[0]) == default
    assert float(documented(r"asks the registry\s+every (\d+) s which version")[0]) == default
    assert float(documented(r"`--model-refresh-seconds` \(default (\d+) s\)", DOCS["promotion.md"])[0]) == default


def test_merchant_snapshot_refresh_default():
    (period,) = documented(r"snapshot of PostgreSQL that the driver refreshes every (minute)")
    assert {"minute": 60.0}[period] == scoring_job_parser().get_default("merchant_refresh_seconds")


def test_label_delay_default_of_every_step():
    from decisions.__main__ import build_parser as decisions_parser
    from pipelines import evaluate, retrain, train, tune

    (value,) = documented(r"`label_delay` \(default\s+`([^`]+)`")
    defaults = {name: module.build_parser().get_default("label_delay")
                for name, module in {"train": train, "tune": tune, "evaluate": evaluate, "retrain": retrain}.items()}
    defaults["scoring_job"] = scoring_job_parser().get_default("label_delay")
    defaults["decisions serve"] = subcommand(decisions_parser(TABLE_SETTINGS), "serve").get_default("label_delay")
    assert {name: value for name in defaults} == defaults


def test_tune_searches_across_families_by_default():
    from pipelines import tune

    (value,) = documented(r"`model_type=(\w+)` by default")
    assert tune.build_parser().get_default("model_type") == value


def test_the_main_pipelines_documented_defaults():
    from pipelines import main

    days, customers = documented(r"`mlflow run \. -e main --env-manager local`: generates (\d+) days of history for "
                                 r"([\d,]+) customers")
    parser = main.build_parser()
    assert (int(days), int(customers.replace(",", ""))) == (parser.get_default("days"), parser.get_default("customers"))


def test_the_demos_documented_live_volume_is_the_makefiles():
    live, rate = documented(r"`DEMO_LIVE=(\d+)` at `DEMO_RATE=(\d+)`")
    for name, value in (("DEMO_LIVE", live), ("DEMO_RATE", rate)):
        assert re.search(rf"^{name}\s*\?=\s*{value}\s*$", MAKEFILE, flags=re.M), f"Makefile {name} is not {value}"


def test_promote_min_live_labels_default():
    from pipelines import promote

    (value,) = documented(r"`MIN_LIVE_LABELS` \((\d+), `promote --live`'s default\)", DOCS["champion_challenger.md"])
    assert int(value) == promote.build_parser().get_default("min_live_labels")


def test_service_ports():
    from decisions.__main__ import build_parser as decisions_parser

    (port,) = documented(r"make decisions-bg\s+# background on 127\.0\.0\.1:(\d+)")
    assert int(port) == subcommand(decisions_parser(TABLE_SETTINGS), "serve").get_default("port")
    (port,) = documented(r"`http://127\.0\.0\.1:\$PORTAL_PORT/` \((\d+)\)")
    assert int(port) == TABLE_SETTINGS.portal_port
