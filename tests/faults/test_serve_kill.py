"""kill -9 of ``sotp serve`` while senders are in flight: restart on the same store (or fail over to a second
replica), senders retry what was not acknowledged, and every acknowledged sample is stored exactly once."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import storage_location
from tests.faults.loadgen import Plan, Run, check, read_back, resend
from tests.faults.servers import Serve

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("backend", ["sqlite", "postgres", "timescaledb"])
def test_kill_9_under_load_then_restart(backend: str, tmp_path: Path) -> None:
    with storage_location(backend, tmp_path) as url:
        serve = Serve(url, tmp_path)
        try:
            serve.start()
            plan = Plan.recent(f"fault_kill_{backend}")
            run = Run([serve.base], plan).start()
            run.wait_acked(plan.requests // 3)
            serve.kill9()  # four senders have requests in flight: some were committed, none answered
            run.wait_failures()
            serve.start()  # the same store on the same address; the senders' retries land here
            result = run.finish()
            resend([serve.base], plan, range(plan.rounds // 3 - 10, plan.rounds // 3 + 10))  # around the kill
            check(f"kill -9 serve, restart ({backend})", result, read_back(serve.base, plan))
        finally:
            serve.stop()


@pytest.mark.parametrize("backend", ["postgres"])
def test_two_replicas_one_killed_under_load(backend: str, tmp_path: Path) -> None:
    """Round-robin over two replicas on one schema, each retry on the other one; one replica dies mid-run.
    A retry of a request the dead replica committed reaches the survivor, whose newest-sample cache never
    saw that data: it must answer 204, not an out-of-order 400."""
    with storage_location(backend, tmp_path) as url:
        a, b = Serve(url, tmp_path, "serve-a"), Serve(url, tmp_path, "serve-b")
        try:
            a.start()
            b.start()
            plan = Plan.recent("fault_replicas")
            run = Run([a.base, b.base], plan).start()
            run.wait_acked(plan.requests // 3)
            a.kill9()
            run.wait_failures()
            result = run.finish()
            # the rounds both replicas stored, all sent to the survivor
            resend([b.base], plan, range(plan.rounds // 3))
            check("two replicas, one kill -9 (postgres)", result, read_back(b.base, plan))
        finally:
            a.stop()
            b.stop()
