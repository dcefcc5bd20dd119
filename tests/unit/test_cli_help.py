"""Every option of every command-line interface explains itself in ``--help`` and shows its default.

Each CLI module exposes ``build_parser()`` (the scoring job, the producer and the decision
service take the settings, whose values are their defaults). For every option of every parser
and sub-command parser: the help is not empty; an option that is neither a flag nor required
shows its default in the rendered help (argparse's ``(default: ...)`` or the help's own
"default: ..."; flags, required options, positionals and one-of-a-required-group options have
none to show); every choice is listed in the parser's help.
"""

from __future__ import annotations

import argparse
import importlib

import pytest

from fraudops.settings import load_settings

pytestmark = pytest.mark.unit

# module -> does build_parser take the settings
CLIS = {
    "streaming.scoring_job": True,
    "streaming.producer": True,
    "decisions.__main__": True,
    "portal.__main__": False,
    "rules.__main__": False,
    "pipelines.main": False,
    "pipelines.generate": False,
    "pipelines.validate": False,
    "pipelines.train": False,
    "pipelines.tune": False,
    "pipelines.evaluate": False,
    "pipelines.promote": False,
    "pipelines.drift": False,
    "pipelines.retrain": False,
    "pipelines.materialize": False,
    "pipelines.registry": False,
    "pipelines.compare_models": False,
    "monitoring.metrics_collector": False,
    "monitoring.alerts": False,
    "monitoring.feedback": False,
    "monitoring.challenger": False,
    "fraudops.db": False,
    "fraudops.health": False,
    "expectations.suites": False,
    "devstack.stack": False,
    "devstack.jobs": False,
    "devstack.cluster": False,
    "devstack.demo": False,
    "devstack.decisions_demo": False,
    "devstack.settings_docs": False,
    "devstack.spark_cds": False,
    "bench.run": False,
}


def build(module_name: str) -> argparse.ArgumentParser:
    """The module's parser, built as its main() builds it."""
    module = importlib.import_module(module_name)
    return module.build_parser(load_settings()) if CLIS[module_name] else module.build_parser()


def all_parsers(parser: argparse.ArgumentParser, name: str):
    """The parser and every sub-command parser below it, with a readable path."""
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from all_parsers(sub, f"{name} {sub_name}")


def options(parser: argparse.ArgumentParser):
    """The parser's own arguments: not --help, not the sub-command selector."""
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
            continue
        yield action


def rendered_help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    """The action's help as --help prints it (its formatter's additions, %-expanded)."""
    formatter = parser._get_formatter()
    return formatter._expand_help(action) if action.help else ""


def label(action: argparse.Action) -> str:
    return "/".join(action.option_strings) or action.dest


@pytest.mark.parametrize("module_name", sorted(CLIS))
def test_every_option_has_help_and_shows_its_default(module_name):
    problems = []
    for path, parser in all_parsers(build(module_name), module_name):
        one_of_required = {id(a) for g in parser._mutually_exclusive_groups if g.required for a in g._group_actions}
        for action in options(parser):
            text = rendered_help(parser, action)
            if not text.strip():
                problems.append(f"{path} {label(action)}: no help")
                continue
            shows_default = (action.nargs == 0 or action.required or not action.option_strings
                             or id(action) in one_of_required)
            if not shows_default and "default" not in text.lower():
                problems.append(f"{path} {label(action)}: default not shown ({text!r})")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("module_name", sorted(CLIS))
def test_every_choice_is_listed_in_the_help(module_name):
    missing = []
    for path, parser in all_parsers(build(module_name), module_name):
        text = parser.format_help()
        for action in options(parser):
            for choice in action.choices or ():
                if str(choice) not in text:
                    missing.append(f"{path} {label(action)}: choice {choice!r} not in --help")
    assert not missing, "\n".join(missing)


@pytest.mark.parametrize("module_name", sorted(CLIS))
def test_help_renders(module_name):
    """--help of every (sub-)command formats without an error (a stray % in a help fails here)."""
    for path, parser in all_parsers(build(module_name), module_name):
        assert parser.format_help().startswith("usage:"), path


def test_the_formatter_appends_defaults_and_respects_explained_ones():
    from fraudops.cli import HelpFormatter

    parser = argparse.ArgumentParser(formatter_class=HelpFormatter)
    parser.add_argument("--rate", type=float, default=2.5, help="per second")
    parser.add_argument("--topic", default=None, help="default: KAFKA_TOPIC")
    parser.add_argument("--quiet", action="store_true", help="say less")
    text = " ".join(parser.format_help().split())
    assert "per second (default: 2.5)" in text
    assert "default: KAFKA_TOPIC" in text and "(default: None)" not in text
    assert "say less (default: False)" not in text
