"""Real Prometheus 2.42 remote-writing into ``sotp serve`` through a receiver kill -9 and restart.

Prometheus scrapes a small target of the test's own every 500 ms; one of its series vanishes while the
receiver is down, so its staleness marker travels through the retries. Once Prometheus reports that its (single)
shard has sent past the end of the window, both servers answer the same queries: every raw sample of the window
(a range selector through ``/api/v1/query``) with the same value, and the same ``/api/v1/query_range`` result
at a step finer than the scrape interval, which ends the vanished series where the staleness marker is (without
it SOTP would extend the series for the 5-minute lookback). ``prometheus_remote_storage_samples_failed_total``
stays 0: nothing was dropped as unrecoverable.
"""

from __future__ import annotations

import http.server
import signal
import textwrap
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import Proc, free_port, require_binary, sotp_cmd, wait_for_port
from tests.faults.loadgen import ROWS, Row, api_get, format_table

pytestmark = pytest.mark.integration
JOB = "fault_target"


class Target:
    """The scraped exposition: 50 gauges that change every scrape, and ``fault_vanishing`` until :meth:`vanish`."""

    def __init__(self) -> None:
        self.scrapes = 0
        self.vanished = False

    def render(self) -> bytes:
        self.scrapes += 1
        lines = [f'fault_gauge{{k="{k}"}} {self.scrapes * 100 + k}.5' for k in range(50)]
        if not self.vanished:
            lines.append(f"fault_vanishing {self.scrapes}")
        return ("\n".join(lines) + "\n").encode()

    def vanish(self) -> None:
        self.vanished = True


@contextmanager
def serve_target(target: Target) -> Iterator[int]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = target.render()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def prom_metric(port: int, name: str) -> float:
    """The sum of a metric family on Prometheus's own /metrics (0 when absent)."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name) and line[len(name)] in " {")


def wait_until(cond: object, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.1)


def raw_samples(base: str, window_s: int, at: float) -> dict[tuple[tuple[str, str], ...], list[tuple[int, float]]]:
    data = api_get(base, "/api/v1/query", {"query": f'{{job="{JOB}"}}[{window_s}s]', "time": f"{at:.3f}"})
    assert isinstance(data, dict)
    return {tuple(sorted(s["metric"].items())): [(round(float(t) * 1000), float(v)) for t, v in s["values"]]
            for s in data["result"]}


def ranged(base: str, start: float, end: float) -> dict[tuple[tuple[str, str], ...], list[tuple[int, float]]]:
    params = {"query": f'{{job="{JOB}"}}', "start": f"{start:.3f}", "end": f"{end:.3f}", "step": "0.1"}
    data = api_get(base, "/api/v1/query_range", params)
    assert isinstance(data, dict)
    return {tuple(sorted(s["metric"].items())): [(round(float(t) * 1000), float(v)) for t, v in s["values"]]
            for s in data["result"]}


def test_prometheus_remote_write_through_receiver_kill_9(tmp_path: Path) -> None:
    prometheus = require_binary("prometheus", "/usr/bin/prometheus")
    sotp_port, prom_port = free_port(), free_port()
    storage = f"sqlite:///{tmp_path}/sotp.db"
    target = Target()
    procs: list[Proc] = []

    def start_sotp(n: int) -> Proc:
        argv = sotp_cmd("serve", "--listen", f"127.0.0.1:{sotp_port}", "--storage", storage)
        procs.append(Proc(argv, tmp_path / f"serve-{n}.log"))
        wait_for_port(sotp_port, timeout=60)
        return procs[-1]

    with serve_target(target) as target_port:
        cfg = tmp_path / "prometheus.yml"
        cfg.write_text(textwrap.dedent(f"""
            global: {{scrape_interval: 500ms, scrape_timeout: 400ms}}
            scrape_configs:
              - job_name: {JOB}
                static_configs: [{{targets: ["127.0.0.1:{target_port}"]}}]
            remote_write:
              - url: http://127.0.0.1:{sotp_port}/api/v1/write
                queue_config: {{max_shards: 1, min_shards: 1, batch_send_deadline: 500ms, min_backoff: 100ms,
                                max_backoff: 1s}}
            """))
        try:
            sotp = start_sotp(0)
            procs.append(Proc([prometheus, f"--config.file={cfg}", f"--storage.tsdb.path={tmp_path / 'prom'}",
                               f"--web.listen-address=127.0.0.1:{prom_port}"], tmp_path / "prometheus.log"))
            sotp_base, prom_base = f"http://127.0.0.1:{sotp_port}", f"http://127.0.0.1:{prom_port}"
            wait_for_port(prom_port, timeout=60)
            start = time.time()
            wait_until(lambda: prom_metric(prom_port, "prometheus_remote_storage_samples_total") > 500, 60,
                       "Prometheus to send its first samples")
            sotp.stop(signal.SIGKILL)
            wait_until(lambda: prom_metric(prom_port, "prometheus_remote_storage_samples_retried_total") > 0
                       or prom_metric(prom_port, "prometheus_remote_storage_samples_pending") > 100, 60,
                       "Prometheus to notice the receiver is gone")
            target.vanish()  # the staleness marker is written while the receiver is down
            scrapes = target.scrapes
            wait_until(lambda: target.scrapes >= scrapes + 4, 30, "scrapes during the outage")
            start_sotp(1)
            end = time.time()
            wait_until(lambda: prom_metric(prom_port, "prometheus_remote_storage_queue_highest_sent_timestamp_seconds")
                       > end, 120, "Prometheus to deliver everything up to the end of the window")
            failed = prom_metric(prom_port, "prometheus_remote_storage_samples_failed_total")
            retried = prom_metric(prom_port, "prometheus_remote_storage_samples_retried_total")
            window = int(end - start) + 10
            want, got = raw_samples(prom_base, window, end), raw_samples(sotp_base, window, end)
            want_r, got_r = ranged(prom_base, start, end), ranged(sotp_base, start, end)
        finally:
            for proc in reversed(procs):
                proc.stop()
    want_set = {(k, t, v) for k, samples in want.items() for t, v in samples}
    got_list = [(k, t, v) for k, samples in got.items() for t, v in samples]
    # samples acked: what Prometheus holds for the window; retried: its retried samples, not answers
    row = Row("Prometheus 2.42 through receiver kill -9", None, len(want_set), len(got_list),
              len(want_set - set(got_list)), len(got_list) - len(set(got_list)), int(retried))
    ROWS.append(row)
    print("\n" + format_table([row]))
    assert failed == 0, f"Prometheus dropped {failed} samples as unrecoverable"
    assert retried > 0, "Prometheus retried nothing: the receiver restart was not exercised"
    vanishing = (("__name__", "fault_vanishing"), ("instance", f"127.0.0.1:{target_port}"), ("job", JOB))
    assert vanishing in want, "the vanishing series is not in Prometheus's window"
    # its staleness marker ends it in Prometheus's own answer well before the 5-minute lookback would
    assert want_r[vanishing][-1][0] < end * 1000 - 1000, want_r[vanishing][-3:]
    assert row.lost == 0 and row.duplicated == 0, row
    assert got == want  # the same series, samples and values, nothing more
    assert got_r == want_r  # so also the same staleness: fault_vanishing ends at its marker in both
