"""``sotp up`` supervises its children: one killed with SIGKILL is started again after the documented backoff
and serves again (issue 18)."""

from __future__ import annotations

import json
import os
import re
import signal
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest

from sotp.cli.up import BACKOFF_INITIAL_S, BACKOFF_MAX_S, HEALTHY_AFTER_S, Backoff, exit_status
from tests.conftest import Proc, sotp_cmd, sotp_up_ports, wait_for_port


def test_backoff_doubles_to_its_cap_and_resets_after_a_healthy_run() -> None:
    b = Backoff()
    assert [b.after_exit(0.5) for _ in range(7)] == [1, 2, 4, 8, 16, 30, 30]
    assert (BACKOFF_INITIAL_S, BACKOFF_MAX_S) == (1, 30)
    assert b.after_exit(HEALTHY_AFTER_S) == 1  # it had run long enough: a fresh start
    assert b.after_exit(HEALTHY_AFTER_S - 1) == 2


@pytest.mark.parametrize(("rc", "text"), [
    (-9, "was killed by SIGKILL"), (-15, "was killed by SIGTERM"), (0, "exited with status 0"),
    (3, "exited with status 3"), (-99, "was killed by signal 99"),
], ids=["kill", "term", "clean", "error", "unknown-signal"])
def test_exit_status_names_the_signal(rc: int, text: str) -> None:
    assert exit_status(rc) == text


def _ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _until(what: str, check: Callable[[], object], up: Proc, seconds: float = 90) -> object:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"{what} not within {seconds:.0f}s\n{up.output()[-4000:]}")


@pytest.mark.integration
def test_killed_children_come_back_and_serve(tmp_path: Path, spawn) -> None:  # type: ignore[no-untyped-def]
    serve, base, dash = sotp_up_ports()
    up: Proc = spawn(sotp_cmd("up", "--data-dir", str(tmp_path / "data"), "--port", str(serve), "--port-base",
                              str(base), "--dashboard-port", str(dash), "--interval", "1s", "--no-dashboard"),
                     name="up")
    wait_for_port(serve, timeout=90)
    _until("the banner", lambda: "sotp up: running" in up.output(), up)

    def child(name: str) -> psutil.Process | None:
        for p in psutil.Process(up.popen.pid).children():
            try:
                if p.status() != psutil.STATUS_ZOMBIE and p.cmdline()[1:4] == ["-m", "sotp", name]:
                    return p
            except psutil.Error:  # exited (or reaped) while we looked
                continue
        return None

    def agent_pushed_since(t: float) -> bool:
        q = urllib.parse.urlencode({"query": 'timestamp(node_load1{job="node"})', "time": f"{time.time():.3f}"})
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{serve}/api/v1/query?{q}", timeout=5) as r:
                result = json.loads(r.read())["data"]["result"]
        except (urllib.error.URLError, OSError):
            return False
        return bool(result) and float(result[0]["value"][1]) >= t

    serving: dict[str, Callable[[float], bool]] = {
        "serve": lambda _since: _ok(f"http://127.0.0.1:{serve}/-/ready"),
        "worker": lambda _since: _ok(f"http://127.0.0.1:{serve + 1}/-/ready"),
        "agent": agent_pushed_since,  # no HTTP port: serving means its samples arrive
    }
    for name, ready in serving.items():
        _until(f"{name} serving before the kill", lambda ready=ready: ready(0), up)
        old = child(name)
        assert old is not None, up.output()
        killed = time.monotonic()
        os.kill(old.pid, signal.SIGKILL)
        new = _until(f"{name} started again", lambda name=name, old=old: (c := child(name)) and c.pid != old.pid
                     and c, up)
        seen, seen_wall = time.monotonic(), time.time()
        assert isinstance(new, psutil.Process)
        # Not before the first backoff delay (seen at or after the new process started) ...
        assert seen - killed >= BACKOFF_INITIAL_S
        # ... and serving again: ready over HTTP, or (the agent) pushing samples collected after it was seen.
        _until(f"{name} serving after its restart", lambda ready=ready, t=seen_wall: ready(t), up)
        logged = re.search(rf"{name} \(pid {old.pid}\) was killed by SIGKILL after running \d+s; restart 1 in 1s",
                           up.output())
        assert logged, up.output()[-4000:]
    up.stop(signal.SIGTERM)
    assert up.popen.returncode == 0
