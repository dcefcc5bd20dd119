"""The analysis notebooks as files: where they are and how their "parameters" cell is read."""

from __future__ import annotations

import ast
from pathlib import Path

NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOK_NAMES = ["01_explore_history", "02_compare_models", "03_drift_analysis", "04_live_monitoring",
                  "05_champion_challenger"]


def parameters_cell_index(nb) -> int:
    """Index of the cell tagged "parameters" (exactly one, a code cell)."""
    tagged = [i for i, cell in enumerate(nb.cells) if "parameters" in cell.metadata.get("tags", [])]
    assert len(tagged) == 1, f"expected one cell tagged 'parameters', found {len(tagged)}"
    assert nb.cells[tagged[0]].cell_type == "code"
    return tagged[0]


def parameter_names(nb) -> set[str]:
    """Names assigned in the parameters cell."""
    tree = ast.parse(nb.cells[parameters_cell_index(nb)].source)
    return {target.id for node in tree.body if isinstance(node, ast.Assign)
            for target in node.targets if isinstance(target, ast.Name)}
