"""What every command-line interface of the project shares: a ``--help`` that shows defaults.

Each CLI builds its parser with ``formatter_class=HelpFormatter`` (sub-commands too, through
:func:`add_command`): every option's help ends with ``(default: ...)`` unless the help already
says what the default is (``default: MODEL_URI``), and descriptions keep their line breaks.
tests/unit/test_cli_help.py checks every option of every parser.
"""

from __future__ import annotations

import argparse


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults appended to each option's help; descriptions printed as written."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.nargs == 0 or action.default is None or "default" in text.lower():
            # a flag (store_true ...) is off unless given; None and self-described defaults are
            # explained in the help itself ("default: KAFKA_TOPIC")
            return text
        return super()._get_help_string(action)


def add_command(commands: argparse._SubParsersAction, name: str, **kwargs) -> argparse.ArgumentParser:
    """A sub-command parser with the project's :class:`HelpFormatter` (argparse does not pass the
    parent's formatter on). ``help`` doubles as the sub-command's description."""
    kwargs.setdefault("formatter_class", HelpFormatter)
    if "help" in kwargs:
        kwargs.setdefault("description", kwargs["help"])
    return commands.add_parser(name, **kwargs)
