"""A private PostgreSQL cluster the fault suite may crash: initdb'd in a temporary directory, trust auth, a free
port on 127.0.0.1, run as the ``postgres`` user with the machine's binaries. Never the machine's own clusters."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import free_port, missing, wait_for_port

BINDIR = Path(os.environ.get("SOTP_TEST_PG_BINDIR", "/usr/lib/postgresql/15/bin"))


class Cluster:
    """``pg_ctl`` on one data directory; :meth:`crash` is ``stop -m immediate`` (no checkpoint, as a power cut
    leaves the server: recovery replays its WAL at the next start)."""

    def __init__(self, root: Path, port: int):
        self.root = root
        self.data = root / "data"
        self.port = port
        self.dsn = f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def _pg(self, *argv: str, timeout: float = 120) -> None:
        cmd = ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else list(argv)
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({r.returncode}): {r.stdout}{r.stderr}")

    def init(self) -> None:
        self._pg(str(BINDIR / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync")

    def start(self) -> None:
        opts = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1"
        self._pg(str(BINDIR / "pg_ctl"), "-D", str(self.data), "-o", opts, "-l", str(self.root / "server.log"),
                 "-w", "-t", "120", "start")
        wait_for_port(self.port, timeout=60)

    def crash(self) -> None:
        self._pg(str(BINDIR / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def log(self) -> str:
        path = self.root / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""


@contextmanager
def private_cluster() -> Iterator[Cluster]:
    """A started private cluster, crashed and removed at exit."""
    if not (BINDIR / "initdb").exists():
        missing(f"PostgreSQL server binaries not found in {BINDIR} (apt-get install postgresql-15, or set "
                "SOTP_TEST_PG_BINDIR)")
    root = Path(tempfile.mkdtemp(prefix="sotp-faults-pg-"))
    if os.geteuid() == 0:  # the server refuses to run as root: the directory belongs to the postgres user
        user = pwd.getpwnam("postgres")
        os.chown(root, user.pw_uid, user.pw_gid)
    cluster = Cluster(root, free_port())
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        with contextlib.suppress(RuntimeError):  # already stopped (the test failed while it was down)
            cluster.crash()
        shutil.rmtree(root, ignore_errors=True)
