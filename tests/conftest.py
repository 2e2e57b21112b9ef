"""Shared test helpers: free ports, and service requirements that skip locally but fail under CI=true."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def missing(reason: str) -> None:
    """Skip with ``reason`` locally; fail loudly under CI=true, where every service must be present."""
    if IN_CI:
        pytest.fail(f"required test service missing under CI=true: {reason}")
    pytest.skip(reason)


def require_binary(name: str, *candidates: str) -> str:
    """Path of an executable (PATH or the given absolute candidates), else :func:`missing`."""
    for c in (name, *candidates):
        found = shutil.which(c) or (c if os.path.isabs(c) and os.access(c, os.X_OK) else None)
        if found:
            return found
    missing(f"executable {name!r} not found (apt-get install it; .ci/run does)")
    raise AssertionError("unreachable")


def require_tcp(host: str, port: int, what: str) -> None:
    """Require a TCP service to accept connections."""
    try:
        with socket.create_connection((host, port), timeout=2):
            return
    except OSError as err:
        missing(f"{what} not reachable at {host}:{port}: {err}")


def wait_for_port(port: int, host: str = "127.0.0.1", timeout: float = 20.0) -> None:
    """Block until something listens on ``host:port`` or raise TimeoutError."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listening on {host}:{port} after {timeout}s")


def sotp_cmd(*args: str) -> list[str]:
    """The argv that runs the SOTP CLI from this checkout."""
    return [sys.executable, "-m", "sotp", *args]


class Proc:
    """A child process killed (and reaped) at teardown; its output goes to a log file."""

    def __init__(self, argv: list[str], log: Path, env: dict[str, str] | None = None, cwd: Path = REPO,
                 new_session: bool = False):
        self.argv = argv
        self.log = log
        self._fh = open(log, "wb")  # noqa: SIM115 - closed in stop()
        full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
        # new_session: its own process group, as a command started from a shell is (for killpg, like Ctrl-C)
        self.popen = subprocess.Popen(argv, stdout=self._fh, stderr=subprocess.STDOUT, env=full_env, cwd=cwd,
                                      start_new_session=new_session)

    def output(self) -> str:
        if not self._fh.closed:
            self._fh.flush()
        return self.log.read_text(errors="replace")

    def stop(self, sig: int | None = None) -> None:
        if self.popen.poll() is None:
            if sig is None:
                self.popen.terminate()
            else:
                self.popen.send_signal(sig)
            try:
                self.popen.wait(10)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self._fh.close()


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[callable]:  # type: ignore[valid-type]
    """Start processes that are stopped at teardown: ``spawn(argv, env=None) -> Proc``."""
    procs: list[Proc] = []

    def _spawn(argv: list[str], env: dict[str, str] | None = None, name: str | None = None) -> Proc:
        log = tmp_path / f"{name or Path(argv[0]).name}-{len(procs)}.log"
        p = Proc(argv, log, env)
        procs.append(p)
        return p

    yield _spawn
    for p in reversed(procs):
        p.stop()


