"""Grafana provisioning and dashboards: structure, and every expression run the way Grafana runs it.

Grafana itself is not installable here, so the test does Grafana's part: it resolves each template
variable through ``label_values()`` (``/api/v1/label/<name>/values`` with ``match[]``, as Grafana does
for a provisioned Prometheus >= 2.24), substitutes ``$var``, ``$__interval`` and ``$__rate_interval``
as Grafana does (multi-value "All" -> the variable's ``allValue``), and sends every panel target and
annotation as a form POST query or query_range. Any error or empty result fails.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from dashboards import grafana_build
from dashboards.promapi import PromClient
from dashboards.timerange import format_duration
from sotp.config import parse_duration
from tests.conftest import REPO
from tests.dashboards import dataset as ds
from tests.dashboards.conftest import Backend

GRAFANA = REPO / "dashboards" / "grafana"
DASHBOARDS = sorted((GRAFANA / "dashboards").glob("*.json"))
#: The provisioned data source's timeInterval: Grafana's floor for $__interval and its scrape interval.
SCRAPE_S = 15
_LABEL_VALUES = re.compile(r"^label_values\((?:(?P<selector>.+),\s*)?(?P<label>[a-zA-Z_][a-zA-Z0-9_]*)\s*\)$")
_VAR = re.compile(r"\$(\w+)|\$\{(\w+)(?::\w+)?\}")


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def test_committed_json_matches_the_builder() -> None:
    assert grafana_build.main(["--check"]) == 0, "run: python -m dashboards.grafana_build"
    assert {p.name for p in DASHBOARDS} == set(grafana_build.DASHBOARDS)


def test_datasource_provisioning() -> None:
    doc = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "sotp.yaml").read_text())
    assert doc["apiVersion"] == 1
    [ds] = doc["datasources"]
    assert ds["type"] == "prometheus" and ds["access"] == "proxy"
    assert ds["uid"] == grafana_build.DS_UID
    assert ds["jsonData"]["prometheusType"] == "Prometheus"
    assert ds["jsonData"]["prometheusVersion"] == "2.42.0"
    assert ds["jsonData"]["httpMethod"] == "POST"
    assert ds["jsonData"]["timeInterval"] == f"{SCRAPE_S}s"
    assert ds["jsonData"]["httpHeaderName1"] == "Authorization"
    assert ds["secureJsonData"]["httpHeaderValue1"].startswith("Bearer ${")


def test_dashboard_provider() -> None:
    doc = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "sotp.yaml").read_text())
    assert doc["apiVersion"] == 1
    [provider] = doc["providers"]
    assert provider["type"] == "file" and provider["options"]["path"]


@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.stem for p in DASHBOARDS])
def test_dashboard_structure(path: Path) -> None:
    dash = _load(path)
    assert "${DS_" not in path.read_text(), "reference the data source by variable, not an import placeholder"
    variables = dash["templating"]["list"]
    assert variables[0]["type"] == "datasource" and variables[0]["current"]["value"] == grafana_build.DS_UID
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dash["panels"]:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}"
        assert panel["targets"], panel["title"]
        for t in panel["targets"]:
            assert t["datasource"]["uid"] == "${datasource}"
            assert t["expr"].strip()
    for var in variables[1:]:
        assert _LABEL_VALUES.match(var["definition"]), var["definition"]
        assert var["query"]["query"] == var["definition"]


# -- running the expressions -----------------------------------------------------------------------------


def _interpolate(text: str, values: dict[str, str]) -> str:
    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name not in values:
            raise AssertionError(f"unknown variable ${name} in {text!r}")
        return values[name]

    return _VAR.sub(sub, text)


def _resolve_variables(client: PromClient, dash: dict[str, Any], start: float, end: float,
                       builtins: dict[str, str]) -> dict[str, str]:
    values = dict(builtins)
    for var in dash["templating"]["list"]:
        if var["type"] == "datasource":
            values[var["name"]] = grafana_build.DS_UID
            continue
        m = _LABEL_VALUES.match(var["definition"])
        assert m, var["definition"]
        selector = _interpolate(m.group("selector"), values) if m.group("selector") else None
        found = client.label_values(m.group("label"), [selector] if selector else [], start, end)
        assert found, f"variable ${var['name']}: {var['definition']} returned no values"
        if var.get("multi") and var.get("includeAll"):
            values[var["name"]] = var.get("allValue") or "(" + "|".join(re.escape(v) for v in found) + ")"
        else:
            values[var["name"]] = found[0]
    return values


def _problems(client: PromClient, dash: dict[str, Any], step_s: int) -> tuple[int, list[str]]:
    """Run every target and annotation of ``dash`` as Grafana would: (expressions run, problems found)."""
    end = float(int(time.time()) // step_s * step_s)  # Grafana aligns ranges to the step
    start = end - 3600
    builtins = {
        "__interval": format_duration(step_s),
        "__rate_interval": format_duration(max(step_s + SCRAPE_S, 4 * SCRAPE_S)),
        "__range": "1h",
    }
    values = _resolve_variables(client, dash, start, end, builtins)
    checked = 0
    problems: list[str] = []
    queries = [(f"{p['title']!r}/{t['refId']}", t["expr"], bool(t.get("instant")), "$__interval")
               for p in dash["panels"] for t in p["targets"]]
    queries += [(f"annotation {a['name']!r}", a["expr"], False, a.get("step", "$__interval"))
                for a in dash["annotations"]["list"] if "expr" in a]
    for where, template, instant, step_text in queries:
        expr = _interpolate(template, values)
        try:
            if instant:
                n = len(client.query(expr, end).samples)
            else:
                n = len(client.query_range(expr, start, end, parse_duration(_interpolate(step_text, values))))
        except Exception as err:  # every failure is collected, so one run lists them all
            problems.append(f"{where}: {expr} -> {err}")
            continue
        checked += 1
        if n == 0:
            problems.append(f"{where}: {expr} -> empty result")
    return checked, problems


@pytest.mark.parametrize("step_s", [15, 120], ids=["step15s", "step2m"])
@pytest.mark.parametrize("path", DASHBOARDS, ids=[p.stem for p in DASHBOARDS])
def test_every_expression_returns_data(backend: Backend, path: Path, step_s: int) -> None:
    dash = _load(path)
    checked, problems = _problems(PromClient(backend.url), dash, step_s)
    assert not problems, "\n".join(problems)
    assert checked == sum(len(p["targets"]) for p in dash["panels"]) + sum(
        1 for a in dash["annotations"]["list"] if "expr" in a
    )


def test_the_checker_reports_errors_and_empty_results(backend: Backend) -> None:
    dash = grafana_build.dashboard("t", "t", [], [grafana_build.query_var("job", "label_values(up, job)")], [
        grafana_build.P("timeseries", "ok", [grafana_build.Q('up{job=~"$job"}')]),
        grafana_build.P("timeseries", "broken", [grafana_build.Q("sum(")]),
        grafana_build.P("stat", "empty", [grafana_build.Q("no_such_metric", instant=True)]),
    ])
    checked, problems = _problems(PromClient(backend.url), dash, 15)
    assert checked == 2
    assert len(problems) == 2
    assert "'broken'/A: sum( -> bad_data" in problems[0]
    assert problems[1] == "'empty'/A: no_such_metric -> empty result"
    with pytest.raises(AssertionError, match="unknown variable"):
        _interpolate("up{job=$nope}", {})


def test_grafana_health_check_and_buildinfo(backend: Backend) -> None:
    """Grafana's "Save & test": ``1+1`` at time 4 must be the scalar 2; buildinfo must not claim Mimir."""
    client = PromClient(backend.url)
    result = client.query("1+1", 4)
    assert result.result_type == "scalar"
    assert [(s.t, s.value) for s in result.samples] == [(4.0, 2.0)]
    info = client.buildinfo()
    assert info.get("version")
    assert not info.get("features")


