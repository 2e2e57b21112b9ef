"""Aggregation operators (``sum``, ``topk``, ``quantile``, ...) over a :class:`Vector`, all steps at once.

Rows are grouped once by their group labels; reductions then run as ``ufunc.reduceat`` over the rows
sorted by group, so the cost does not depend on the number of groups.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from query.errors import ExecutionError
from query.format import format_value_f
from query.range_funcs import quantile_of
from query.values import F64, Vector
from sotp.model import LABEL_NAME_RE, METRIC_NAME, Labels


def group_labels(lb: Labels, grouping: list[str], without: bool) -> Labels:
    """The output labels of ``lb``'s group: ``by`` keeps the listed labels, ``without`` drops them and the name."""
    if without:
        return lb.without(*grouping, METRIC_NAME)
    if not grouping:
        return Labels.from_sorted(())
    return lb.only(grouping)


def _groups(vec: Vector, grouping: list[str], without: bool) -> tuple[list[Labels], np.ndarray]:
    ids: dict[Labels, int] = {}
    gid = np.empty(len(vec.labels), dtype=np.intp)
    for i, lb in enumerate(vec.labels):
        g = group_labels(lb, grouping, without)
        gid[i] = ids.setdefault(g, len(ids))
    return list(ids), gid


def aggregate(op: str, vec: Vector, param: F64 | str | None, grouping: list[str], without: bool,
              check_size: Callable[[int, int], None] | None = None) -> Vector:
    """Evaluate ``op`` over ``vec``; ``param`` is k/q per step, or the label name of ``count_values``.

    ``check_size(rows, steps)`` refuses an output that grows past the sample limit (``count_values``
    makes a series per distinct value, which can be every cell of its input) before it is allocated.
    """
    n = vec.values.shape[1]
    if op == "count_values":
        assert isinstance(param, str)
        return _count_values(vec, param, grouping, without, check_size)
    if op in ("topk", "bottomk"):
        assert isinstance(param, np.ndarray)
        return _topk(vec, param, grouping, without, op == "topk")
    if not len(vec):
        return Vector.empty(n)
    glabels, gid = _groups(vec, grouping, without)
    order = np.argsort(gid, kind="stable")
    sorted_gid = gid[order]
    bounds = np.flatnonzero(np.r_[True, sorted_gid[1:] != sorted_gid[:-1]])
    vals, pres = vec.values[order], vec.present[order]
    count = np.add.reduceat(pres.astype(np.float64), bounds, axis=0)
    present = count > 0
    out: F64
    if op == "sum":
        out = np.add.reduceat(np.where(pres, vals, 0.0), bounds, axis=0)  # row order, like Go's loop
    elif op in ("avg", "stddev", "stdvar"):
        out = _running(op, vals, pres, bounds, len(order))
    elif op == "count":
        out = count
    elif op == "group":
        out = np.ones_like(count)
    elif op in ("min", "max"):
        filled = np.where(pres, vals, np.nan)
        out = (np.fmin if op == "min" else np.fmax).reduceat(filled, bounds, axis=0)
    elif op == "quantile":
        assert isinstance(param, np.ndarray)
        out = np.zeros_like(count)
        ends = np.r_[bounds[1:], len(order)]
        for g, (a, b) in enumerate(zip(bounds, ends, strict=True)):
            for j in np.flatnonzero(present[g]):
                col = vals[a:b, j][pres[a:b, j]]
                out[g, j] = quantile_of(float(param[j]), col)
    else:  # pragma: no cover - the parser only produces known operators
        raise ExecutionError(f"unknown aggregation {op}")
    labels = [glabels[int(sorted_gid[b])] for b in bounds]
    return Vector(labels, out, present)