PG_DSN = os.environ.get("SOTP_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
#: A PostgreSQL with the timescaledb extension available and preloaded (`.ci/run` starts it with the
#: project's timescaledb-up tool and exports the DSN; locally the same tool's default port is tried).
TIMESCALE_DSN = os.environ.get("SOTP_TEST_TIMESCALE_DSN", "postgresql://postgres@127.0.0.1:5433/test")
#: A PostgreSQL with the extension installed but NOT in shared_preload_libraries (`--no-preload`).
TIMESCALE_NOPRELOAD_DSN = os.environ.get(
    "SOTP_TEST_TIMESCALE_NOPRELOAD_DSN", "postgresql://postgres@127.0.0.1:5434/test"
)

#: Every storage backend a backend-parametrised test runs on (see :func:`storage_location`).
STORAGE_BACKENDS = ["memory", "sqlite", "postgres", "timescaledb"]


def _dsn_address(dsn: str) -> tuple[str, int]:
    from urllib.parse import urlsplit

    parts = urlsplit(dsn)
    return parts.hostname or "127.0.0.1", parts.port or 5432


def require_postgres() -> str:
    """The plain PostgreSQL DSN (``SOTP_TEST_PG_DSN``), else :func:`missing`."""
    host, port = _dsn_address(PG_DSN)
    require_tcp(host, port, "PostgreSQL (SOTP_TEST_PG_DSN)")
    return PG_DSN


_timescale_checked: dict[str, str] = {}


def _timescale_state(dsn: str) -> str:
    """``preloaded``, ``not-preloaded`` or ``absent``: what the server at ``dsn`` offers (cached)."""
    if dsn not in _timescale_checked:
        import psycopg

        with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as conn:
            row = conn.execute(
                "SELECT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'), "
                "current_setting('shared_preload_libraries') ~ '(^|[,/ ])timescaledb($|[, ])'"
            ).fetchone()
        assert row is not None
        _timescale_checked[dsn] = "absent" if not row[0] else "preloaded" if row[1] else "not-preloaded"
    return _timescale_checked[dsn]


def require_timescaledb() -> str:
    """The DSN of a PostgreSQL with TimescaleDB usable (``SOTP_TEST_TIMESCALE_DSN``), else :func:`missing`."""
    host, port = _dsn_address(TIMESCALE_DSN)
    require_tcp(host, port, "TimescaleDB (SOTP_TEST_TIMESCALE_DSN; start it with timescaledb-up)")
    state = _timescale_state(TIMESCALE_DSN)
    if state != "preloaded":
        missing(f"SOTP_TEST_TIMESCALE_DSN={TIMESCALE_DSN} has timescaledb {state}, not preloaded")
    return TIMESCALE_DSN


def require_timescaledb_not_preloaded() -> str:
    """The DSN of a PostgreSQL with the extension installed but not preloaded, else :func:`missing`."""
    host, port = _dsn_address(TIMESCALE_NOPRELOAD_DSN)
    require_tcp(host, port, "TimescaleDB without preload (SOTP_TEST_TIMESCALE_NOPRELOAD_DSN; "
                "start it with timescaledb-up --port 5434 --no-preload)")
    state = _timescale_state(TIMESCALE_NOPRELOAD_DSN)
    if state != "not-preloaded":
        missing(f"SOTP_TEST_TIMESCALE_NOPRELOAD_DSN={TIMESCALE_NOPRELOAD_DSN} has timescaledb {state}")
    return TIMESCALE_NOPRELOAD_DSN


def with_schema(dsn: str, schema: str, options: str = "") -> str:
    """``dsn`` with SOTP's ``schema=`` (and further ``a=b&c=d`` URL options) appended."""
    sep = "&" if "?" in dsn else "?"
    return f"{dsn}{sep}schema={schema}" + (f"&{options}" if options else "")


def new_schema(prefix: str = "sotp_test") -> str:
    """A schema name no other test (or developer) uses."""
    import uuid

    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def drop_schema(dsn: str, schema: str) -> None:
    """Drop a test's schema and everything in it (hypertables, their chunks and policies included)."""
    import psycopg

    with psycopg.connect(dsn.split("?")[0], autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')  # type: ignore[arg-type]


def backend_dsn(backend: str) -> str:
    """The server DSN of a PostgreSQL-family backend (``postgres``/``timescaledb``), required present."""
    return require_timescaledb() if backend == "timescaledb" else require_postgres()


#: TimescaleDB test schemas: the extension asked for explicitly (a server that lost it fails the test
#: instead of silently testing plain partitions), and a compression age beyond the tests' 1970-era data, so
#: TimescaleDB's background scheduler does not compress chunks under a test that is not about compression
#: (a deployment's recent chunks are likewise never compressed). test_timescaledb.py tests compression.
TIMESCALE_TEST_OPTIONS = "timescaledb=on&compress_after=36500d"


def backend_url(backend: str, dsn: str, schema: str, options: str = "") -> str:
    """The storage URL of a fresh schema on ``backend`` (see :data:`TIMESCALE_TEST_OPTIONS`); ``options``
    come last, so a test's own ``compress_after`` wins."""
    extra = TIMESCALE_TEST_OPTIONS if backend == "timescaledb" else ""
    return with_schema(dsn, schema, "&".join(o for o in (extra, options) if o))


@contextlib.contextmanager
def storage_location(backend: str, tmp_path: Path, options: str = "") -> Iterator[str]:
    """A storage URL on ``backend`` (one of :data:`STORAGE_BACKENDS`) for one test: a file under
    ``tmp_path`` for SQLite, a fresh schema for PostgreSQL/TimescaleDB (dropped afterwards). ``options``
    are extra PostgreSQL URL options. A missing server skips locally and fails under CI=true."""
    if backend == "memory":
        yield "memory://"
        return
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path}/sotp-{new_schema('db')}.db"
        return
    if backend not in ("postgres", "timescaledb"):
        raise ValueError(f"unknown storage backend {backend!r}; expected one of {STORAGE_BACKENDS}")
    dsn = backend_dsn(backend)
    schema = new_schema(f"sotp_{backend[:2]}")
    try:
        yield backend_url(backend, dsn, schema, options)
    finally:
        drop_schema(dsn, schema)


@pytest.fixture
def timescale_url(tmp_path: Path) -> Iterator[str]:
    """A TimescaleDB storage URL on a fresh schema (``timescaledb=on``), dropped at teardown."""
    with storage_location("timescaledb", tmp_path) as url:
        yield url


def port_is_free(port: int) -> bool:
    """Whether nothing listens on 127.0.0.1:``port`` right now."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def sotp_up_ports() -> tuple[int, int, int]:
    """(serve port, exporters' port base, dashboard port) for ``sotp up``, with every port it derives free."""
    import random

    for _ in range(100):
        base = random.randrange(20_000, 60_000, 10)
        serve, dash = base + 201, base + 501
        if all(port_is_free(p) for p in (serve, serve + 1, serve + 3, dash, base + 100, base + 115, base + 116)):
            return serve, base, dash
    raise RuntimeError("no free port range for sotp up")


RawSeries = list[tuple[list[tuple[str, str]], list[tuple[int, float]]]]


def raw_write_request(series: RawSeries, compress: bool = True) -> bytes:
    """A remote-write body built with the protobuf runtime exactly as given: labels unsorted, duplicated or
    invalid on purpose (the production encoder always writes valid requests)."""
    from sotp.codec.remote_write import WriteRequest, snappy_compress

    req = WriteRequest()
    for labels, samples in series:
        ts = req.timeseries.add()
        for name, value in labels:
            lb = ts.labels.add()
            lb.name, lb.value = name, value
        for t, v in samples:
            s = ts.samples.add()
            s.timestamp, s.value = t, v
    raw = bytes(req.SerializeToString())
    return snappy_compress(raw) if compress else raw


def wait_snmp(port: int, community: str = "public", timeout: float = 30) -> None:
    """Block until an SNMP agent answers a v2c GET of sysUpTime on 127.0.0.1:``port``."""
    snmpget = require_binary("snmpget")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        r = subprocess.run([snmpget, "-v2c", "-c", community, "-t", "0.5", "-r", "0", f"127.0.0.1:{port}",
                            "1.3.6.1.2.1.1.3.0"], capture_output=True, text=True)
        if r.returncode == 0:
            return
        time.sleep(0.2)
    raise TimeoutError(f"no SNMP agent answering on 127.0.0.1:{port}")


def start_snmpd(workdir: Path, extra_conf: str = "") -> tuple[Proc, int]:
    """Debian's snmpd on a free 127.0.0.1 UDP port, community ``public`` read-only (plus ``extra_conf``)."""
    binary = require_binary("snmpd", "/usr/sbin/snmpd")
    port = free_port()
    conf = workdir / "snmpd.conf"
    conf.write_text("rocommunity public 127.0.0.1\n" + extra_conf + "dontLogTCPWrappersConnects yes\n")
    (workdir / "persist").mkdir(exist_ok=True)
    proc = Proc([binary, "-f", "-C", "-c", str(conf), "-Lf", str(workdir / "snmpd.log"), f"udp:127.0.0.1:{port}"],
                workdir / "snmpd.out", env={"SNMP_PERSISTENT_DIR": str(workdir / "persist"), "MIBS": "",
                                            "MIBDIRS": str(workdir)})
    try:
        wait_snmp(port)
    except BaseException:
        proc.stop()
        raise
    return proc, port


@contextlib.contextmanager
def sshd_server(workdir: Path) -> Iterator[tuple[int, Path]]:
    """A real OpenSSH server on a loopback port accepting the current user (root) with a key made here:
    yields (port, client key path)."""
    sshd_bin = require_binary("sshd", "/usr/sbin/sshd")
    keygen = require_binary("ssh-keygen")
    for name in ("host_key", "client_key"):
        subprocess.run([keygen, "-q", "-t", "ed25519", "-N", "", "-f", str(workdir / name)], check=True)
    (workdir / "authorized_keys").write_text((workdir / "client_key.pub").read_text())
    os.makedirs("/run/sshd", exist_ok=True)
    port = free_port()
    conf = workdir / "sshd_config"
    conf.write_text(textwrap.dedent(f"""\
        Port {port}
        ListenAddress 127.0.0.1
        HostKey {workdir / 'host_key'}
        PidFile {workdir / 'sshd.pid'}
        AuthorizedKeysFile {workdir / 'authorized_keys'}
        PermitRootLogin prohibit-password
        PasswordAuthentication no
        KbdInteractiveAuthentication no
        StrictModes no
        UsePAM no
        """))
    with open(workdir / "sshd.log", "wb") as log:
        proc = subprocess.Popen([sshd_bin, "-D", "-e", "-f", str(conf)], stderr=log)
        try:
            wait_for_port(port)
            yield port, workdir / "client_key"
        finally:
            proc.terminate()
            proc.wait(10)
