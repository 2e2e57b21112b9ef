"""Deployment files are rendered and validated with real tools, and cross-checked against the code.

kustomize (``kubectl kustomize``) renders every overlay; kubernetes-validate checks each object
strictly (unknown fields are errors); yamllint and ``systemd-analyze verify`` run on their files; and
every command line, flag, port, probe path and image tag in the manifests must exist in SOTP itself.
"""

from __future__ import annotations

import argparse
import importlib
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

import sotp
from sotp.cli import COMMANDS, EXPORTERS
from sotp.config import load_config
from tests.conftest import REPO, require_binary

DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
KUSTOMIZATIONS = [K8S / "base", K8S / "overlays" / "k3s"]
K8S_VERSION = "1.31.0"  # K3s stable channel at the time of writing


def render(path: Path) -> list[dict[str, Any]]:
    kubectl = require_binary("kubectl")
    out = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True, check=True).stdout
    return [d for d in yaml.safe_load_all(out) if d]


@pytest.fixture(scope="module", params=KUSTOMIZATIONS, ids=lambda p: str(p.relative_to(K8S)))
def rendered(request: pytest.FixtureRequest) -> list[dict[str, Any]]:
    return render(request.param)


def is_crd(obj: dict[str, Any]) -> bool:
    return str(obj["apiVersion"]).split("/")[0].endswith("traefik.io")


def test_every_object_validates_strictly(rendered: list[dict[str, Any]]) -> None:
    import kubernetes_validate

    assert rendered
    for obj in rendered:
        if is_crd(obj):
            continue
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def test_traefik_objects_have_known_shape(rendered: list[dict[str, Any]]) -> None:
    # Traefik's CRD schemas are not in kubernetes-validate: check what Traefik v3 requires of a Middleware.
    for obj in filter(is_crd, rendered):
        assert obj["apiVersion"] == "traefik.io/v1alpha1"
        assert obj["kind"] == "Middleware"
        assert obj["metadata"]["name"] and obj["metadata"]["namespace"] == "sotp"
        assert set(obj["spec"]) <= {"buffering", "headers", "stripPrefix", "redirectScheme", "ipAllowList",
                                    "basicAuth"}
        assert set(obj["spec"].get("buffering", {})) <= {
            "maxRequestBodyBytes",
            "memRequestBodyBytes",
            "maxResponseBodyBytes",
            "memResponseBodyBytes",
            "retryExpression",
        }
        if "basicAuth" in obj["spec"]:
            assert set(obj["spec"]["basicAuth"]) <= {"secret", "realm", "removeHeader", "headerField"}
            assert obj["spec"]["basicAuth"]["secret"]


