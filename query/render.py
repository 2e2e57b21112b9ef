"""JSON bodies of the query endpoints, written as text (a matrix of 10k points is a hot path)."""

from __future__ import annotations

import json

import numpy as np

from query.engine import MatrixValue, QueryResult
from query.format import format_sample_value, format_timestamp
from query.values import Scalar, String, Vector
from sotp.model import Labels


def labels_json(lb: Labels) -> str:
    return json.dumps(dict(lb.items_tuple()), separators=(",", ":"), ensure_ascii=False)


def _point(t_ms: int, v: float) -> str:
    return f'[{format_timestamp(t_ms)},"{format_sample_value(v)}"]'


def _series(lb: Labels, ts: list[int], vs: list[float]) -> str:
    pts = ",".join([_point(t, v) for t, v in zip(ts, vs, strict=True)])
    return f'{{"metric":{labels_json(lb)},"values":[{pts}]}}'


def _series_at(lb: Labels, times: list[str], at: list[int], vs: list[float]) -> str:
    """A series of a range query: ``times`` are the steps formatted once for every series."""
    fmt = format_sample_value
    pts = ",".join([f'[{times[j]},"{fmt(v)}"]' for j, v in zip(at, vs, strict=True)])
    return f'{{"metric":{labels_json(lb)},"values":[{pts}]}}'


def render_data(res: QueryResult) -> str:
    """The ``data`` object of a successful query or query_range response."""
    v = res.value
    steps = res.steps
    if isinstance(v, String):
        return f'{{"resultType":"string","result":[{format_timestamp(int(steps[0]))},{json.dumps(v.value)}]}}'
    if isinstance(v, MatrixValue):
        order = sorted(range(len(v.labels)), key=lambda i: v.labels[i].items_tuple())
        body = ",".join(_series(v.labels[i], v.ts[i].tolist(), v.vs[i].tolist()) for i in order)
        return f'{{"resultType":"matrix","result":[{body}]}}'
    if isinstance(v, Scalar):
        if not res.is_range:
            return f'{{"resultType":"scalar","result":{_point(int(steps[0]), float(v.values[0]))}}}'
        body = _series(Labels.from_sorted(()), steps.tolist(), v.values.tolist())
        return f'{{"resultType":"matrix","result":[{body}]}}'
    assert isinstance(v, Vector)
    if res.is_range:
        rows = [i for i in range(len(v.labels)) if v.present[i].any()]
        rows.sort(key=lambda i: v.labels[i].items_tuple())
        times = [format_timestamp(t) for t in steps.tolist()]
        parts = []
        for i in rows:
            at = np.flatnonzero(v.present[i])
            parts.append(_series_at(v.labels[i], times, at.tolist(), v.values[i][at].tolist()))
        return f'{{"resultType":"matrix","result":[{",".join(parts)}]}}'
    t = format_timestamp(int(steps[0]))
    rows = [int(i) for i in np.flatnonzero(v.present[:, 0])] if len(v.labels) else []
    if not v.ordered:
        rows.sort(key=lambda i: v.labels[i].items_tuple())
    body = ",".join(
        f'{{"metric":{labels_json(v.labels[i])},"value":[{t},"{format_sample_value(float(v.values[i, 0]))}"]}}'
        for i in rows
    )
    return f'{{"resultType":"vector","result":[{body}]}}'
