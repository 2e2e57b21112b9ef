"""Disk full under SQLite: a small tmpfs holds the store; filled up under load, ``sotp serve`` answers a 5xx the
senders retry, and once space is freed the retries land. The file passes ``PRAGMA integrity_check`` and a
restarted server reads back every acknowledged sample once."""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import missing
from tests.faults.loadgen import Plan, Run, check, read_back
from tests.faults.servers import Serve

pytestmark = pytest.mark.integration


@contextmanager
def small_tmpfs(size: str = "48m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted on a fresh directory (root only), unmounted at exit."""
    if os.geteuid() != 0:
        missing("mounting a tmpfs needs root (the fault suite runs as root in CI)")
    where = Path(tempfile.mkdtemp(prefix="sotp-faults-tmpfs-"))
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)
        shutil.rmtree(where, ignore_errors=True)


def fill(path: Path) -> None:
    """Write ``path`` until the filesystem is full, to the last 512 bytes."""
    with open(path, "wb", buffering=0) as fh:
        for size in (1 << 20, 4096, 512):
            chunk = b"\0" * size
            while True:
                try:
                    fh.write(chunk)
                except OSError as err:
                    if err.errno != errno.ENOSPC:
                        raise
                    break


def test_disk_full_under_load_then_space_freed(tmp_path: Path) -> None:
    with small_tmpfs() as mnt:
        db = mnt / "sotp.db"
        serve = Serve(f"sqlite:///{db}", tmp_path)
        try:
            serve.start()
            serve.wait_ready()
            plan = Plan.recent("fault_disk_full", senders=4, series=100, rounds=400)
            run = Run([serve.base], plan).start()
            run.wait_acked(40)
            filler = mnt / "filler"
            fill(filler)
            run.wait_failures(20, timeout_s=120)
            full = run.result.statuses.copy()
            texts = dict(run.result.failure_texts)
            filler.unlink()  # space is back: the senders' retries must now land
            result = run.finish()
            assert full[503] > 0, f"no 503 while the disk was full: {dict(full)}"
            assert "database or disk is full" in serve.log(), "the server log does not name the cause"
            serve.kill9()
            with sqlite3.connect(db) as conn:
                assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
            serve.start()
            check("SQLite disk full, space freed", result, read_back(serve.base, plan))
            print(f"answers while the disk was full: {dict(full)}; {texts}")
        finally:
            serve.stop()
