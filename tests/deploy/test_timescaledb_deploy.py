"""The deployments run TimescaleDB the way the tests do: the image is the TimescaleDB and PostgreSQL versions
the TimescaleDB-parametrised tests run against, and every storage URL asks for ``timescaledb=on`` (so a
server without a usable extension refuses to start instead of silently falling back)."""

from __future__ import annotations

import re
from pathlib import Path

import psycopg
import yaml

from sotp.storage.pg.options import parse_url
from tests.conftest import REPO, require_timescaledb

COMPOSE = REPO / "deploy/docker/compose.yaml"
K8S_DB = REPO / "deploy/k8s/base/timescaledb.yaml"
DEPLOY_DOC = REPO / "docs/deploy.md"


def _images(path: Path) -> set[str]:
    return set(re.findall(r"image:\s*(timescale/timescaledb:\S+)", path.read_text()))


def test_compose_and_k3s_run_one_timescaledb_image() -> None:
    assert _images(COMPOSE) == _images(K8S_DB) and len(_images(COMPOSE)) == 1


def test_every_storage_url_asks_for_timescaledb_on() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    urls = []
    for name in ("serve", "worker", "ruler"):
        command = services[name]["command"]
        urls.append(command[command.index("--storage") + 1].replace("${SOTP_DB_PASSWORD}", "pw"))
    # K3s: the URL is the sotp-db Secret's, made with the command docs/deploy.md gives.
    urls += [u.replace("$PW", "pw") for u in re.findall(r'--from-literal=url="([^"]+)"', DEPLOY_DOC.read_text())]
    assert len(urls) == 4
    for url in urls:
        assert parse_url(url).timescaledb == "on", url


def test_the_image_is_the_version_the_tests_run_on() -> None:
    (image,) = _images(COMPOSE)
    m = re.fullmatch(r"timescale/timescaledb:(\d+\.\d+\.\d+)-pg(\d+)", image)
    assert m, image
    with psycopg.connect(require_timescaledb(), autocommit=True) as conn:
        row = conn.execute(
            "SELECT default_version, current_setting('server_version_num')::int / 10000 "
            "FROM pg_available_extensions WHERE name = 'timescaledb'"
        ).fetchone()
    assert row == (m.group(1), int(m.group(2))), f"tests run TimescaleDB {row}, the deployments {image}"