def _running(op: str, vals: F64, pres: np.ndarray, bounds: np.ndarray, rows: int) -> F64:
    """2.42's running ``avg`` (incremental mean) and ``stddev``/``stdvar`` (Welford), member by member.

    Groups are seeded by their first present value (mean = value, variance 0), exactly as Prometheus
    does, so results match it bit for bit. One iteration per group rank, vectorised over groups and steps.
    """
    g, n = len(bounds), vals.shape[1]
    sizes = np.diff(np.r_[bounds, rows])
    count = np.zeros((g, n))
    mean = np.zeros((g, n))
    m2 = np.zeros((g, n))
    for r in range(int(sizes.max())):
        gs = np.flatnonzero(sizes > r)
        v = vals[bounds[gs] + r]
        p = pres[bounds[gs] + r]
        c = count[gs] + p
        first = p & (c == 1)
        later = p & (c > 1)
        mu = mean[gs]
        if op == "avg":
            inf = np.isinf(mu)
            skip = inf & ((np.isinf(v) & ((mu > 0) == (v > 0))) | (~np.isinf(v) & ~np.isnan(v)))
            new_mu = np.where(later & ~skip, mu + (v / c - mu / c), mu)
        else:
            delta = v - mu
            new_mu = np.where(later, mu + delta / c, mu)
            m2[gs] = np.where(later, m2[gs] + delta * (v - new_mu), m2[gs])
        mean[gs] = np.where(first, v, new_mu)
        count[gs] = c
    if op == "avg":
        return mean
    var = m2 / np.maximum(count, 1)
    return np.sqrt(var) if op == "stddev" else var


def _topk(vec: Vector, k_param: F64, grouping: list[str], without: bool, top: bool) -> Vector:
    n = vec.values.shape[1]
    if not len(vec):
        return Vector.empty(n)
    if (~np.isfinite(k_param) | (np.abs(k_param) >= 2.0**63)).any():
        bad = k_param[~np.isfinite(k_param) | (np.abs(k_param) >= 2.0**63)][0]
        raise ExecutionError(f"Scalar value {bad} overflows int64")
    k = np.trunc(k_param).astype(np.int64)
    _, gid = _groups(vec, grouping, without)
    selected = np.zeros_like(vec.present)
    vals = vec.values
    # category: absent 0, NaN 1 (Prometheus treats NaN as the smallest for topk and bottomk), value 2
    cat = np.where(vec.present, np.where(np.isnan(vals), 1, 2), 0)
    key = np.where(np.isnan(vals), 0.0, vals if top else -vals)
    for g in np.unique(gid):
        rows = np.flatnonzero(gid == g)
        kk = int(k[0])
        if len(rows) > kk > 0 and (k == kk).all():
            # fast path: when every step has k comparable values (not NaN, above -Inf), a partial
            # sort by value picks exactly the rows the full ordering would
            block = np.where(cat[rows] == 2, key[rows], -np.inf)
            if ((block > -np.inf).sum(axis=0) >= kk).all():
                best = np.argpartition(-block, kk - 1, axis=0)[:kk]
                sel = np.zeros((len(rows), n), dtype=bool)
                np.put_along_axis(sel, best, True, axis=0)
                selected[rows] = sel & vec.present[rows]
                continue
        order = np.lexsort((key[rows], cat[rows]), axis=0)  # ascending; best rows last
        rank = np.empty_like(order)
        np.put_along_axis(rank, order, np.arange(len(rows))[:, None].repeat(n, axis=1), axis=0)
        selected[rows] = (rank >= len(rows) - k[None, :]) & vec.present[rows]
    keep = np.flatnonzero(selected.any(axis=1))
    out = Vector([vec.labels[i] for i in keep], vals[keep], selected[keep])
    if n == 1 and len(keep):  # instant query: Prometheus lists each group's rows best first
        v = out.values[:, 0]
        s = np.where(np.isnan(v), -np.inf, v if top else -v)
        idx = np.argsort(-s, kind="stable")
        out = out.select_rows(idx)
        out.ordered = True
    return out


def _count_values(vec: Vector, label: str, grouping: list[str], without: bool,
                  check_size: Callable[[int, int], None] | None) -> Vector:
    if not LABEL_NAME_RE.match(label):
        raise ExecutionError(f"invalid label name {label!r}")
    n = vec.values.shape[1]
    by = grouping if without else [*grouping, label]
    counts: dict[Labels, np.ndarray] = {}
    for i, lb in enumerate(vec.labels):
        for j in np.flatnonzero(vec.present[i]):
            with_value = lb.with_(**{label: format_value_f(float(vec.values[i, j]))})
            g = group_labels(with_value, by, without)
            arr = counts.get(g)
            if arr is None:
                if check_size is not None:
                    check_size(len(counts) + 1, n)
                arr = counts[g] = np.zeros(n)
            arr[j] += 1
    labels = list(counts)
    if not labels:
        return Vector.empty(n)
    values = np.array([counts[lb] for lb in labels])
    return Vector(labels, values, values > 0)
