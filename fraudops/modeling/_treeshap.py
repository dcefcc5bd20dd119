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
