"""`make help` lists every target the Makefile declares, each with its one-line description."""

from __future__ import annotations

import re
import subprocess

import pytest

from fraudops.settings import PROJECT_ROOT

pytestmark = pytest.mark.unit

TARGET_LINE = re.compile(r"^([a-zA-Z][a-zA-Z0-9_-]*):(?!=)(.*)$", flags=re.M)


def declared_targets() -> dict[str, str]:
    """Every named target of the Makefile (not the file targets $(VENV_STAMP) ...) and its line."""
    text = (PROJECT_ROOT / "Makefile").read_text()
    return {name: rest for name, rest in TARGET_LINE.findall(text)}


def make_help() -> dict[str, str]:
    out = subprocess.run(["make", "--no-print-directory", "help"], cwd=PROJECT_ROOT, capture_output=True,
                         text=True, check=True, timeout=60).stdout
    listed = {}
    for line in out.splitlines():
        match = re.match(r"^make (\S+)\s+(.*)$", line)
        assert match, f"not a target line: {line!r}"
        listed[match.group(1)] = match.group(2).strip()
    return listed


def test_make_help_lists_every_declared_target():
    declared, listed = declared_targets(), make_help()
    assert len(declared) >= 30
    assert sorted(listed) == sorted(declared)


def test_every_target_has_a_description():
    undocumented = [name for name, rest in declared_targets().items() if "## " not in rest]
    assert not undocumented, f"targets without a `## description`: {undocumented}"
    assert all(text and text != "(no description)" for text in make_help().values())


def test_phony_targets_are_declared_rules():
    text = (PROJECT_ROOT / "Makefile").read_text().replace("\\\n", " ")
    phony = {name for line in re.findall(r"^\.PHONY:(.*)$", text, flags=re.M) for name in line.split()}
    assert phony <= set(declared_targets()), phony - set(declared_targets())
