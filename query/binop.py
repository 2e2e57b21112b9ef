"""Binary operators: arithmetic, comparisons (filter or ``bool``), set operators and vector matching.

Vector/vector matching follows Prometheus 2.42 ``VectorBinop``: the "one" side must have unique match
signatures at every step (else 422 ``found duplicate series for the match group``), one-to-one matching
allows one left series per signature, and ``group_left``/``group_right`` copy the ``include`` labels
from the one side. Everything is computed for all steps at once over matched row pairs.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from query import ast
from query.errors import ExecutionError
from query.gomath import go_pow
from query.values import F64, B, Scalar, Vector, drop_name, normalize
from sotp.model import METRIC_NAME, Labels

ARITH: dict[str, Callable[[F64, F64], F64]] = {
    "+": np.add,
    "-": np.subtract,
    "*": np.multiply,
    "/": np.divide,
    "%": np.fmod,  # Go's math.Mod: the sign of the dividend
    "^": go_pow,  # Go's math.Pow, not C's pow (they differ in the last bit)
    "atan2": np.arctan2,
}
#: Operators after which the metric name is dropped; 2.42 keeps it for ``atan2`` (``shouldDropMetricName``).
DROPS_NAME = frozenset({"+", "-", "*", "/", "%", "^"})
COMPARE: dict[str, Callable[[F64, F64], B]] = {
    "==": np.equal,
    "!=": np.not_equal,
    ">": np.greater,
    "<": np.less,
    ">=": np.greater_equal,
    "<=": np.less_equal,
}


def scalar_scalar(op: str, a: F64, b: F64) -> Scalar:
    if op in ARITH:
        return Scalar(np.asarray(ARITH[op](a, b), dtype=np.float64))
    return Scalar(COMPARE[op](a, b).astype(np.float64))  # the parser requires bool here


def vector_scalar(node: ast.Binary, vec: Vector, s: F64, scalar_left: bool) -> Vector:
    op = node.op
    v = vec.values
    lv, rv = (s[None, :], v) if scalar_left else (v, s[None, :])
    if op in ARITH:
        labels = drop_name(vec.labels) if op in DROPS_NAME else list(vec.labels)
        return normalize(Vector(labels, np.asarray(ARITH[op](lv, rv)), vec.present.copy()))
    keep = COMPARE[op](lv, rv)
    if node.return_bool:
        return normalize(Vector(drop_name(vec.labels), keep.astype(np.float64), vec.present.copy()))
    return Vector(list(vec.labels), v, vec.present & keep, ordered=False)


def _signature(node: ast.Binary) -> Callable[[Labels], tuple[tuple[str, str], ...]]:
    if node.on:
        names = sorted(set(node.matching))
        return lambda lb: tuple((n, lb.get(n) or "") for n in names)
    drop = (*node.matching, METRIC_NAME)
    return lambda lb: lb.without(*drop).items_tuple()


def _sig_index(sigs: list[tuple[tuple[str, str], ...]]) -> tuple[dict[tuple[tuple[str, str], ...], int], np.ndarray]:
    ids: dict[tuple[tuple[str, str], ...], int] = {}
    arr = np.fromiter((ids.setdefault(s, len(ids)) for s in sigs), dtype=np.intp, count=len(sigs))
    return ids, arr


def _any_by_sig(present: B, sig: np.ndarray, nsig: int) -> np.ndarray:
    out = np.zeros((nsig, present.shape[1]), dtype=np.int64)
    if len(sig):
        np.add.at(out, sig, present.astype(np.int64))
    return out


def _matched(count: np.ndarray, idx: np.ndarray, shape: tuple[int, ...]) -> B:
    """Per row and step: does the other side have a series with this row's signature?"""
    if count.shape[0] == 0 or len(idx) == 0:
        return np.zeros(shape, dtype=bool)
    return np.asarray(np.where(idx[:, None] >= 0, count[np.maximum(idx, 0)] > 0, False), dtype=bool)


def set_op(node: ast.Binary, lhs: Vector, rhs: Vector) -> Vector:
    sig = _signature(node)
    lsig = [sig(lb) for lb in lhs.labels]
    rsig = [sig(lb) for lb in rhs.labels]
    if node.op in ("and", "unless"):
        ids, rs = _sig_index(rsig)
        rcount = _any_by_sig(rhs.present, rs, len(ids))
        li = np.fromiter((ids.get(s, -1) for s in lsig), dtype=np.intp, count=len(lsig))
        matched = _matched(rcount, li, lhs.present.shape)
        keep = lhs.present & (matched if node.op == "and" else ~matched)
        return Vector(list(lhs.labels), lhs.values, keep)
    ids, ls = _sig_index(lsig)
    lcount = _any_by_sig(lhs.present, ls, len(ids))
    ri = np.fromiter((ids.get(s, -1) for s in rsig), dtype=np.intp, count=len(rsig))
    taken = _matched(lcount, ri, rhs.present.shape)
    rkeep = rhs.present & ~taken
    out = Vector(
        list(lhs.labels) + list(rhs.labels),
        np.concatenate([lhs.values, rhs.values]),
        np.concatenate([lhs.present, rkeep]),
    )
    return normalize(out)