def containers(objs: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for obj in objs:
        spec = obj.get("spec", {}).get("template", {}).get("spec")
        if spec:
            out.extend((obj["metadata"]["name"], c) for c in spec["containers"])
    return out


def sotp_argv(container: dict[str, Any]) -> list[str] | None:
    """The sotp argv a container runs (unwrapping ``sh -c 'exec sotp ...'``), or None for other images."""
    if container.get("command", [None])[0] == "/bin/sh":
        script = " ".join(container["args"])
        words = shlex.split(script.replace("exec sotp", "sotp", 1))
        return words[1:] if words and words[0] == "sotp" else None
    if not str(container["image"]).endswith("/sotp:" + sotp.__version__) and container["image"] != "sotp":
        return None
    return list(container.get("args", []))


def parse_with_sotp(argv: list[str]) -> argparse.Namespace:
    """Parse a command line exactly as the ``sotp`` CLI would, failing on unknown flags."""
    cmd = COMMANDS[argv[0]]
    rest = argv[1:]
    if argv[0] == "exporter":
        cmd, rest = EXPORTERS[argv[1]], argv[2:]
    module = importlib.import_module(cmd.module)
    parser = argparse.ArgumentParser(prog="sotp", exit_on_error=False)
    module.configure_parser(parser)
    return parser.parse_args(rest)


def test_container_command_lines_parse_with_the_real_cli(rendered: list[dict[str, Any]]) -> None:
    seen = 0
    for name, c in containers(rendered):
        argv = sotp_argv(c)
        if argv is None:
            continue
        seen += 1
        try:
            parse_with_sotp(argv)
        except (argparse.ArgumentError, SystemExit) as err:
            pytest.fail(f"{name}/{c['name']}: {argv} does not parse: {err}")
    assert seen >= 4


def test_ports_probes_and_images_match_the_code(rendered: list[dict[str, Any]]) -> None:
    from sotp.cli.serve import build_app
    from sotp.config import Config

    cfg = Config()
    cfg.server.storage = "memory://"
    serve_paths = {r.canonical for r in build_app(cfg).router.resources()}
    for name, c in containers(rendered):
        argv = sotp_argv(c)
        if argv is None:
            assert c["image"].startswith("timescale/timescaledb:"), c["image"]
            continue
        assert c["image"] == f"ghcr.io/sotp/sotp:{sotp.__version__}"
        listen = next((argv[i + 1] for i, a in enumerate(argv) if a == "--listen"), None)
        port = next((argv[i + 1] for i, a in enumerate(argv) if a == "--port"), None)
        declared = {p["containerPort"] for p in c.get("ports", [])}
        if listen:
            assert int(listen.rsplit(":", 1)[1]) in declared, f"{name}: --listen {listen} vs ports {declared}"
        if port:
            assert int(port) in declared
        for probe in ("readinessProbe", "livenessProbe"):
            path = c.get(probe, {}).get("httpGet", {}).get("path")
            if path and argv[0] == "serve":
                assert path in serve_paths, f"{name}: {probe} {path} is not served by sotp serve"


def test_probe_paths_exist_in_component_sources(rendered: list[dict[str, Any]]) -> None:
    sources = {
        "worker": "".join(p.read_text() for p in (REPO / "worker").rglob("*.py")),
        "exporter": "".join(p.read_text() for p in (REPO / "exporters").rglob("*.py")),
    }
    for name, c in containers(rendered):
        argv = sotp_argv(c)
        if not argv or argv[0] not in sources:
            continue
        for probe in ("readinessProbe", "livenessProbe"):
            path = c.get(probe, {}).get("httpGet", {}).get("path")
            if path:
                assert f'"{path}"' in sources[argv[0]], f"{name}: {path} not found in {argv[0]} code"


def test_shipped_sotp_yml_is_a_valid_config(tmp_path: Path) -> None:
    config = load_config(K8S / "base" / "sotp.yml")
    assert config.server.listen == "0.0.0.0:9201"
    from worker.scrape.config import worker_config

    # The worker reads the scrape token file at load: stand in for the mounted Secret.
    (tmp_path / "scrape-token").write_text("sotp_000000000000_" + "x" * 43)
    for job in config.scrape_configs:
        if "authorization" in job:
            job["authorization"]["credentials_file"] = str(tmp_path / "scrape-token")
    assert [job.cfg.job_name for job in worker_config(config).jobs] == ["sotp", "snmp"]


def _mounts(objs: list[dict[str, Any]], component: str, secret: str) -> list[str]:
    """Mount paths at which ``component``'s containers see the Secret ``secret``."""
    out = []
    for obj in objs:
        spec = obj.get("spec", {}).get("template", {}).get("spec")
        if not spec or obj["metadata"]["name"] != f"sotp-{component}":
            continue
        volumes = {v["name"] for v in spec.get("volumes", []) if v.get("secret", {}).get("secretName") == secret}
        for c in spec["containers"]:
            out += [m["mountPath"] for m in c.get("volumeMounts", []) if m["name"] in volumes]
    return out


def _under(path: str, mounts: list[str]) -> bool:
    return any(path.startswith(m.rstrip("/") + "/") for m in mounts)


def test_issue17_k3s_tokens_are_wired_to_every_component(rendered: list[dict[str, Any]]) -> None:
    """The manifests failed closed: tokens were mounted but never configured, and the sotp job sent none."""
    config = load_config(K8S / "base" / "sotp.yml")
    tokens_file = config.auth["tokens_file"]
    for component in ("serve", "worker"):
        assert _under(tokens_file, _mounts(rendered, component, "sotp-tokens")), component
    (job,) = [j for j in config.scrape_configs if j["job_name"] == "sotp"]
    assert _under(job["authorization"]["credentials_file"], _mounts(rendered, "worker", "sotp-tokens"))
    for name, c in containers(rendered):
        argv = sotp_argv(c)
        if argv and argv[0] == "dashboard":
            token_file = parse_with_sotp(argv).token_file
            assert token_file and _under(token_file, _mounts(rendered, "dashboard", "sotp-tokens")), name


def test_issue17_k3s_dashboard_is_behind_basic_auth() -> None:
    objs = render(K8S / "overlays" / "k3s")
    basic = {o["metadata"]["name"] for o in objs if is_crd(o) and "basicAuth" in o["spec"]}
    dashboards = [o for o in objs if o["kind"] == "Ingress" and any(
        p["backend"]["service"]["name"] == "sotp-dashboard"
        for rule in o["spec"]["rules"] for p in rule["http"]["paths"])]
    assert dashboards
    for ing in dashboards:
        refs = ing["metadata"].get("annotations", {}).get("traefik.ingress.kubernetes.io/router.middlewares", "")
        # Traefik names a CRD middleware <namespace>-<name>@kubernetescrd.
        names = {r.split("@")[0].removeprefix(ing["metadata"]["namespace"] + "-") for r in refs.split(",") if r}
        assert names & basic, (ing["metadata"]["name"], refs)


def test_yamllint_clean() -> None:
    files = [str(p) for p in DEPLOY.rglob("*.y*ml")]
    conf = (
        "{extends: default, rules: {line-length: {max: 130}, document-start: disable, "
        "indentation: {indent-sequences: consistent}, comments: {min-spaces-from-content: 1}, "
        "braces: {max-spaces-inside: 1}, brackets: {max-spaces-inside: 1}, truthy: {check-keys: false}}}"
    )
    r = subprocess.run(["yamllint", "-f", "parsable", "-d", conf, *files], capture_output=True, text=True,
                       cwd=REPO, env={"PATH": str(Path(__import__("sys").executable).parent) + ":/usr/bin:/bin"})
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.parametrize("unit", sorted((DEPLOY / "systemd").glob("*.service")), ids=lambda p: p.name)
def test_systemd_units_verify(unit: Path, tmp_path: Path) -> None:
    analyze = require_binary("systemd-analyze")
    # verify checks that ExecStart exists: point it at a stand-in so only the unit's syntax is judged.
    text = re.sub(r"ExecStart=/opt/sotp/bin/sotp", f"ExecStart={tmp_path}/sotp", unit.read_text())
    (tmp_path / "sotp").write_text("#!/bin/sh\n")
    (tmp_path / "sotp").chmod(0o755)
    copy = tmp_path / unit.name
    copy.write_text(text)
    r = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True)
    problems = [ln for ln in (r.stdout + r.stderr).splitlines() if unit.name in ln or "Unknown" in ln]
    assert r.returncode == 0 and not problems, r.stdout + r.stderr


def test_dockerfile_copies_every_package_and_exposes_serve_port() -> None:
    text = (DEPLOY / "docker" / "Dockerfile").read_text()
    for pkg in ("sotp", "exporters", "remote_write", "query", "worker", "agent", "dashboards"):
        assert f"COPY {pkg} ./{pkg}" in text and (REPO / pkg).is_dir()
    assert "EXPOSE 9201" in text and "USER 10001" in text


def test_compose_commands_parse_with_the_real_cli() -> None:
    compose = yaml.safe_load((DEPLOY / "docker" / "compose.yaml").read_text())
    for name, svc in compose["services"].items():
        if str(svc.get("image", "")).startswith("sotp:"):
            argv = [a.replace("${SOTP_DB_PASSWORD}", "pw") for a in svc["command"]]
            parse_with_sotp(argv)
            assert svc["image"] == f"sotp:{sotp.__version__}", name
