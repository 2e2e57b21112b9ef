"""``sotp dashboard`` in real headless Chromium: each page loads, draws its charts, refreshes live.

Screenshots go to a temporary folder; set ``SOTP_SCREENSHOTS=docs/img`` to refresh the committed ones
(they are taken from the ``sotp`` backend run, so they show SOTP's own answers).
"""

from __future__ import annotations

import os
import re
import signal
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, Proc, free_port, require_binary, sotp_cmd
from tests.dashboards import dataset as ds
from tests.dashboards.conftest import Backend

pytestmark = [
    pytest.mark.integration,
    # The browser renders what the API returns; the API itself is checked on every store (TimescaleDB
    # included) by test_data/test_app/test_grafana, so two backends are enough for the slow browser runs.
    pytest.mark.parametrize("backend", ["prometheus", "sotp"], indirect=True, scope="module"),
]

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--force-device-scale-factor=1", "--window-size=1440,1000", "--hide-scrollbars",
]
CHARTS = '[data-testid="stVegaLiteChart"]'
WIDTH = 1440


@pytest.fixture(scope="module")
def dashboard(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``sotp dashboard`` reading the backend, refreshing every 10 s; stopped with SIGTERM."""
    port = free_port()
    log = tmp_path_factory.mktemp("dashboard") / "dashboard.log"
    proc = Proc(sotp_cmd("dashboard", "--api", backend.url, "--port", str(port), "--refresh", "10s"), log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as resp:
                if resp.read() == b"ok":
                    break
        except OSError:
            pass
        if proc.popen.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"sotp dashboard did not come up: {proc.output()[-3000:]}")
        time.sleep(0.2)
    yield url
    proc.stop(signal.SIGTERM)
    assert proc.popen.returncode == 0, proc.output()[-3000:]
    assert "Traceback" not in proc.output(), proc.output()[-3000:]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    chromium = require_binary("chromium", "/usr/bin/chromium")
    driver_bin = require_binary("chromedriver", "/usr/bin/chromedriver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    profile = tempfile.mkdtemp(prefix="sotp-chromium-")
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]:
        opts.add_argument(flag)
    driver = webdriver.Chrome(service=Service(driver_bin), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _wait(driver: object, predicate: object, timeout: float = 60, what: str = "") -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout, poll_frequency=0.25).until(predicate, message=what)  # type: ignore[arg-type]


def _settled(driver: object, charts: int) -> bool:
    """Charts drawn (each holds a canvas or svg) and Streamlit no longer running the script."""
    from selenium.webdriver.common.by import By

    drawn = driver.find_elements(By.CSS_SELECTOR, f"{CHARTS} canvas, {CHARTS} svg")  # type: ignore[attr-defined]
    running = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stStatusWidget"]')  # type: ignore[attr-defined]
    # Elements of a run in progress are marked stale (and drawn faded) until the run replaces them.
    stale = driver.find_elements(By.CSS_SELECTOR, '[data-stale="true"]')  # type: ignore[attr-defined]
    return len(drawn) >= charts and not running and not stale


def _screenshot(driver: object, backend: Backend, name: str, tmp: Path) -> Path:
    """A full-page PNG: the window is resized to the page's height first (Streamlit scrolls inside)."""
    height = driver.execute_script(  # type: ignore[attr-defined]
        "return document.querySelector('[data-testid=\"stMainBlockContainer\"]').scrollHeight"
    )
    driver.set_window_size(WIDTH, int(height) + 60)  # type: ignore[attr-defined]
    time.sleep(1.0)  # vega re-lays out charts to the new width
    _wait(driver, lambda d: _settled(d, 1), what="no refresh in progress for the screenshot")
    out_dir = Path(os.environ["SOTP_SCREENSHOTS"]) if os.environ.get("SOTP_SCREENSHOTS") and backend.name == "sotp" \
        else tmp
    out_dir = out_dir if out_dir.is_absolute() else REPO / out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"dashboard-{name}.png"
    driver.save_screenshot(str(path))  # type: ignore[attr-defined]
    driver.set_window_size(WIDTH, 1000)  # type: ignore[attr-defined]
    return path


def _no_errors(driver: object) -> None:
    from selenium.webdriver.common.by import By

    body = driver.find_element(By.TAG_NAME, "body").text  # type: ignore[attr-defined]
    assert "Traceback" not in body
    assert not driver.find_elements(By.CSS_SELECTOR, '[data-testid="stException"]')  # type: ignore[attr-defined]
    alerts = [a.text for a in driver.find_elements(By.CSS_SELECTOR, '[data-testid="stAlert"]')]  # type: ignore[attr-defined]
    assert not [a for a in alerts if "error" in a.lower()], alerts


@pytest.mark.parametrize(
    ("page", "title", "charts", "texts"),
    [
        ("servers", "Servers", 8, ["Hosts up", "CPU busy by host", "CPU busy by mode", "Network traffic"]),
        ("network", "Network devices", 4, ["Reachable", "Interfaces", "Round-trip time", "Traffic"]),
        ("explorer", "Explorer", 1, ["PromQL", "Chart", "Table"]),
    ],
)
def test_page_renders(browser: object, dashboard: str, backend: Backend, tmp_path: Path,
                      page: str, title: str, charts: int, texts: list[str]) -> None:
    from selenium.webdriver.common.by import By

    driver = browser
    # Servers is the default page: Streamlit serves it at "/" (its url_path would answer "page not found").
    driver.get(f"{dashboard}/{'' if page == 'servers' else page}")  # type: ignore[attr-defined]
    _wait(driver, lambda d: _settled(d, charts), what=f"{page}: {charts} charts drawn")
    assert "Page not found" not in driver.find_element(By.TAG_NAME, "body").text  # type: ignore[attr-defined]
    assert driver.find_element(By.TAG_NAME, "h1").text.startswith(title)  # type: ignore[attr-defined]
    body = driver.find_element(By.TAG_NAME, "body").text  # type: ignore[attr-defined]
    for text in texts:
        assert text in body, text
    nav = driver.find_element(By.CSS_SELECTOR, '[data-testid="stSidebarNav"]').text  # type: ignore[attr-defined]
    titles = ["Servers", "Network devices", "Explorer"]
    assert [line for line in nav.split("\n") if line in titles] == titles  # the other lines are icon ligatures
    assert len(driver.find_elements(By.CSS_SELECTOR, CHARTS)) == charts  # type: ignore[attr-defined]
    _no_errors(driver)
    if page == "servers":
        assert "db-1" in body  # the host picked for the drill-down
    if page == "explorer":
        from selenium.webdriver.common.keys import Keys

        box = driver.find_element(By.CSS_SELECTOR, '[data-testid="stTextArea"] textarea')  # type: ignore[attr-defined]
        box.send_keys(Keys.CONTROL, "a")
        box.send_keys(f'8 * rate(ifHCInOctets{{instance="{ds.DEVICES[0].name}"}}[$__rate_interval])')
        box.send_keys(Keys.CONTROL, Keys.ENTER)
        _wait(driver, lambda d: "ifHCInOctets" in d.find_element(By.TAG_NAME, "body").text
              and _settled(d, 1), what="explorer ran the typed query")
        legend = driver.find_element(By.CSS_SELECTOR, '[data-testid="stTextInput"] input')  # type: ignore[attr-defined]
        legend.send_keys("{{ifName}} {{ifAlias}}", Keys.ENTER)
        _wait(driver, lambda d: _settled(d, 1), what="explorer redrawn with the legend")
        time.sleep(1.5)
        _no_errors(driver)
    shot = _screenshot(driver, backend, page, tmp_path)
    assert shot.stat().st_size > 20_000  # a blank page is a few kB


def test_clicking_a_row_drills_into_it(browser: object, dashboard: str) -> None:
    """A click on a table row (its selection box) switches the drill-down below to that row."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    driver = browser
    for path, charts, row, name in (("", 8, 2, "web-1"), ("network", 4, 2, "edge-rtr1")):
        driver.get(f"{dashboard}/{path}")  # type: ignore[attr-defined]
        _wait(driver, lambda d, n=charts: _settled(d, n), what=f"/{path} drawn")
        grid = driver.find_elements(By.CSS_SELECTOR, '[data-testid="stDataFrame"]')[0]  # type: ignore[attr-defined]
        box = grid.rect
        # Glide data grid rows are 35 px under a 35 px header; the selection boxes are the first column.
        ActionChains(driver).move_to_element_with_offset(  # type: ignore[arg-type]
            grid, int(18 - box["width"] / 2), int(35 + row * 35 + 17 - box["height"] / 2)
        ).click().perform()

        def shows(d: object, want: str = name) -> bool:
            heads = [e.text for e in d.find_elements(By.CSS_SELECTOR, "h3")]  # type: ignore[attr-defined]
            return want in heads

        _wait(driver, shows, timeout=30, what=f"/{path}: drill-down switched to {name}")
        _no_errors(driver)


def test_live_refresh_and_api_errors(browser: object, dashboard: str) -> None:
    """The page re-reads the API by itself (fragment ``run_every``); a bad query shows the API's error."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    driver = browser
    driver.get(f"{dashboard}/explorer")  # type: ignore[attr-defined]
    _wait(driver, lambda d: _settled(d, 1), what="explorer drawn")

    def stamp(d: object) -> str:
        m = re.search(r"updated (\d\d:\d\d:\d\d) UTC", d.find_element(By.TAG_NAME, "body").text)  # type: ignore[attr-defined]
        return m.group(1) if m else ""

    first = stamp(driver)
    assert first
    _wait(driver, lambda d: stamp(d) not in ("", first), timeout=25, what="the page refreshed by itself")
    box = driver.find_element(By.CSS_SELECTOR, '[data-testid="stTextArea"] textarea')  # type: ignore[attr-defined]
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys("sum(")
    box.send_keys(Keys.CONTROL, Keys.ENTER)
    _wait(driver, lambda d: "bad_data:" in d.find_element(By.TAG_NAME, "body").text, what="the API error shown")
    assert "Traceback" not in driver.find_element(By.TAG_NAME, "body").text  # type: ignore[attr-defined]
