"""``X-Prometheus-Scrape-Timeout-Seconds`` (issue 17, from reading): ``nan`` made exporters wait forever."""

from __future__ import annotations

import pytest
from aiohttp.test_utils import make_mocked_request

from exporters.scrape_timeout import scrape_timeout_header
from exporters.snmp.server import _deadline


@pytest.mark.parametrize(
    ("header", "want"),
    [(None, None), ("", None), ("10", 10.0), ("0", None), ("nan", None), ("NaN", None), ("inf", None),
     ("-inf", None), ("-3", -3.0)],
)
def test_issue17_nan_scrape_timeout_header_means_absent(header: str | None, want: float | None) -> None:
    assert scrape_timeout_header(header) == want


@pytest.mark.parametrize(("header", "want"), [("nan", 7.0), ("inf", 7.0), ("garbage", 7.0), ("3", 2.5), ("0.2", 0.5)])
def test_snmp_deadline_uses_its_default_for_unusable_headers(header: str, want: float) -> None:
    request = make_mocked_request("GET", "/snmp", headers={"X-Prometheus-Scrape-Timeout-Seconds": header})
    assert _deadline(request, 7.0) == want
