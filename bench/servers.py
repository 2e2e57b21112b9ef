"""Processes the storage benchmarks measure: the real ``sotp serve`` (via its CLI) and Debian's Prometheus 2.42,
each on fresh storage, plus the SOTP storage backends (a fresh SQLite file, PostgreSQL schema or TimescaleDB
database per run, removed afterwards).

TimescaleDB gets a fresh *database* rather than a schema: the extension exists once per database, in the
schema that created it, so a second schema of a shared database would depend on where an earlier run put it.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
BACKENDS = ("sqlite", "postgresql", "timescaledb")
DEFAULT_PG = os.environ.get("SOTP_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
DEFAULT_TIMESCALE = os.environ.get("SOTP_TEST_TIMESCALE_DSN", "postgresql://postgres@127.0.0.1:5433/test")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """A started server process: its HTTP base URL, its log, /proc readings, and a clean stop."""

    name: str
    proc: subprocess.Popen[bytes]
    base: str
    log: Path

    @property
    def write_url(self) -> str:
        return f"{self.base}/api/v1/write"

    def rss_mib(self) -> float:
        """Resident size of the server and its child processes (``sotp serve --workers N`` forks N)."""
        return sum(process_rss_mib(pid) for pid in process_tree(self.proc.pid))

    def cpu(self) -> dict[int, float]:
        """CPU seconds so far of the server and each of its live child processes, by pid."""
        return {pid: process_cpu_s(pid) for pid in process_tree(self.proc.pid)}

    def cpu_since(self, before: dict[int, float]) -> float:
        """CPU seconds spent since ``before`` (a :meth:`cpu` reading) by the processes alive now; a child that
        exited in between takes its time with it, so this is a lower bound."""
        return sum(now - before.get(pid, 0.0) for pid, now in self.cpu().items())

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} before it was ready; "
                                   f"log {self.log}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.base}/-/ready", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready after {timeout_s:.0f} s; log {self.log}:\n{self.log_tail()}")

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout_s: float = 60.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout_s``."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _start(name: str, argv: list[str], port: int, workdir: Path) -> Server:
    log = workdir / f"{name}.log"
    with open(log, "ab") as fh:
        proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT, cwd=workdir)
    server = Server(name, proc, f"http://127.0.0.1:{port}", log)
    try:
        server.wait_ready()
    except RuntimeError:
        server.stop()
        raise
    return server


def sotp_command() -> list[str]:
    """The installed ``sotp`` entry point of this checkout's venv (``python -m sotp`` without one)."""
    script = Path(sys.executable).parent / "sotp"
    return [str(script)] if script.exists() else [sys.executable, "-m", "sotp"]


def start_sotp(storage_url: str, workdir: Path, name: str = "sotp", extra: Sequence[str] = ()) -> Server:
    """``sotp serve --listen 127.0.0.1:<free port> --storage <url> [extra…]``, the real server, ready to take
    writes."""
    port = free_port()
    argv = [*sotp_command(), "serve", "--storage", storage_url, "--listen", f"127.0.0.1:{port}", *extra]
    return _start(name, argv, port, workdir)


