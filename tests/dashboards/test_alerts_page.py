"""The Alerts page against a real Prometheus 2.42 evaluating a rule file, and against ``sotp serve`` + ``sotp
ruler`` evaluating the same file: the same alerts, states and links on both."""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from dashboards.ui import ENV_API, ENV_TOKEN_FILE
from tests.conftest import REPO, free_port, require_binary, sotp_cmd, wait_for_port

APP = str(REPO / "dashboards" / "app.py")
RULES = """
groups:
  - name: page
    interval: 1s
    rules:
      - alert: LinkDown
        expr: vector(1)
        labels: {severity: critical, device: core-sw1, ifName: ge-0/0/1}
        annotations: {summary: "ge-0/0/1 on core-sw1 is down"}
      - alert: DiskSoon
        expr: vector(1)
        for: 1h
        labels: {severity: warning, instance: db-1}
        annotations: {summary: "disk on db-1 fills soon"}
      - record: one
        expr: vector(1)
"""


def _alerts(url: str) -> list[dict[str, object]]:
    try:
        with urllib.request.urlopen(f"{url}/api/v1/alerts", timeout=5) as r:
            alerts: list[dict[str, object]] = json.loads(r.read())["data"]["alerts"]
            return alerts
    except OSError:
        return []


@pytest.fixture(params=["prometheus", "sotp"])
def api(request: pytest.FixtureRequest, tmp_path: Path, spawn) -> Iterator[str]:  # type: ignore[no-untyped-def]
    (tmp_path / "rules.yml").write_text(RULES)
    port = free_port()
    if request.param == "prometheus":
        exe = require_binary("prometheus")
        (tmp_path / "prometheus.yml").write_text("rule_files: [rules.yml]\n")
        spawn([exe, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
               f"--web.listen-address=127.0.0.1:{port}"], name="prometheus")
    else:
        ruler = free_port()
        storage = f"sqlite:///{tmp_path / 'sotp.db'}"
        spawn(sotp_cmd("serve", "--listen", f"127.0.0.1:{port}", "--storage", storage, "--ruler-url",
                       f"http://127.0.0.1:{ruler}"), name="serve")
        spawn(sotp_cmd("ruler", "--listen", f"127.0.0.1:{ruler}", "--storage", storage, "--rule-file",
                       str(tmp_path / "rules.yml")), name="ruler")
        wait_for_port(ruler, timeout=60)
    wait_for_port(port, timeout=60)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(_alerts(url)) < 2:
        time.sleep(0.5)
    assert len(_alerts(url)) == 2, f"{request.param} never reported both alerts"
    yield url


@pytest.mark.integration
def test_alerts_page_lists_firing_and_pending(api: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_API, api)
    monkeypatch.delenv(ENV_TOKEN_FILE, raising=False)
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("views/alerts.py").run()
    assert not at.exception, at.exception
    assert [t.value for t in at.title] == ["Alerts"]
    assert not at.error, [e.value for e in at.error]
    assert [m.value for m in at.metric] == ["1", "1", "1"]
    table = at.dataframe[0].value
    assert list(table["Alert"]) == ["LinkDown", "DiskSoon"]  # firing first
    assert list(table["State"]) == ["● firing", "● pending"]
    assert list(table["Target"]) == ["core-sw1", "db-1"]
    assert list(table["Summary"]) == ["ge-0/0/1 on core-sw1 is down", "disk on db-1 fills soon"]
    assert list(table["Page"]) == ["/network", "/servers"]
    assert table["Labels"][0] == "ifName=ge-0/0/1"
    assert table["Since"][0].endswith(" ago")
    groups = at.dataframe[1].value
    assert list(groups["Group"]) == ["page"] and list(groups["Rules"]) == [3]
    assert list(groups["Health"]) == ["● ok"]


def test_alerts_page_without_rules_says_what_to_run(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, spawn) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    spawn(sotp_cmd("serve", "--listen", f"127.0.0.1:{port}", "--storage", f"sqlite:///{tmp_path / 's.db'}"),
          name="serve")
    wait_for_port(port, timeout=60)
    monkeypatch.setenv(ENV_API, f"http://127.0.0.1:{port}")
    monkeypatch.delenv(ENV_TOKEN_FILE, raising=False)
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("views/alerts.py").run()
    assert not at.exception
    assert "No rules are loaded" in at.info[0].value and "sotp ruler" in at.info[0].value


def _shape(x: object) -> object:
    """The JSON structure: keys and value types, with lists reduced to their elements' shapes."""
    if isinstance(x, dict):
        return {k: _shape(v) for k, v in sorted(x.items())}
    if isinstance(x, list):
        shapes = [_shape(v) for v in x]
        return [s for i, s in enumerate(shapes) if s not in shapes[:i]]
    return type(x).__name__


@pytest.mark.integration
def test_rules_and_alerts_have_prometheus_shapes(tmp_path: Path, spawn) -> None:  # type: ignore[no-untyped-def]
    """The same rule file on Prometheus 2.42 and on sotp serve + sotp ruler gives the same JSON structure."""
    (tmp_path / "rules.yml").write_text(RULES)
    exe = require_binary("prometheus")
    (tmp_path / "prometheus.yml").write_text("rule_files: [rules.yml]\n")
    prom_port, serve_port, ruler_port = free_port(), free_port(), free_port()
    spawn([exe, f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
           f"--web.listen-address=127.0.0.1:{prom_port}"], name="prometheus")
    storage = f"sqlite:///{tmp_path / 'sotp.db'}"
    spawn(sotp_cmd("serve", "--listen", f"127.0.0.1:{serve_port}", "--storage", storage, "--ruler-url",
                   f"http://127.0.0.1:{ruler_port}"), name="serve")
    spawn(sotp_cmd("ruler", "--listen", f"127.0.0.1:{ruler_port}", "--storage", storage, "--rule-file",
                   str(tmp_path / "rules.yml")), name="ruler")
    bodies = {}
    for name, port in (("prometheus", prom_port), ("sotp", serve_port)):
        wait_for_port(port, timeout=60)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(_alerts(url)) < 2:
            time.sleep(0.5)
        got = {}
        for path in ("/api/v1/rules", "/api/v1/alerts", "/api/v1/rules?type=record"):
            with urllib.request.urlopen(url + path, timeout=10) as r:
                got[path] = json.loads(r.read())
        bodies[name] = got
    for path in bodies["prometheus"]:
        assert _shape(bodies["sotp"][path]) == _shape(bodies["prometheus"][path]), path
    prom_rules = bodies["prometheus"]["/api/v1/rules"]["data"]["groups"][0]["rules"]
    sotp_rules = bodies["sotp"]["/api/v1/rules"]["data"]["groups"][0]["rules"]
    strip = ("evaluationTime", "lastEvaluation", "alerts")
    assert [{k: v for k, v in r.items() if k not in strip} for r in sotp_rules] == \
           [{k: v for k, v in r.items() if k not in strip} for r in prom_rules]
