"""`pip install .` into a clean virtualenv: the wheel has the packages, their data files and a
working console script for each main command.

The project's files (pyproject.toml, README.md, the packages; what git tracks or would track) are
copied to a temporary folder, so the build leaves nothing in the checkout. The new venv is made
from the base interpreter without the project; the pinned third-party packages come from this
venv's site-packages through a .pth line (a plain folder on sys.path: its own .pth files, among
them the editable install's finder, are not run), so `pip install --no-deps` builds and installs
only the project (setuptools comes from the build isolation, PyPI or pip's cache) and `pip check`
tells whether the declared pins are the installed ones.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PIP_CACHE = os.environ.get("PIP_CACHE_DIR") or str(Path.home() / ".cache" / "pip")  # setuptools for the build


def project_files() -> list[str]:
    """pyproject.toml, README.md and the installed packages' files (tracked or not ignored)."""
    packages = [p.rstrip("*") for p in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]]
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "pyproject.toml", "README.md",
                             *packages], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    return [f for f in listed if "__pycache__" not in f and (ROOT / f).is_file()]


def run(command: list, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in command], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(cwd), "FRAUDOPS_ENV_FILE": str(cwd / "none.env"),
                               "FRAUDOPS_STATE_DIR": str(cwd / "state"), "PIP_CACHE_DIR": PIP_CACHE})


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv folder, work folder): the project installed with `pip install --no-deps <copy>`."""
    tmp = tmp_path_factory.mktemp("packaging")
    source, work, venv = tmp / "source", tmp / "work", tmp / "venv"
    for name in project_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name)
    work.mkdir()
    base_python = Path(sys.base_prefix) / "bin" / "python3"
    done = run([base_python, "-m", "venv", venv], work)
    assert done.returncode == 0, done.stderr
    python = venv / "bin" / "python"
    site = run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], work).stdout.strip()
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    Path(site, "_pinned_packages.pth").write_text("\n".join(sorted(ours)) + "\n")

    before = run([python, "-c", "import fraudops"], work)
    assert before.returncode != 0 and "No module named 'fraudops'" in before.stderr, before.stderr
    assert run([python, "-c", "import mlflow, pandas, pyspark"], work).returncode == 0

    done = run([python, "-m", "pip", "install", "--no-deps", "--disable-pip-version-check", source], work, 600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return venv, work


def test_every_console_script_answers_help(installed):
    venv, work = installed
    scripts = PYPROJECT["project"]["scripts"]
    failures = {}
    for script in scripts:
        done = run([venv / "bin" / script, "--help"], work)
        if done.returncode != 0 or "usage:" not in done.stdout:
            failures[script] = (done.returncode, (done.stdout + done.stderr)[-600:])
    assert not failures, failures
    assert len(scripts) >= 20


def test_the_installed_packages_and_their_data_files_are_used(installed):
    venv, work = installed
    probe = """
import json, fraudops, fraudops.db, portal.web, expectations.suites
print(json.dumps({
    "fraudops": fraudops.__file__,
    "migrations": sorted(p.name for p in fraudops.db.MIGRATIONS_DIR.glob("*.sql")),
    "templates": sorted(p.name for p in portal.web.TEMPLATES_DIR.glob("*.html")),
    "static": sorted(p.name for p in portal.web.STATIC_DIR.iterdir()),
    "suites": sorted(p.name for p in (expectations.suites.GX_DIR / "expectations").glob("*.json")),
    "gx_config": (expectations.suites.GX_DIR / "great_expectations.yml").is_file(),
}))
"""
    done = run([venv / "bin" / "python", "-c", probe], work)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert Path(found["fraudops"]).is_relative_to(venv), found["fraudops"]  # the wheel's, not the checkout's
    assert found["migrations"] == sorted(p.name for p in (ROOT / "fraudops/contract/migrations").glob("*.sql"))
    assert found["templates"] == sorted(p.name for p in (ROOT / "portal/templates").glob("*.html"))
    assert found["static"] == sorted(p.name for p in (ROOT / "portal/static").iterdir())
    assert found["suites"] == sorted(p.name for p in (ROOT / "expectations/gx/expectations").glob("*.json"))
    assert found["gx_config"]


def test_the_declared_pins_are_satisfied_by_the_pinned_working_set(installed):
    venv, work = installed
    done = run([venv / "bin" / "python", "-m", "pip", "check", "--disable-pip-version-check"], work)
    assert done.returncode == 0, done.stdout + done.stderr
    shown = run([venv / "bin" / "python", "-m", "pip", "show", "fraud-detection-mlops"], work).stdout
    requires = next(line for line in shown.splitlines() if line.startswith("Requires:"))
    assert "numba" in requires and "threadpoolctl" in requires and "starlette" in requires
    assert "pytest" not in requires and "selenium" not in requires