#: Device health on the Network interfaces dashboard, per device of the dataset (its SNMP instance): CPU
#: busy %, memory used % and the temperature of each sensor, as the Streamlit page shows them.
HEALTH = [
    ("core-sw1", 23.0, 100 * 65e6 / 120e6, {"CPU temp": 41.0, "I/O temp": 29.0}),  # Cisco: busiest CPU, pools
    ("192.0.2.254:161", 31.0, 47.0, {"Routing Engine 0": 39.0, "FPC: MPC 0": 52.0}),  # Juniper: PEM 0 has no sensor
    *((instance, cpu, mem, temps) for instance, (cpu, mem, temps) in sorted(ds.SNMP_HOSTS.items())),
]


@pytest.mark.parametrize(("instance", "cpu", "mem", "temps"), HEALTH, ids=[h[0] for h in HEALTH])
def test_network_dashboard_device_health(backend: Backend, instance: str, cpu: float, mem: float,
                                         temps: dict[str, float]) -> None:
    dash = _load(GRAFANA / "dashboards" / "network-interfaces.json")
    panels = {p["title"]: p["targets"][0] for p in dash["panels"]}
    client = PromClient(backend.url)
    end = float(int(time.time()) // 15 * 15)

    def run(title: str) -> list[tuple[dict[str, str], float]]:
        expr = _interpolate(panels[title]["expr"], {"device": instance})
        return [(s.labels, s.value) for s in client.query(expr, end).samples]

    [(_, got_cpu)] = run("CPU busy")
    [(_, got_mem)] = run("Memory used")  # HOST-RESOURCES, UCD: one value each
    assert (got_cpu, got_mem) == (pytest.approx(cpu), pytest.approx(mem))
    legend = panels["Temperatures"]["legendFormat"]
    got_temps = {_legend(legend, labels): v for labels, v in run("Temperatures")}
    assert got_temps == temps  # volts sensors (entSensorType 4) and sensorless components left out


def _legend(legend: str, labels: dict[str, str]) -> str:
    """Grafana's legend: ``{{label}}`` replaced by the value, an absent label by nothing."""
    return re.sub(r"\{\{(\w+)\}\}", lambda m: labels.get(m.group(1), ""), legend)
