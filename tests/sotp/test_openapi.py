"""The API describes itself (issue 23): the OpenAPI document matches the routes ``sotp serve`` registers, and
schemathesis against a live server finds no 5xx and no response contradicting the description."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from sotp.cli.serve import build_app
from sotp.config import Config
from sotp.openapi import DOCS_PATH, SPEC_PATH, description
from tests.conftest import REPO, Proc, free_port, missing, sotp_cmd, wait_for_port

METHODS = {"get", "post", "put", "delete", "patch"}


def served_routes() -> set[tuple[str, str]]:
    config = Config()
    config.server.storage = "memory://"
    app = build_app(config)
    # aiohttp adds HEAD beside every GET by itself; OpenAPI describes the GET
    return {(r.method.lower(), r.resource.canonical) for r in app.router.routes()
            if r.resource is not None and r.method.lower() in METHODS}


def test_description_lists_exactly_the_served_routes() -> None:
    spec = description()
    described = {(m, path) for path, ops in spec["paths"].items() for m in ops}
    served = served_routes()
    assert described - served == set(), "described but not served"
    assert served - described == set(), "served but not described: add them to sotp/openapi.py"


@pytest.fixture
def server(tmp_path: Path) -> str:
    port = free_port()
    proc = Proc(sotp_cmd("serve", "--listen", f"127.0.0.1:{port}", "--data-dir", str(tmp_path)), tmp_path / "serve.log")
    wait_for_port(port, timeout=60)
    yield f"http://127.0.0.1:{port}"  # type: ignore[misc]
    proc.stop()


def test_spec_and_reference_page_are_served(server: str) -> None:
    with urllib.request.urlopen(server + SPEC_PATH, timeout=10) as r:
        assert r.headers["Content-Type"].startswith("application/json")
        assert json.loads(r.read()) == json.loads(json.dumps(description()))
    with urllib.request.urlopen(server + DOCS_PATH, timeout=10) as r:
        page = r.read().decode()
    assert r.headers["Content-Type"].startswith("text/html")
    for path in ("/api/v1/write", "/api/v1/query_range", "/metrics/{job_path}", "/api/v1/configs/{device}/diff"):
        assert f"{path}</code>" in page


def test_schemathesis_finds_no_server_error_and_no_contradiction(server: str, tmp_path: Path) -> None:
    cli = shutil.which("schemathesis", path=str(Path(sys.executable).parent))
    if cli is None:
        missing("schemathesis is not installed (pip install 'sotp[dev]')")
    assert cli is not None
    r = subprocess.run(
        [cli, "run", server + SPEC_PATH, "--checks",
         "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
         "--phases", "examples,coverage,fuzzing", "--max-examples", "25", "--seed", "23", "--workers", "1",
         "--request-timeout", "30", "--suppress-health-check", "all", "--no-color"],
        capture_output=True, text=True, timeout=1200, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO), "SCHEMATHESIS_HOOKS": "tests.sotp.schemathesis_hooks"},
    )
    assert r.returncode == 0, r.stdout[-12000:] + r.stderr[-3000:]
