"""The registry: collectors answered without importing their module when their hardware is absent give
the answer the module itself gives, and families from two collectors merge as Go's registry merges them."""

from __future__ import annotations

from pathlib import Path

import pytest

from exporters.host.collectors import NoData
from exporters.host.options import Options
from exporters.host.registry import PRESENCE, collect, load, merge_family
from exporters.host.sources import Sources
from sotp.codec.exposition import MetricFamily


@pytest.mark.parametrize("name", sorted(PRESENCE))
def test_absent_hardware_is_answered_as_the_module_answers(tmp_path: Path, name: str) -> None:
    (tmp_path / "proc").mkdir()
    (tmp_path / "sys").mkdir()
    src = Sources(proc=tmp_path / "proc", sys=tmp_path / "sys")
    try:
        module_says = ("ok", [f.name for f in load(name)(src, Options()) if f.samples])
    except NoData:
        module_says = ("no data", [])
    fams = {f.name: f for f in collect(src, [name])}
    success = fams["node_scrape_collector_success"].samples[0][2]
    published = [n for n, f in fams.items() if f.samples and not n.startswith("node_scrape_collector_")]
    assert (("ok" if success == 1.0 else "no data"), published) == module_says


def test_same_family_from_two_sources_merges_and_conflicts_are_dropped() -> None:
    families: dict[str, MetricFamily] = {}
    a = MetricFamily("jobs_total", "counter", "Jobs.")
    a.add({"job": "a"}, 1.0)
    b = MetricFamily("jobs_total", "counter", "Jobs.")
    b.add({"job": "b"}, 2.0)
    b.add({"job": "a"}, 9.0)  # the same series again: dropped
    c = MetricFamily("jobs_total", "gauge", "Jobs.")  # another type: dropped whole
    c.add({"job": "c"}, 3.0)
    for fam in (a, b, c):
        merge_family(families, fam)
    assert [(dict(lbs), v) for _, lbs, v in families["jobs_total"].samples] == [({"job": "a"}, 1.0),
                                                                                ({"job": "b"}, 2.0)]
