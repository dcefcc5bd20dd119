"""The notebooks are committed clean (no outputs) and each has one "parameters" cell.

Executing them against the stack is tests/e2e/test_notebooks.py.
"""

from __future__ import annotations

import nbformat
import pytest

from tests.notebook_support import NOTEBOOK_NAMES, NOTEBOOKS_DIR, parameter_names, parameters_cell_index

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("name", NOTEBOOK_NAMES)
def test_notebook_is_committed_clean_with_a_parameters_cell(name):
    nb = nbformat.read(NOTEBOOKS_DIR / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    code_cells = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code_cells), \
        f"{name}.ipynb has outputs: strip them before committing"
    assert parameters_cell_index(nb) == 1, "the parameters cell comes right after the title"
    assert parameter_names(nb)


def test_notebooks_folder_holds_exactly_the_tested_notebooks():
    assert sorted(p.stem for p in NOTEBOOKS_DIR.glob("*.ipynb")) == NOTEBOOK_NAMES
