"""requirements.txt and conda.yaml pin exactly the same packages at the same versions."""

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
REQUIRED = {"mlflow", "pyspark", "scikit-learn", "hyperopt", "pandas", "psycopg2-binary", "redis",
            "evidently", "great-expectations", "pytest"}


def _parse(lines):
    pins = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"not an exact pin: {line!r}"
            pins[name.strip().lower()] = version.strip()
    return pins


def requirements_pins():
    return _parse((ROOT / "requirements.txt").read_text().splitlines())


def conda_pins():
    env = yaml.safe_load((ROOT / "conda.yaml").read_text())
    pip_sections = [d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d]
    assert len(pip_sections) == 1, "conda.yaml needs exactly one pip section"
    return _parse(pip_sections[0])


@pytest.mark.unit
def test_conda_and_requirements_pin_the_same_versions():
    assert conda_pins() == requirements_pins()


@pytest.mark.unit
def test_required_packages_are_pinned():
    assert set(requirements_pins()) >= REQUIRED


@pytest.mark.unit
def test_pandas_below_3():
    assert requirements_pins()["pandas"].startswith("2.")