def start_prometheus(workdir: Path, config: str = "global:\n  scrape_interval: 1h\n",
                     name: str = "prometheus", extra_args: tuple[str, ...] = ()) -> Server:
    """Prometheus 2.42 with the remote-write receiver on, a fresh data dir under ``workdir``
    (``<workdir>/<name>-tsdb-*``); ``extra_args`` are further flags (``--web.enable-admin-api``)."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / f"{name}.yml").write_text(config)
    port = free_port()
    data_dir = workdir / f"{name}-tsdb-{uuid.uuid4().hex[:8]}"
    argv = [PROMETHEUS, f"--config.file={workdir / f'{name}.yml'}", f"--storage.tsdb.path={data_dir}",
            "--web.enable-remote-write-receiver", f"--web.listen-address=127.0.0.1:{port}", *extra_args]
    return _start(name, argv, port, workdir)


@dataclass
class Backend:
    """One fresh SOTP store: the URL for ``--storage`` and how to remove it afterwards."""

    name: str
    url: str
    remove: Callable[[], None]


class BackendUnavailable(Exception):
    """The database of a backend cannot be reached (the run skips that backend)."""


def add_backend_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backends", default=",".join(BACKENDS),
                        help=f"comma-separated SOTP backends to measure (of {', '.join(BACKENDS)})")
    parser.add_argument("--pg-dsn", default=DEFAULT_PG, help="PostgreSQL (a fresh schema per run)")
    parser.add_argument("--timescale-dsn", default=DEFAULT_TIMESCALE,
                        help="TimescaleDB (a fresh database per run, timescaledb=on)")
    parser.add_argument("--serve-args", type=shlex.split, default=[],
                        help="extra arguments for sotp serve, e.g. '--workers 2'")


def chosen_backends(args: argparse.Namespace) -> list[str]:
    names = [b.strip() for b in args.backends.split(",") if b.strip()]
    unknown = sorted(set(names) - set(BACKENDS))
    if unknown:
        raise SystemExit(f"unknown backend(s) {unknown}: use {', '.join(BACKENDS)}")
    return names


def create_backend(name: str, args: argparse.Namespace, workdir: Path) -> Backend:
    tag = f"bench_{uuid.uuid4().hex[:10]}"
    if name == "sqlite":
        path = workdir / f"{tag}.db"
        return Backend(name, f"sqlite:///{path}", lambda: _remove_sqlite(path))
    if name == "postgresql":
        _pg_execute(args.pg_dsn, f'CREATE SCHEMA "{tag}"')
        return Backend(name, _with_params(args.pg_dsn, f"schema={tag}"),
                       lambda: _pg_execute(args.pg_dsn, f'DROP SCHEMA IF EXISTS "{tag}" CASCADE'))
    _pg_execute(args.timescale_dsn, f'CREATE DATABASE "{tag}"')
    base, _, _ = args.timescale_dsn.partition("?")
    dsn = base.rsplit("/", 1)[0] + "/" + tag
    return Backend(name, _with_params(dsn, "timescaledb=on"),
                   lambda: _pg_execute(args.timescale_dsn, f'DROP DATABASE IF EXISTS "{tag}" WITH (FORCE)'))


def _with_params(dsn: str, params: str) -> str:
    return f"{dsn}{'&' if '?' in dsn else '?'}{params}"


def _remove_sqlite(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def _pg_execute(dsn: str, statement: str) -> None:
    import psycopg

    try:
        with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
            conn.execute(statement)  # type: ignore[arg-type,unused-ignore]  # names generated here, not input
    except psycopg.OperationalError as err:
        raise BackendUnavailable(f"{dsn}: {err}".strip()) from err


@contextmanager
def fresh_backend(name: str, args: argparse.Namespace, workdir: Path) -> Iterator[Backend]:
    """A new, empty store for ``name``, removed when the block ends."""
    backend = create_backend(name, args, workdir)
    try:
        yield backend
    finally:
        backend.remove()


@contextmanager
def serving(start: Callable[[], Server]) -> Iterator[Server]:
    """A started server, stopped when the block ends."""
    server = start()
    try:
        yield server
    finally:
        server.stop()


def postgres_cpu_s() -> float:
    """CPU seconds of every process named ``postgres`` on the machine (both clusters; other users' work too)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if "(postgres)" in stat.read_text():
                total += process_cpu_s(int(stat.parent.name))
        except OSError:
            continue
    return total


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants, from the parent ids in ``/proc/*/stat``."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        parents.setdefault(ppid, []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += parents.get(current, [])
    return tree


def process_rss_mib(pid: int) -> float:
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return 0.0
    return next((int(ln.split()[1]) / 1024 for ln in lines if ln.startswith("VmRSS:")), 0.0)


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far (``/proc/<pid>/stat``; 0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def load_average() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])
