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
            assert c["image"].startswith(("timescale/timescaledb:", "prom/alertmanager:")), c["image"]
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
        "ruler": "".join(p.read_text() for p in (REPO / "rules").rglob("*.py")),
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
    for component in ("serve", "worker", "ruler"):  # each loads sotp.yml whole, tokens_file and scrape token
        assert _under(tokens_file, _mounts(rendered, component, "sotp-tokens")), component
    (job,) = [j for j in config.scrape_configs if j["job_name"] == "sotp"]
    for component in ("worker", "ruler"):
        assert _under(job["authorization"]["credentials_file"], _mounts(rendered, component, "sotp-tokens"))
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
    import tomllib

    text = (DEPLOY / "docker" / "Dockerfile").read_text()
    # Every package the wheel has (the image lacked rules/, so sotp serve, which loads rules.api, and sotp
    # ruler could not start in it).
    include = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = [p.removesuffix("*") for p in include]
    assert "rules" in packages
    for pkg in packages:
        assert f"COPY {pkg} ./{pkg}" in text and (REPO / pkg).is_dir(), pkg
    assert "EXPOSE 9201" in text and "USER 10001" in text


def test_compose_commands_parse_with_the_real_cli() -> None:
    compose = yaml.safe_load((DEPLOY / "docker" / "compose.yaml").read_text())
    for name, svc in compose["services"].items():
        if str(svc.get("image", "")).startswith("sotp:"):
            argv = [a.replace("${SOTP_DB_PASSWORD}", "pw") for a in svc["command"]]
            parse_with_sotp(argv)
            assert svc["image"] == f"sotp:{sotp.__version__}", name


# -- the ruler and Alertmanager in every deployment -----------------------------------------------------

SHIPPED_RULES = sorted(p.name for p in (DEPLOY / "rules").glob("*.rules.yml"))


def _objects(objs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}


def _workload(objs: list[dict[str, Any]], service: str, port: int) -> dict[str, Any]:
    """The pod template behind ``service:port`` (its selector's workload), checking the port is declared."""
    svc = _objects(objs, "Service")[service]
    (sport,) = [p for p in svc["spec"]["ports"] if p["port"] == port]
    (obj,) = [o for o in objs if o["kind"] in ("Deployment", "StatefulSet")
              and svc["spec"]["selector"].items() <= o["spec"]["template"]["metadata"]["labels"].items()]
    pod: dict[str, Any] = obj["spec"]["template"]
    named = {p["name"]: p["containerPort"] for c in pod["spec"]["containers"] for p in c.get("ports", [])}
    assert named.get(sport["targetPort"], sport["targetPort"]) in named.values(), (service, port)
    return pod


def _sotp_args(pod: dict[str, Any], command: str) -> argparse.Namespace:
    (argv,) = [a for c in pod["spec"]["containers"] if (a := sotp_argv(c)) and a[0] == command]
    return parse_with_sotp(argv)


