"""Runs every ``tests/promql/*.test`` script on every storage backend: one test per ``eval`` line.

Each (script, backend) pair runs once, in order, and is cached; the per-line tests then report their
own outcome, so a failure names ``file.test:line``. PostgreSQL and TimescaleDB get a fresh schema per
script (and per ``clear``); a missing server skips locally and fails under CI=true.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sotp.storage import Storage, open_storage
from tests.conftest import IN_CI, STORAGE_BACKENDS, backend_dsn, backend_url, drop_schema, new_schema
from tests.promql.promqltest import Eval, load_file, run_script

HERE = Path(__file__).parent
SCRIPTS = sorted(HERE.glob("*.test"))
BACKENDS = STORAGE_BACKENDS

_cache: dict[tuple[str, str], dict[int, str | None]] = {}


def _cases() -> list[tuple[Path, Eval]]:
    out = []
    for path in SCRIPTS:
        for cmd in load_file(path):
            if isinstance(cmd, Eval):
                out.append((path, cmd))
    return out


CASES = _cases()


def _run(path: Path, backend: str, tmp: Path) -> dict[int, str | None]:
    key = (path.name, backend)
    if key in _cache:
        return _cache[key]
    counter = [0]
    schemas: list[str] = []

    async def factory() -> Storage:
        counter[0] += 1
        if backend == "memory":
            url = "memory://"
        elif backend == "sqlite":
            url = f"sqlite:///{tmp / f'{path.stem}-{counter[0]}.db'}"
        else:
            schemas.append(new_schema("sotp_promql"))
            url = backend_url(backend, backend_dsn(backend), schemas[-1])
        s = open_storage(url)
        await s.open()
        return s

    async def main() -> dict[int, str | None]:
        try:
            return await run_script(load_file(path), factory)
        finally:
            for schema in schemas:
                drop_schema(backend_dsn(backend), schema)

    _cache[key] = asyncio.run(main())
    return _cache[key]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize(("path", "ev"), CASES, ids=[f"{p.name}:{e.line}" for p, e in CASES])
def test_eval(path: Path, ev: Eval, backend: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    if backend in ("postgres", "timescaledb"):
        backend_dsn(backend)  # skips (fails under CI) before the script runs when the server is missing
    results = _run(path, backend, tmp_path_factory.getbasetemp())
    problem = results[ev.line]
    assert problem is None, f"{path.name}:{ev.line} {ev.title}: {problem}"


def test_scripts_exist() -> None:
    assert len(SCRIPTS) >= 5 and len(CASES) >= 200, (len(SCRIPTS), len(CASES), IN_CI)
