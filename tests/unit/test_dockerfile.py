"""The application image's default command (docker/Dockerfile's last CMD) is a runnable module.

It once named fraudops.health after its command-line entry point had moved away: `python -m`
ran the module's imports and exited 0 without checking anything. Here the CMD's module must have
a ``__main__`` guard and answer ``--help`` with a usage, run as the image runs it (PYTHONPATH =
the project folder, as ENV PYTHONPATH=/app).
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "docker" / "Dockerfile"


def default_command() -> list[str]:
    """The last CMD of the Dockerfile, exec (JSON) form."""
    commands = re.findall(r"^CMD\s+(\[.*\])\s*$", DOCKERFILE.read_text(), flags=re.M)
    assert commands, "docker/Dockerfile has no CMD in exec form"
    return json.loads(commands[-1])


def test_the_default_command_is_python_dash_m_of_a_project_module():
    command = default_command()
    assert command[:2] == ["python", "-m"], command
    module_file = ROOT / (command[2].replace(".", "/") + ".py")
    assert module_file.is_file(), f"{command[2]} is not a module of the project"
    tree = ast.parse(module_file.read_text())
    guards = [node for node in tree.body if isinstance(node, ast.If)
              and ast.unparse(node.test) in ("__name__ == '__main__'", '__name__ == "__main__"')]
    assert guards, f"{module_file.relative_to(ROOT)} has no `if __name__ == \"__main__\":`: python -m runs nothing"


def test_the_default_command_answers_help_as_the_image_runs_it(tmp_path):
    command = default_command()
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "FRAUDOPS_ENV_FILE": str(tmp_path / "none.env")}
    done = subprocess.run([sys.executable, *command[1:], "--help"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage:"), done.stdout[:300]
