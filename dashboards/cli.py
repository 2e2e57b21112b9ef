"""``sotp dashboard``: serve the Streamlit app headless on 127.0.0.1 until SIGTERM or Ctrl-C.

It runs ``python -m streamlit run dashboards/app.py`` as a child process with the API URL, token file and
scrape interval in the environment (:mod:`dashboards.ui` reads them), forwards SIGTERM/SIGINT to it and
returns its exit code. ``sotp up`` runs this command as one of its children.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType
from urllib.parse import urlparse

from dashboards.timerange import parse_scrape_interval
from dashboards.ui import DEFAULT_API, ENV_API, ENV_REFRESH, ENV_SCRAPE, ENV_TOKEN_FILE, REFRESH
from sotp.errors import ConfigError

APP = Path(__file__).resolve().parent / "app.py"


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--api", default=DEFAULT_API,
                        help=f"Prometheus-compatible API to read (sotp serve or Prometheus; default {DEFAULT_API})")
    parser.add_argument("--port", type=int, default=8501, help="port of the web app (default 8501)")
    parser.add_argument("--address", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--token-file", help="file holding a bearer token with the read scope")
    parser.add_argument("--scrape-interval", default="15s",
                        help="interval of the data (agent/scrape), sizes rate() windows (default 15s)")
    parser.add_argument("--refresh", default="30s", choices=list(REFRESH),
                        help="initial auto-refresh interval (default 30s)")


def streamlit_argv(args: argparse.Namespace) -> list[str]:
    """The child's command line: headless, no usage stats, no tracebacks in the browser."""
    return [
        sys.executable, "-m", "streamlit", "run", str(APP),
        "--server.headless", "true",
        "--server.address", args.address,
        "--server.port", str(args.port),
        "--browser.gatherUsageStats", "false",
        "--client.showErrorDetails", "none",
        "--client.toolbarMode", "minimal",
        "--server.fileWatcherType", "none",
        "--theme.base", "light",
        "--theme.primaryColor", "#4c78a8",
    ]


def check_args(args: argparse.Namespace) -> str | None:
    """An error message for flags that cannot work, else ``None``."""
    url = urlparse(args.api)
    if url.scheme not in ("http", "https") or not url.netloc:
        return f"--api {args.api!r}: use the API's base URL, e.g. {DEFAULT_API} (no /api/v1 path)"
    if url.path.rstrip("/").endswith("/api/v1"):
        return f"--api {args.api!r}: drop the /api/v1 suffix, the dashboard adds it"
    if args.token_file and not os.access(args.token_file, os.R_OK):
        return f"--token-file {args.token_file!r}: file not readable"
    try:
        parse_scrape_interval(args.scrape_interval)
    except ConfigError as err:
        return str(err)
    return None


def run(args: argparse.Namespace) -> int:
    problem = check_args(args)
    if problem:
        sys.stderr.write(f"sotp dashboard: {problem}\n")
        return 2
    env = dict(os.environ)
    root = str(APP.parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    env[ENV_API] = args.api
    env[ENV_SCRAPE] = args.scrape_interval
    env[ENV_REFRESH] = args.refresh
    if args.token_file:
        env[ENV_TOKEN_FILE] = str(Path(args.token_file).resolve())
    print(f"sotp dashboard: http://{args.address}:{args.port} reading {args.api}", flush=True)
    if args.address not in ("127.0.0.1", "::1", "localhost"):
        print(f"sotp dashboard: warning: listening on {args.address}; the app has no login of its own, so anyone "
              "who reaches it reads the API with its token (put an authenticating proxy in front)", flush=True)
    child = subprocess.Popen(streamlit_argv(args), env=env)

    def forward(signum: int, frame: FrameType | None) -> None:
        if child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    try:
        return child.wait()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