def test_k8s_runs_the_ruler_with_the_shipped_rules_and_alertmanager(rendered: list[dict[str, Any]]) -> None:
    """The ruler evaluates exactly deploy/rules/*.rules.yml (the generated ConfigMap, mounted where its
    --rule-file glob looks), posts to the Alertmanager Service, and serve asks it for rules and alerts."""
    from fnmatch import fnmatch

    (serve_pod,) = [o["spec"]["template"] for o in rendered if o["metadata"]["name"] == "sotp-serve"
                    and o["kind"] == "Deployment"]
    (ruler_url,) = _sotp_args(serve_pod, "serve").ruler_url
    host, port = ruler_url.removeprefix("http://").split(":")
    ruler_pod = _workload(rendered, host, int(port))
    ruler = _sotp_args(ruler_pod, "ruler")
    assert ruler.listen.endswith(f":{port}")
    (glob,) = ruler.rule_file
    (container,) = ruler_pod["spec"]["containers"]
    (mount,) = [m for m in container["volumeMounts"] if glob.startswith(m["mountPath"] + "/")]
    (volume,) = [v for v in ruler_pod["spec"]["volumes"] if v["name"] == mount["name"]]
    data = _objects(rendered, "ConfigMap")[volume["configMap"]["name"]]["data"]
    loaded = {k: v for k, v in data.items() if fnmatch(f"{mount['mountPath']}/{k}", glob)}
    assert loaded == {n: (DEPLOY / "rules" / n).read_text() for n in SHIPPED_RULES}
    (am,) = ruler.alertmanager
    am_host, am_port = am.split(":")
    am_pod = _workload(rendered, am_host, int(am_port))
    (am_container,) = am_pod["spec"]["containers"]
    assert am_container["image"].startswith("prom/alertmanager:")
    config_file = next(a.split("=", 1)[1] for a in am_container["args"] if a.startswith("--config.file="))
    (am_mount,) = [m for m in am_container["volumeMounts"] if config_file.startswith(m["mountPath"] + "/")]
    (am_volume,) = [v for v in am_pod["spec"]["volumes"] if v["name"] == am_mount["name"]]
    am_data = _objects(rendered, "ConfigMap")[am_volume["configMap"]["name"]]["data"]
    assert am_data[config_file.rsplit("/", 1)[1]] == (K8S / "base" / "alertmanager.yml").read_text()
    # The network policies let serve reach the ruler, the ruler reach Alertmanager and the database.
    policies = _objects(rendered, "NetworkPolicy")
    assert policies["sotp-ruler-ingress"]["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "sotp-serve"}
    assert policies["sotp-alertmanager-ingress"]["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"] == {
        "app.kubernetes.io/name": "sotp-ruler"}
    (db_from,) = policies["sotp-timescaledb-ingress"]["spec"]["ingress"][0]["from"]
    (expr,) = db_from["podSelector"]["matchExpressions"]
    assert ruler_pod["metadata"]["labels"]["app.kubernetes.io/component"] in expr["values"]


def test_compose_runs_the_ruler_with_the_shipped_rules_and_alertmanager() -> None:
    from fnmatch import fnmatch

    services = yaml.safe_load((DEPLOY / "docker" / "compose.yaml").read_text())["services"]

    def args(name: str) -> argparse.Namespace:
        return parse_with_sotp([a.replace("${SOTP_DB_PASSWORD}", "pw") for a in services[name]["command"]])

    (ruler_url,) = args("serve").ruler_url
    host, port = ruler_url.removeprefix("http://").split(":")
    ruler = args(host)
    assert ruler.listen.endswith(f":{port}")
    assert ruler.storage == args("serve").storage
    (glob,) = ruler.rule_file
    mounts = {dst: (DEPLOY / "docker" / src).resolve() for src, dst, *_ in
              (v.split(":") for v in services[host]["volumes"])}
    (mount,) = [d for d in mounts if glob.startswith(d + "/")]
    loaded = sorted(p.name for p in mounts[mount].iterdir() if fnmatch(f"{mount}/{p.name}", glob))
    assert loaded == SHIPPED_RULES
    # The scrape token sotp.yml names is mounted (the ruler checks the whole file at start).
    assert mounts["/etc/sotp/tokens"] == (DEPLOY / "docker" / "tokens").resolve()
    (am,) = ruler.alertmanager
    am_host, am_port = am.split(":")
    assert services[am_host]["image"].startswith("prom/alertmanager:")
    assert f"--web.listen-address=:{am_port}" in services[am_host]["command"]
    am_mounts = dict(v.split(":")[1::-1] for v in services[am_host]["volumes"])
    config_file = next(a.split("=", 1)[1] for a in services[am_host]["command"] if a.startswith("--config.file="))
    assert (DEPLOY / "docker" / am_mounts[config_file]).resolve() == (K8S / "base" / "alertmanager.yml").resolve()


def _unit(name: str) -> dict[str, list[str]]:
    """A systemd unit's [Service] settings (continuation lines joined), each key's values in order."""
    text = (DEPLOY / "systemd" / name).read_text().replace("\\\n", " ")
    out: dict[str, list[str]] = {}
    for line in text.split("[Service]", 1)[1].split("\n[", 1)[0].splitlines():
        if "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            out.setdefault(key, []).append(value)
    return out


def _exec_argv(unit: dict[str, list[str]]) -> list[str]:
    """ExecStart's sotp argv with the unit's Environment= defaults substituted, as systemd would."""
    env = dict(e.split("=", 1) for e in unit.get("Environment", []))
    words = shlex.split(unit["ExecStart"][0])
    assert words[0] == "/opt/sotp/bin/sotp"
    return [re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], w) for w in words[1:]]


def test_systemd_runs_the_ruler_beside_serve() -> None:
    serve_unit, ruler_unit = _unit("sotp-serve.service"), _unit("sotp-ruler.service")
    serve, ruler = parse_with_sotp(_exec_argv(serve_unit)), parse_with_sotp(_exec_argv(ruler_unit))
    (ruler_url,) = serve.ruler_url
    assert ruler_url == f"http://{ruler.listen}"
    assert ruler.storage == serve.storage  # one store...
    for key in ("User", "StateDirectory", "DynamicUser"):  # ...written by one (dynamic) user in one directory
        assert serve_unit[key] == ruler_unit[key], key
    assert ruler.rule_file == ["/etc/sotp/rules/*.rules.yml"] and ruler.alertmanager == ["127.0.0.1:9093"]


def test_alertmanager_config_is_valid_and_its_version_is_the_tested_one() -> None:
    amtool = require_binary("amtool")
    r = subprocess.run([amtool, "check-config", str(K8S / "base" / "alertmanager.yml")], capture_output=True, text=True)
    assert r.returncode == 0 and "SUCCESS" in r.stdout, r.stdout + r.stderr
    # The alerting tests run against Debian's Alertmanager: the deployments run the same version.
    out = subprocess.run([require_binary("prometheus-alertmanager"), "--version"], capture_output=True, text=True)
    tested = re.search(r"version (\d+\.\d+\.\d+)", out.stdout + out.stderr)
    assert tested, out
    images = set(re.findall(r"image:\s*(prom/alertmanager:\S+)", (DEPLOY / "docker" / "compose.yaml").read_text()
                            + (K8S / "base" / "alertmanager.yaml").read_text()))
    assert images == {f"prom/alertmanager:v{tested.group(1)}"}
