"""`make up` installs once: with its stamp newer than the lock and pyproject.toml, a second `make up` goes straight
to `sotp up` (issue 23, point 8: it reinstalled every time, ~40 s). Checked with `make -n` on a scratch venv dir."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import REPO, require_binary


def dry_run(venv: Path, target: str) -> str:
    make = require_binary("make")
    r = subprocess.run([make, "-s", "-n", "-C", str(REPO), target, f"VENV={venv}"], capture_output=True, text=True,
                       timeout=60, check=True)
    return r.stdout


def test_make_up_installs_only_when_the_lock_or_pyproject_changed(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    first = dry_run(venv, "up")
    assert "pip install" in first and "--require-hashes -r requirements/all.lock" in first
    stamp = venv / ".installed-all"
    stamp.touch()
    newer = time.time() + 60  # the stamp is newer than the lock and pyproject.toml, as after an install
    os.utime(stamp, (newer, newer))
    again = dry_run(venv, "up")
    assert "pip install" not in again, again
    assert f"{venv}/bin/sotp up" in again.splitlines(), again
