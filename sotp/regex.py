"""Prometheus's regular expressions: RE2 syntax and linear-time matching, fully anchored as ``^(?:re)$``.

Prometheus compiles label-matcher and ``label_replace`` regexes with Go's ``regexp`` (RE2 semantics:
no backtracking, so no ReDoS; ``(?i)`` allowed inside groups; ``.`` does not match a newline; ``$`` is
the end of the text). Python's ``re`` backtracks and holds the GIL while it does, so one hostile pattern
froze the whole server; SOTP uses Google's RE2 (the ``google-re2`` package) for every PromQL regex.
RE2 costs ~2 µs per call from Python, so the shapes that dominate real queries (a literal, an
alternation of literals, ``.*``, ``.+``) are answered without calling it; the results are the same.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

#: Characters that never have a meaning in RE2 syntax (a pattern made of these is a literal).
_PLAIN = re.compile(r"[A-Za-z0-9_:\-/ ,@=<>!%&'\"`~;#]*")


def _re2() -> Any:
    try:
        import re2  # type: ignore[import-untyped]  # google-re2 ships no type information
    except ImportError as err:  # pragma: no cover - a dependency of sotp[server]
        raise RuntimeError("PromQL regexes need the google-re2 package (pip install 'sotp[server]')") from err
    return re2


class PromRegex:
    """A compiled, anchored PromQL regex."""

    __slots__ = ("_any", "_literals", "_nonempty", "_rx", "pattern")

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        re2 = _re2()
        opts = re2.Options()
        opts.log_errors = False  # RE2 would print every rejected user pattern to stderr
        try:
            self._rx = re2.compile(f"^(?:{pattern})$", opts)
        except re2.error as err:
            msg = err.args[0].decode(errors="replace") if err.args and isinstance(err.args[0], bytes) else err
            raise ValueError(f"error parsing regexp: {msg}: `{pattern}`") from None
        self._literals: frozenset[str] | None = None
        self._any = self._nonempty = False
        if pattern in (".*", ".+"):
            self._any, self._nonempty = True, pattern == ".+"
        elif all(_PLAIN.fullmatch(p) for p in pattern.split("|")):
            self._literals = frozenset(pattern.split("|"))

    @property
    def groups(self) -> int:
        n: int = self._rx.groups
        return n

    @property
    def groupindex(self) -> dict[str, int]:
        return dict(self._rx.groupindex)

    def matches(self, value: str) -> bool:
        """Whether the whole of ``value`` matches."""
        if self._literals is not None:
            return value in self._literals
        if self._any:
            return "\n" not in value and (bool(value) or not self._nonempty)
        return self._rx.search(value) is not None

    def spans(self, value: str) -> list[tuple[int, int]] | None:
        """Group spans of a whole-text match (group 0 first; ``(-1, -1)`` for a group that did not take part)."""
        m = self._rx.search(value)
        if m is None:
            return None
        return [m.span(i) for i in range(self.groups + 1)]


@lru_cache(maxsize=256)  # bounded: a huge pattern can hold megabytes
def compile_prom(pattern: str) -> PromRegex:
    """Compile (cached) an anchored PromQL regex; ``ValueError`` with RE2's reason when it is invalid."""
    return PromRegex(pattern)
