"""Hardware collectors on node_exporter's v1.5.0 fixture trees, with values worked out by hand from the
files (the byte-for-byte comparison with node_exporter itself is test_node_exporter_fixtures.py)."""

from __future__ import annotations

import math

import pytest

from exporters.host.options import Options
from exporters.host.registry import collect
from exporters.host.sources import Sources
from sotp.codec.exposition import MetricFamily
from tests.conftest import REPO
from tests.exporters.host.ttar import extract

NE = REPO / "tests" / "fixtures" / "node_exporter" / "v1.5.0"


@pytest.fixture(scope="module")
def fams(tmp_path_factory: pytest.TempPathFactory) -> dict[str, MetricFamily]:
    root = tmp_path_factory.mktemp("ne-sys")
    extract(NE / "sys.ttar", root)
    src = Sources(proc=NE / "proc", sys=root / "sys", rootfs=str(NE))
    names = ["hwmon", "powersupplyclass", "thermal_zone", "rapl", "nfsd", "mdadm", "infiniband", "zfs", "edac"]
    return {f.name: f for f in collect(src, names, Options()) if f.samples}


def value(fams: dict[str, MetricFamily], family: str, sample: str | None = None, /, **labels: str) -> float:
    hits = [v for n, lbs, v in fams[family].samples
            if n == (sample or family) and all(lbs.get(k) == w for k, w in labels.items())]
    assert len(hits) == 1, (family, labels, hits)
    return hits[0]


CASES = [
    # hwmon0: coretemp under /sys/devices/platform/coretemp.0, temp1_input 55000 millidegrees
    ("node_hwmon_temp_celsius", {"chip": "platform_coretemp_0", "sensor": "temp1"}, 55.0),
    ("node_hwmon_chip_names", {"chip": "platform_coretemp_0", "chip_name": "coretemp"}, 1),
    ("node_hwmon_sensor_label", {"chip": "platform_coretemp_0", "sensor": "temp1", "label": "Physical id 0"}, 1),
    # BAT0 energy_now 36580000 µWh
    ("node_power_supply_energy_watthour", {"power_supply": "BAT0"}, 36.58),
    # thermal_zone0 (cpu-thermal) temp 12376 millidegrees
    ("node_thermal_zone_temp", {"zone": "0", "type": "cpu-thermal"}, 12.376),
    # intel-rapl:0 is "package-0": index 0 from the name, energy_uj 240422366267 µJ
    ("node_rapl_package_joules_total", {"index": "0"}, 240422.366267),
    # nfsd "th 8 ..." threads; "io 157286400 72864" bytes read and written
    ("node_nfsd_server_threads", {}, 8),
    ("node_nfsd_disk_bytes_read_total", {}, 157286400),
    # md3: raid6 [8/8], two (S) spares, 5853468288 blocks, not syncing so all blocks synced
    ("node_md_disks_required", {"device": "md3"}, 8),
    ("node_md_disks", {"device": "md3", "state": "spare"}, 2),
    ("node_md_blocks_synced", {"device": "md3"}, 5853468288),
    ("node_md_state", {"device": "md3", "state": "active"}, 1),
    # mlx4_0 port 1: port_rcv_data 4631917 words of 4 bytes; rate "40 Gb/sec" = 5e9 bytes/s
    ("node_infiniband_port_data_received_bytes_total", {"device": "mlx4_0", "port": "1"}, 4631917 * 4),
    ("node_infiniband_rate_bytes_per_second", {"device": "mlx4_0", "port": "1"}, 40 * 125000000),
    # arcstats "c 4 1643208777": kstat type 4 (uint64)
    ("node_zfs_arc_c", {}, 1643208777),
]


@pytest.mark.parametrize(("family", "labels", "want"), CASES, ids=[f"{f}{sorted(lb.values())}" for f, lb, _ in CASES])
def test_hardware_values(fams: dict[str, MetricFamily], family: str, labels: dict[str, str], want: float) -> None:
    assert math.isclose(value(fams, family, **labels), want, rel_tol=1e-12)
