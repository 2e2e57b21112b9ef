"""A real PostgreSQL crash under load (``pg_ctl stop -m immediate`` of a private cluster): ``sotp serve`` answers
503 + Retry-After and ``/-/ready`` fails while the database is down, and recovers on its own when it is back;
the senders' retries then deliver everything, once."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import with_schema
from tests.faults.loadgen import Plan, Run, check, read_back
from tests.faults.pgcluster import private_cluster
from tests.faults.servers import Serve

pytestmark = pytest.mark.integration


def test_postgresql_crash_under_load_then_recovery(tmp_path: Path) -> None:
    with private_cluster() as pg:
        # pool_timeout: a write waits this long for a connection before it answers 503 (the default is 10 s)
        serve = Serve(with_schema(pg.dsn, "sotp_faults", "pool_timeout=1s"), tmp_path)
        try:
            serve.start()
            serve.wait_ready()
            plan = Plan.recent("fault_pg_crash", rounds=150)
            run = Run([serve.base], plan).start()
            run.wait_acked(plan.requests // 4)
            pg.crash()
            run.wait_failures(20)
            serve.wait_ready(503)  # not ready while the store is down ...
            down = run.result.statuses.copy()
            pg.start()
            serve.wait_ready(200)  # ... and ready again without a restart of sotp serve
            result = run.finish()
            assert down[503] > 0, f"no 503 while PostgreSQL was down: {dict(down)}"
            assert len(serve.procs) == 1 and serve.procs[0].popen.poll() is None, "sotp serve did not survive"
            check("PostgreSQL crash (immediate stop), restart", result, read_back(serve.base, plan))
        finally:
            serve.stop()
