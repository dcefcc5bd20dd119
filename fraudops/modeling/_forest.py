"""The raw prediction of a flattened HistGradientBoosting forest, compiled by numba.

Trees are laid out as in ``fraudops.modeling.explain._flat_forest`` (the TreeSHAP explainer's
layout); which child a row follows is ``_treeshap._follows``, the predictor's own rules. The sum
per row runs in the predictor's order (baseline, then tree 1, 2, ...), so the result is the
float64 sklearn's ``_raw_predict`` gives, bit for bit (fraudops.modeling.compiled checks it).
"""

from __future__ import annotations

from numba import njit

from fraudops.modeling._treeshap import _follows


@njit(cache=True, nogil=True)
def forest_raw_predict(X, tree_start, left, right, is_leaf, feature, value, threshold, is_categorical,
                       missing_left, bitset_row, known_row, raw_bitsets, known_bitsets, baseline, out):
    """``out[r]`` = baseline + the leaf value each tree gives row ``X[r]``, summed tree by tree.

    Nodes are addressed globally (tree start + the tree's local child index): no array slices
    per tree, which cost more than the walk itself.
    """
    n_trees = len(tree_start) - 1
    for r in range(X.shape[0]):
        x = X[r]
        total = 0.0
        total += baseline
        for t in range(n_trees):
            start = tree_start[t]
            node = start
            while not is_leaf[node]:
                node = start + _follows(x, node, left, right, feature, threshold, is_categorical, missing_left,
                                        bitset_row, known_row, raw_bitsets, known_bitsets)
            total += value[node]
        out[r] = total
