"""pyproject.toml declares what a wheel of the project needs: every third-party package its
packages import (pinned as requirements.txt pins it), the files its code reads beside its modules,
and console scripts that name real functions. tests/integration/test_pip_install.py installs it.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

from tests.unit.test_pins import requirements_pins

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]
# folders whose files the code reads next to its modules (Path(__file__) / ...: fraudops/db.py
# MIGRATIONS_DIR, portal/web.py TEMPLATES_DIR and STATIC_DIR, expectations/suites.py GX_DIR)
DATA_FOLDERS = {"fraudops.contract": ["migrations"], "portal": ["templates", "static"], "expectations": ["gx"]}


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(requirements: list[str]) -> dict[str, str]:
    parsed = {}
    for line in requirements:
        name, sep, version = line.partition("==")
        assert sep, f"pyproject.toml: {line!r} is not an exact pin"
        parsed[normalized(name)] = version
    return parsed


def packages() -> list[str]:
    """Top-level packages setuptools installs (tool.setuptools.packages.find include)."""
    patterns = [p.rstrip("*") for p in SETUPTOOLS["packages"]["find"]["include"]]
    return sorted(d.name for d in ROOT.iterdir() if d.name in patterns and (d / "__init__.py").is_file())


def third_party_imports() -> dict[str, set[str]]:
    """Top-level module -> files of the installed packages that import it (absolute imports
    anywhere in a file, function-local ones included), stdlib and the project's own left out."""
    own = set(packages())
    found: dict[str, set[str]] = {}
    for package in own:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for top in {name.split(".")[0] for name in names}:
                    if top not in sys.stdlib_module_names and top not in own and top != "__future__":
                        found.setdefault(top, set()).add(str(path.relative_to(ROOT)))
    return found


def test_every_third_party_import_is_a_declared_dependency():
    declared = set(pins(PROJECT["dependencies"]))
    distributions = packages_distributions()
    undeclared = {}
    for module, files in sorted(third_party_imports().items()):
        providers = {normalized(d) for d in distributions.get(module, [])}
        if not providers & declared:
            undeclared[module] = (sorted(providers) or "not installed", sorted(files)[:3])
    assert not undeclared, f"imported but not in [project.dependencies] (module: distributions, files): {undeclared}"


def test_the_scan_sees_the_imports_it_must_see():
    imports = third_party_imports()
    # imported inside functions or by a single module: a scan of top-level imports would miss them
    assert {"numba", "threadpoolctl", "starlette", "mlflow", "pyspark", "cel"} <= set(imports)
    assert "fraudops/modeling/model.py" in imports["threadpoolctl"]


def test_dependencies_and_the_dev_extra_are_requirements_txt_split_in_two():
    runtime, dev = pins(PROJECT["dependencies"]), pins(PROJECT["optional-dependencies"]["dev"])
    assert not set(runtime) & set(dev), set(runtime) & set(dev)
    requirements = {normalized(name): version for name, version in requirements_pins().items()}
    assert {**runtime, **dev} == requirements


def test_test_and_lint_tools_are_not_runtime_dependencies():
    runtime = set(pins(PROJECT["dependencies"]))
    assert not runtime & {"pytest", "selenium", "ruff", "hypothesis", "pytest-timeout", "ipykernel"}


@pytest.mark.parametrize(("package", "folders"), sorted(DATA_FOLDERS.items()))
def test_every_file_the_code_reads_beside_its_modules_is_package_data(package, folders):
    base = ROOT / package.replace(".", "/")
    patterns = SETUPTOOLS["package-data"][package]
    covered = {path for pattern in patterns for path in base.glob(pattern)}
    files = {path for folder in folders for path in (base / folder).rglob("*")
             if path.is_file() and "__pycache__" not in path.parts}
    assert files, f"{package}: nothing under {folders}"
    assert files <= covered, f"not in package-data of {package}: {sorted(str(p.relative_to(base)) for p in files - covered)}"


def test_console_scripts_name_functions_of_the_installed_packages():
    scripts = PROJECT["scripts"]
    assert {"fraudops-scoring-job", "fraudops-producer", "fraudops-decisions", "fraudops-portal", "fraudops-rules",
            "fraudops-pipeline", "fraudops-materialize", "fraudops-health"} <= set(scripts)
    for script, target in scripts.items():
        module, _, function = target.partition(":")
        assert module.split(".")[0] in packages(), f"{script}: {module} is not an installed package"
        path = ROOT / (module.replace(".", "/") + ".py")
        tree = ast.parse(path.read_text())
        defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}
        defined |= {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
        assert function in defined, f"{script}: {module} defines no {function}"