def _result_labels(node: ast.Binary, many: Labels, one: Labels) -> Labels:
    items = dict(many.items_tuple())
    if node.op in DROPS_NAME or node.return_bool:
        items.pop(METRIC_NAME, None)
    if node.card is ast.Card.ONE_TO_ONE:
        if node.on:
            keep = set(node.matching)
            items = {k: v for k, v in items.items() if k in keep}
        else:
            for n in node.matching:
                items.pop(n, None)
    for n in node.include:
        v = one.get(n)
        if v:
            items[n] = v
        else:
            items.pop(n, None)
    return Labels(items)


SizeCheck = Callable[[int, int], None]


def vector_vector(node: ast.Binary, lhs: Vector, rhs: Vector, check_size: SizeCheck | None = None) -> Vector:
    """``lhs op rhs``; ``check_size(rows, steps)`` refuses the matched pairs before they are allocated."""
    if node.op in ast.SET_OPS:
        return set_op(node, lhs, rhs)
    n = lhs.values.shape[1]
    swap = node.card is ast.Card.ONE_TO_MANY
    many, one = (rhs, lhs) if swap else (lhs, rhs)
    if not len(many) or not len(one):
        return Vector.empty(n)
    active = np.asarray(many.present.any(axis=0) & one.present.any(axis=0), dtype=bool)
    sig = _signature(node)
    ids, osig = _sig_index([sig(lb) for lb in one.labels])
    ocount = _any_by_sig(one.present, osig, len(ids))
    dup = (ocount > 1) & active[None, :]
    if dup.any():
        g = int(np.flatnonzero(dup.any(axis=1))[0])
        side = "left" if swap else "right"
        rows = [one.labels[i] for i in np.flatnonzero(osig == g)]
        raise ExecutionError(
            f"found duplicate series for the match group {_fmt_sig(ids, g)} "
            f"on the {side} hand-side of the operation: [{', '.join(map(str, rows[:2]))}];"
            "many-to-many matching not allowed: matching labels must be unique on one side"
        )
    by_sig: dict[int, list[int]] = {}
    for r, g in enumerate(osig):
        by_sig.setdefault(int(g), []).append(r)
    msig = np.fromiter((ids.get(sig(lb), -1) for lb in many.labels), dtype=np.intp, count=len(many))
    mi: list[int] = []
    oi: list[int] = []
    for i, g in enumerate(msig):
        if g >= 0:
            for r in by_sig[int(g)]:
                mi.append(i)
                oi.append(r)
    if not mi:
        return Vector.empty(n)
    if check_size is not None:
        check_size(len(mi), n)
    ma, oa = np.asarray(mi, dtype=np.intp), np.asarray(oi, dtype=np.intp)
    mask = many.present[ma] & one.present[oa]
    vl, vr = many.values[ma], one.values[oa]
    if swap:
        vl, vr = vr, vl
    if node.op in ARITH:
        values = np.asarray(ARITH[node.op](vl, vr))
    else:
        keep = COMPARE[node.op](vl, vr)
        if node.return_bool:
            values = keep.astype(np.float64)
        else:
            values = vl
            mask = mask & keep
    if node.card is ast.Card.ONE_TO_ONE:
        # counted after filtering, as in Prometheus: a left series dropped by a comparison is no match
        per_sig = _any_by_sig(mask, msig[ma], len(ids))
        if (per_sig > 1).any():
            raise ExecutionError(
                "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)"
            )
    labels = [_result_labels(node, many.labels[a], one.labels[b]) for a, b in zip(mi, oi, strict=True)]
    kept = np.flatnonzero(mask.any(axis=1))
    out = Vector([labels[i] for i in kept], values[kept], mask[kept])
    try:
        return normalize(out)
    except ExecutionError:
        if node.card is ast.Card.ONE_TO_ONE:
            raise
        raise ExecutionError("multiple matches for labels: grouping labels must ensure unique matches") from None


def _fmt_sig(ids: dict[tuple[tuple[str, str], ...], int], g: int) -> str:
    for s, i in ids.items():
        if i == g:
            return "{" + ", ".join(f'{k}="{v}"' for k, v in s if v) + "}"
    return "{}"
