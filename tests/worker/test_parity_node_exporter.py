"""`sotp worker` and Prometheus 2.42 scrape a real node_exporter (a big, realistic exposition): same series."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from sotp.model import METRIC_NAME, Labels, Matcher, MatchOp, is_stale
from sotp.storage import open_storage
from tests.conftest import free_port, require_binary, sotp_cmd, wait_for_port
from tests.worker.conftest import Prometheus

pytestmark = pytest.mark.integration


async def test_same_series_from_node_exporter(prometheus: Callable[[dict[str, Any]], Prometheus], spawn: Any,
                                              tmp_path: Path) -> None:
    node = require_binary("prometheus-node-exporter", "/usr/bin/prometheus-node-exporter")
    port = free_port()
    spawn([node, f"--web.listen-address=127.0.0.1:{port}"], name="node-exporter")
    await asyncio.to_thread(wait_for_port, port)
    config = {"global": {"scrape_interval": "2s", "scrape_timeout": "2s"},
              "scrape_configs": [{"job_name": "node", "static_configs": [{"targets": [f"127.0.0.1:{port}"]}],
                                  "metric_relabel_configs": [
                                      {"source_labels": ["__name__"], "regex": "go_.*", "action": "drop"}]}]}
    cfg = tmp_path / "sotp.yml"
    cfg.write_text(yaml.safe_dump(config))
    db = f"sqlite:///{tmp_path / 'sotp.db'}"
    spawn(sotp_cmd("worker", "--config", str(cfg), "--storage", db, "--listen", ""), name="sotp-worker")
    prom = await asyncio.to_thread(prometheus, config)
    deadline = time.monotonic() + 30
    while True:  # Prometheus's discovery batches for 5 s before its first scrape
        r = await asyncio.to_thread(prom.api, "/api/v1/query", query='count_over_time(up{job="node"}[1m])')
        if r["result"] and float(r["result"][0]["value"][1]) >= 2:
            break
        assert time.monotonic() < deadline, "Prometheus did not scrape node_exporter twice"
        await asyncio.sleep(0.5)

    now = time.time()
    theirs_raw = await asyncio.to_thread(prom.api, "/api/v1/query", query='{job="node"}', time=f"{now:.3f}")
    theirs = {Labels(r["metric"]) for r in theirs_raw["result"]}
    st = open_storage(db)
    await st.open()
    q = st.querier(int(now * 1000) - 300_000, int(now * 1000))
    found = await q.select([Matcher("job", MatchOp.EQ, "node"), Matcher(METRIC_NAME, MatchOp.RE, ".+")])
    await q.close()
    await st.close()
    ours = {s.labels for s in found if not is_stale(float(s.values[-1]))}
    assert len(theirs) > 300  # a real exposition, not an empty page
    assert not any(lb.name and lb.name.startswith("go_") for lb in ours)
    # Series that come and go between scrapes (e.g. a process's open fds) are rare; allow none on either side.
    assert sorted(map(str, ours - theirs)) == sorted(map(str, theirs - ours)) == []
