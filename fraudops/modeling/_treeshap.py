"""Path-dependent TreeSHAP for one tree and one row (Lundberg et al. 2018, Algorithm 2), compiled by numba.

The row enters only through ``hot``: for every node, the child the row follows (precomputed by
the caller with the model's own split rules, so categorical and missing-value splits are exact).
The path bookkeeping (extend, unwind, unwound sum) follows the reference implementation of the
``shap`` package; each level of the depth-first walk (an explicit stack, no recursion) works on its own row of
the path arrays.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def _extend(fi, zf, of, pw, depth, zero_fraction, one_fraction, feature):
    fi[depth] = feature
    zf[depth] = zero_fraction
    of[depth] = one_fraction
    pw[depth] = 1.0 if depth == 0 else 0.0
    for i in range(depth - 1, -1, -1):
        pw[i + 1] += one_fraction * pw[i] * (i + 1.0) / (depth + 1.0)
        pw[i] = zero_fraction * pw[i] * (depth - i) / (depth + 1.0)


@njit(cache=True, nogil=True)
def _unwind(fi, zf, of, pw, depth, index):
    one_fraction = of[index]
    zero_fraction = zf[index]
    next_one = pw[depth]
    for i in range(depth - 1, -1, -1):
        if one_fraction != 0.0:
            tmp = pw[i]
            pw[i] = next_one * (depth + 1.0) / ((i + 1.0) * one_fraction)
            next_one = tmp - pw[i] * zero_fraction * (depth - i) / (depth + 1.0)
        else:
            pw[i] = (pw[i] * (depth + 1.0)) / (zero_fraction * (depth - i))
    for i in range(index, depth):
        fi[i] = fi[i + 1]
        zf[i] = zf[i + 1]
        of[i] = of[i + 1]


@njit(cache=True, nogil=True)
def _unwound_sum(zf, of, pw, depth, index):
    one_fraction = of[index]
    zero_fraction = zf[index]
    next_one = pw[depth]
    total = 0.0
    for i in range(depth - 1, -1, -1):
        if one_fraction != 0.0:
            tmp = next_one * (depth + 1.0) / ((i + 1.0) * one_fraction)
            total += tmp
            next_one = pw[i] - tmp * zero_fraction * ((depth - i) / (depth + 1.0))
        else:
            total += (pw[i] / zero_fraction) / ((depth - i) / (depth + 1.0))
    return total


@njit(cache=True, nogil=True)
def _visit(left, right, is_leaf, feature, weight, value, hot, phi, fi, zf, of, pw, stack, top,
           node, level, depth, zero_fraction, one_fraction, parent_feature):
    """One node of the depth-first walk; pushes its children (cold first, so hot runs first)."""
    if level > 0:
        for i in range(depth + 1):
            fi[level, i] = fi[level - 1, i]
            zf[level, i] = zf[level - 1, i]
            of[level, i] = of[level - 1, i]
            pw[level, i] = pw[level - 1, i]
    _extend(fi[level], zf[level], of[level], pw[level], depth, zero_fraction, one_fraction, parent_feature)
    if is_leaf[node]:
        for i in range(1, depth + 1):
            w = _unwound_sum(zf[level], of[level], pw[level], depth, i)
            phi[fi[level, i]] += w * (of[level, i] - zf[level, i]) * value[node]
        return top
    hot_child = hot[node]
    cold_child = right[node] if hot_child == left[node] else left[node]
    incoming_zero, incoming_one = 1.0, 1.0
    split = feature[node]
    for k in range(depth + 1):
        if fi[level, k] == split:
            incoming_zero, incoming_one = zf[level, k], of[level, k]
            _unwind(fi[level], zf[level], of[level], pw[level], depth, k)
            depth -= 1
            break
    w = weight[node]
    for child, one in ((cold_child, 0.0), (hot_child, incoming_one)):
        stack[top, 0] = child
        stack[top, 1] = level + 1
        stack[top, 2] = depth + 1
        stack[top, 3] = split
        stack[top, 4] = weight[child] / w * incoming_zero
        stack[top, 5] = one
        top += 1
    return top


@njit(cache=True, nogil=True)
def tree_shap(left, right, is_leaf, feature, weight, value, hot, phi, size):
    """Add the row's SHAP values of one tree to ``phi`` (one entry per input column).

    Args:
        left, right: child indices per node; is_leaf: bool per node; feature: split column per node.
        weight: training rows reaching each node (cover); value: leaf values (output units).
        hot: the child this row follows at each node.
        phi: float64 array of the row's contributions, updated in place.
        size: tree depth + 3 (rows and columns of the path arrays).
    """
    fi = np.zeros((size, size), dtype=np.int64)
    zf = np.zeros((size, size))
    of = np.zeros((size, size))
    pw = np.zeros((size, size))
    stack = np.zeros((2 * size + 2, 6))  # node, level, depth, parent feature, zero, one fraction
    top = _visit(left, right, is_leaf, feature, weight, value, hot, phi, fi, zf, of, pw, stack, 0,
                 0, 0, 0, 1.0, 1.0, -1)
    while top > 0:
        top -= 1
        frame = stack[top]
        top = _visit(left, right, is_leaf, feature, weight, value, hot, phi, fi, zf, of, pw, stack, top,
                     int(frame[0]), int(frame[1]), int(frame[2]), frame[4], frame[5], int(frame[3]))


# --- every tree and every row in one compiled call ----------------------------------------------
# One row at a time, every one fraction is 0 or 1, so the helpers below are the ones above with
# their divisions by depth ratios taken from tables (``ratio[d, i] = (i + 1) / (d + 1)``,
# ``rest[d, i] = (d - i) / (d + 1)``) and their inverses: the same values to rounding.
@njit(cache=True, nogil=True)
def _ratio_tables(size):
    ratio = np.zeros((size + 1, size + 1))
    rest = np.zeros((size + 1, size + 1))
    inv_ratio = np.zeros((size + 1, size + 1))
    inv_rest = np.zeros((size + 1, size + 1))
    for d in range(size + 1):
        for i in range(d + 1):
            ratio[d, i] = (i + 1.0) / (d + 1.0)
            rest[d, i] = (d - i) / (d + 1.0)
            inv_ratio[d, i] = (d + 1.0) / (i + 1.0)
            inv_rest[d, i] = (d + 1.0) / (d - i) if d > i else 0.0
    return ratio, rest, inv_ratio, inv_rest


@njit(cache=True, nogil=True)
def _walk(left, right, is_leaf, feature, weight, value, hot, phi, fi, zf, of, pw, stack,
          ratio, rest, inv_ratio, inv_rest):
    """:func:`tree_shap`'s depth-first walk for one tree and row, helpers written inline."""
    top = 0
    node, level, depth, zero_fraction, one_fraction, parent_feature = 0, 0, 0, 1.0, 1.0, -1
    while True:
        if level > 0:
            for i in range(depth + 1):
                fi[level, i] = fi[level - 1, i]
                zf[level, i] = zf[level - 1, i]
                of[level, i] = of[level - 1, i]
                pw[level, i] = pw[level - 1, i]
        # extend
        fi[level, depth] = parent_feature
        zf[level, depth] = zero_fraction
        of[level, depth] = one_fraction
        pw[level, depth] = 1.0 if depth == 0 else 0.0
        for i in range(depth - 1, -1, -1):
            pw[level, i + 1] += one_fraction * pw[level, i] * ratio[depth, i]
            pw[level, i] = zero_fraction * pw[level, i] * rest[depth, i]
        if is_leaf[node]:
            leaf_value = value[node]
            for index in range(1, depth + 1):
                z = zf[level, index]
                total = 0.0
                if of[level, index] != 0.0:
                    next_one = pw[level, depth]
                    for i in range(depth - 1, -1, -1):
                        tmp = next_one * inv_ratio[depth, i]
                        total += tmp
                        next_one = pw[level, i] - tmp * z * rest[depth, i]
                else:
                    for i in range(depth - 1, -1, -1):
                        total += pw[level, i] * inv_rest[depth, i]
                    total /= z
                phi[fi[level, index]] += total * (of[level, index] - z) * leaf_value
        else:
            hot_child = hot[node]
            cold_child = right[node] if hot_child == left[node] else left[node]
            incoming_zero, incoming_one = 1.0, 1.0
            split = feature[node]
            for k in range(depth + 1):
                if fi[level, k] == split:
                    incoming_zero, incoming_one = zf[level, k], of[level, k]
                    # unwind path element k
                    next_one = pw[level, depth]
                    if incoming_one != 0.0:
                        for i in range(depth - 1, -1, -1):
                            tmp = pw[level, i]
                            pw[level, i] = next_one * inv_ratio[depth, i]
                            next_one = tmp - pw[level, i] * incoming_zero * rest[depth, i]
                    else:
                        inv_zero = 1.0 / incoming_zero
                        for i in range(depth - 1, -1, -1):
                            pw[level, i] = pw[level, i] * inv_zero * inv_rest[depth, i]
                    for i in range(k, depth):
                        fi[level, i] = fi[level, i + 1]
                        zf[level, i] = zf[level, i + 1]
                        of[level, i] = of[level, i + 1]
                    depth -= 1
                    break
            inv_w = incoming_zero / weight[node]
            stack[top, 0] = cold_child
            stack[top, 1] = level + 1
            stack[top, 2] = depth + 1
            stack[top, 3] = split
            stack[top, 4] = weight[cold_child] * inv_w
            stack[top, 5] = 0.0
            stack[top + 1, 0] = hot_child
            stack[top + 1, 1] = level + 1
            stack[top + 1, 2] = depth + 1
            stack[top + 1, 3] = split
            stack[top + 1, 4] = weight[hot_child] * inv_w
            stack[top + 1, 5] = incoming_one
            top += 2
        if top == 0:
            return
        top -= 1
        node, level, depth = int(stack[top, 0]), int(stack[top, 1]), int(stack[top, 2])
        parent_feature, zero_fraction, one_fraction = int(stack[top, 3]), stack[top, 4], stack[top, 5]


