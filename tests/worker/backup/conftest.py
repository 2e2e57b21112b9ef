"""Fixtures for backup tests: device simulators and a store on each backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.worker.backup.devsim import DeviceSim


@pytest.fixture
def sims(tmp_path: Path) -> Iterator[dict[str, DeviceSim]]:
    """An IOS-like router, a Junos-like router, and a device that accepts SSH but never answers."""
    devices = {
        "r1": DeviceSim("ios", "r1").start(tmp_path),
        "mx1": DeviceSim("junos", "mx1").start(tmp_path),
        "hung": DeviceSim("ios", "hung", silent=True).start(tmp_path),
    }
    yield devices
    for d in devices.values():
        d.stop()


@pytest.fixture
def known_hosts(sims: dict[str, DeviceSim], tmp_path: Path) -> Path:
    """An OpenSSH known_hosts file holding every simulator's host key (what strict checking needs)."""
    path = tmp_path / "known_hosts"
    path.write_text("".join(sim.known_hosts_line() for sim in sims.values()))
    return path
