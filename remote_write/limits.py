"""Label-set checks shared by the push gateway and JSON ingest (remote write checks in its codec).

Names must follow Prometheus's rules, names starting with ``__`` other than ``__name__`` are reserved,
and the counts and byte lengths of ``limits`` apply (400, naming the setting to raise).
"""

from __future__ import annotations

from sotp.config import Limits
from sotp.errors import DecodeError, LimitExceeded
from sotp.model import METRIC_NAME, InvalidLabels, Labels


def check_labels(labels: Labels, limits: Limits, where: str) -> None:
    """Raise :class:`DecodeError` or :class:`LimitExceeded` (400) when ``labels`` may not be stored.

    ``where`` says which input it was (``metrics.cpu[2]``, ``line 7``) and starts every message.
    """
    if labels.name is None:
        raise DecodeError(f"{where}: series {labels} has no metric name")
    try:
        labels.validate()
    except InvalidLabels as err:
        raise DecodeError(f"{where}: {err}") from None
    if len(labels) > limits.max_labels_per_series:
        raise LimitExceeded(
            f"{where}: series {labels} has {len(labels)} labels, limit {limits.max_labels_per_series} "
            "(limits.max_labels_per_series)"
        )
    for name, value in labels.items_tuple():
        if name.startswith("__") and name != METRIC_NAME:
            raise DecodeError(f"{where}: label name {name!r} is reserved (names starting with __)")
        if len(name.encode()) > limits.max_label_name_length:
            raise LimitExceeded(
                f"{where}: label name {name[:64]!r}... longer than {limits.max_label_name_length} bytes "
                "(limits.max_label_name_length)"
            )
        if len(value.encode()) > limits.max_label_value_length:
            raise LimitExceeded(
                f"{where}: value of label {name!r} longer than {limits.max_label_value_length} bytes "
                "(limits.max_label_value_length)"
            )