@njit(cache=True, nogil=True)
def _follows(x, node, left, right, feature, threshold, is_categorical, missing_left, bitset_row,
             known_row, raw_bitsets, known_bitsets):
    """The child a row ``x`` follows at ``node``: HistGradientBoosting's predictor rules, exactly.

    NaN is missing; a categorical value that is negative or not a known training category is
    missing too; missing goes where ``missing_left`` says.
    """
    value = x[feature[node]]
    if np.isnan(value):
        return left[node] if missing_left[node] else right[node]
    if is_categorical[node]:
        if value < 0.0 or value >= 32.0 * raw_bitsets.shape[1]:
            return left[node] if missing_left[node] else right[node]
        code = np.int64(value)
        word, bit = code // 32, np.uint32(code % 32)
        if (raw_bitsets[bitset_row[node], word] >> bit) & np.uint32(1):
            return left[node]
        if known_row[node] >= 0 and (known_bitsets[known_row[node], word] >> bit) & np.uint32(1):
            return right[node]
        return left[node] if missing_left[node] else right[node]
    return left[node] if value <= threshold[node] else right[node]


@njit(cache=True, nogil=True)
def forest_shap(X, tree_start, left, right, is_leaf, feature, weight, value, threshold, is_categorical,
                missing_left, bitset_row, known_row, raw_bitsets, known_bitsets, size, phi):
    """Add every row's SHAP values of every tree to ``phi`` (rows, columns), in one call.

    Trees are stored back to back: tree ``t`` holds nodes ``tree_start[t]:tree_start[t + 1]``;
    ``left``/``right`` are local to the tree (0 = the tree's root), ``bitset_row`` indexes
    ``raw_bitsets`` globally and ``known_row`` indexes ``known_bitsets`` (-1: none). ``size``:
    the deepest tree's depth + 3. The walk per (tree, row) is :func:`tree_shap`'s with the table helpers.
    """
    n_trees = len(tree_start) - 1
    fi = np.zeros((size, size), dtype=np.int64)
    zf = np.zeros((size, size))
    of = np.zeros((size, size))
    pw = np.zeros((size, size))
    stack = np.zeros((2 * size + 2, 6))
    largest = 0
    for t in range(n_trees):
        largest = max(largest, tree_start[t + 1] - tree_start[t])
    hot = np.zeros(largest, dtype=np.int64)
    ratio, rest, inv_ratio, inv_rest = _ratio_tables(size)
    for t in range(n_trees):
        start, stop = tree_start[t], tree_start[t + 1]
        t_left, t_right, t_leaf = left[start:stop], right[start:stop], is_leaf[start:stop]
        t_feature, t_weight, t_value = feature[start:stop], weight[start:stop], value[start:stop]
        t_threshold, t_categorical = threshold[start:stop], is_categorical[start:stop]
        t_missing, t_bitset, t_known = missing_left[start:stop], bitset_row[start:stop], known_row[start:stop]
        for r in range(X.shape[0]):
            x = X[r]
            for node in range(stop - start):
                if not t_leaf[node]:
                    hot[node] = _follows(x, node, t_left, t_right, t_feature, t_threshold, t_categorical,
                                         t_missing, t_bitset, t_known, raw_bitsets, known_bitsets)
            _walk(t_left, t_right, t_leaf, t_feature, t_weight, t_value, hot, phi[r], fi, zf, of, pw, stack,
                  ratio, rest, inv_ratio, inv_rest)
