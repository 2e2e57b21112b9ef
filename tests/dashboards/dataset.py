"""Known data for the dashboard tests, loaded by remote write into Prometheus or ``sotp serve``.

Everything is generated from the specs below, so tests derive expected values from the same numbers
(no copied output). Time runs from ``now - HISTORY_S`` to ``now + FUTURE_S`` every ``STEP_S``: the
future part keeps "live" hosts fresh for the few minutes a test module runs (both receivers accept
samples up to 10 minutes ahead). Names follow node_exporter, snmp_exporter ``if_mib``, blackbox,
SOTP's continuous ping, config backups and SOTP's self-metrics.
"""

from __future__ import annotations

import math
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field

from sotp.codec.exposition import format_value
from sotp.codec.remote_write import encode_write_request
from sotp.model import Labels

STEP_S = 15
HISTORY_S = 4200  # 70 minutes: a 1-hour chart starts with full rate() windows
FUTURE_S = 300
GIB = 2**30


@dataclass(frozen=True)
class Host:
    name: str
    cpus: int
    user: float  # per-CPU user-mode rate (fraction of a core), the mean of a slow sine
    system: float
    iowait: float
    mem_total: float
    mem_avail_frac: float
    root_avail_frac: float
    var_avail_frac: float
    rx_bps: float  # bits per second on eth0
    tx_bps: float
    stops_before_now_s: float = 0.0  # > 0: the host stopped sending this long ago (shown down)


HOSTS = [
    Host("web-1", 4, 0.32, 0.09, 0.02, 8 * GIB, 0.41, 0.38, 0.71, 42e6, 118e6),
    Host("db-1", 8, 0.18, 0.06, 0.07, 32 * GIB, 0.22, 0.55, 0.12, 9e6, 3.5e6),
    Host("old-1", 2, 0.05, 0.02, 0.0, 4 * GIB, 0.7, 0.8, 0.8, 1e5, 1e5, stops_before_now_s=900),
]


@dataclass(frozen=True)
class Iface:
    index: int
    name: str
    descr: str
    alias: str
    up: bool
    in_bps: float
    out_bps: float
    in_errors_ps: float = 0.0


@dataclass(frozen=True)
class Component:
    """A CPU/memory/temperature reading of a device part, written as its vendor's SNMP module names it."""

    name: str
    cpu_pct: float
    mem_used: float  # bytes (Cisco pool) or percent (Juniper buffer)
    mem_free: float
    temp_c: float


@dataclass(frozen=True)
class Device:
    name: str
    ip: str
    ifaces: list[Iface]
    rtt_s: float
    loss: float  # fraction of echoes lost
    uptime_s: float
    backup_ok: bool
    change_ago_s: float | None  # a config change this long ago (None: none in the data)
    #: Named in sotp.yml's devices: every series carries device="<name>", while SNMP's instance is
    #: "<ip>:161" and the ping's host is the ip (one device, three sources: one row).
    inventory: bool = False
    vendor: str = ""  # "cisco" (cisco_device module) or "juniper" (juniper module)
    parts: tuple[Component, ...] = ()

    def source_labels(self, legacy: str, value: str) -> dict[str, str]:
        return {legacy: value, "device": self.name} if self.inventory else {legacy: self.name}


DEVICES = [
    Device(
        "core-sw1", "192.0.2.1",
        [
            Iface(1, "Gi0/1", "GigabitEthernet0/1", "uplink to edge-rtr1", True, 310e6, 95e6),
            Iface(2, "Gi0/2", "GigabitEthernet0/2", "rack A servers", True, 120e6, 240e6, 0.2),
            Iface(3, "Gi0/3", "GigabitEthernet0/3", "", False, 0.0, 0.0),
            Iface(4, "Gi0/4", "GigabitEthernet0/4", "printer", True, 2e5, 1e5),
        ],
        rtt_s=0.0012, loss=0.0, uptime_s=86400 * 41.5, backup_ok=True, change_ago_s=1500,
        vendor="cisco", parts=(Component("CPU", 23.0, 60e6, 40e6, 41.0), Component("I/O", 0.0, 5e6, 15e6, 29.0)),
    ),
    Device(
        "edge-rtr1", "192.0.2.254",
        [
            Iface(1, "ge-0/0/0", "ge-0/0/0", "ISP transit", True, 95e6, 310e6),
            Iface(2, "ge-0/0/1", "ge-0/0/1", "to core-sw1", True, 310e6, 95e6),
        ],
        rtt_s=0.0085, loss=0.02, uptime_s=86400 * 3.2, backup_ok=False, change_ago_s=2400, inventory=True,
        vendor="juniper", parts=(Component("Routing Engine 0", 12.0, 47.0, 0.0, 39.0),
                                 Component("FPC: MPC 0", 31.0, 38.0, 0.0, 52.0),
                                 Component("PEM 0", 0.0, 0.0, 0.0, 0.0)),
    ),
]
#: SNMP hosts seen only through SOTP's host health modules (no interfaces or uptime, so not rows of the
#: device table): one answering host_resources and entity_sensor, one net-snmp host answering only the
#: ucd_* modules. instance -> (CPU busy %, memory used %, temperature by sensor name), as the health
#: queries must read them.
SNMP_HOSTS = {
    "srv-hr:161": (20.0, 37.5, {"CPU package": 45.0, "Ambient": 38.5}),  # mean of 10 and 30; RAM 3000 of 8000
    "srv-ucd:161": (25.0, 40.0, {}),  # idle 75; (200 avail + 100 buffers + 300 cached) of 1000 free
}
#: Ping-only targets (continuous ping), and blackbox-probed ones.
PING_ONLY = [Device("isp-gw", "198.51.100.1", [], rtt_s=0.0231, loss=0.1, uptime_s=math.nan, backup_ok=True,
                    change_ago_s=None)]
BLACKBOX = {"dns-1": 0.1}  # name -> fraction of failed probes
#: smokeping_prober's buckets: 50 µs doubling, 20 of them, then +Inf.
BUCKETS = [5e-05 * 2**k for k in range(20)]
PINGS_PER_STEP = 15
BACKUP_EVERY_S = 900
SOTP_INSTANCE = "127.0.0.1:9201"
INGEST = {"remote_write": 2400.0, "push": 40.0, "json": 5.0}  # samples/s per protocol
REJECTS = {("remote_write", "out_of_order"): 0.5, ("json", "invalid"): 0.05}
LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0]


@dataclass
class Dataset:
    """The generated series and the time grid they share."""

    now: float
    start_ms: int
    end_ms: int
    series: dict[Labels, list[tuple[int, float]]] = field(default_factory=dict)

    def add(self, labels: dict[str, str], t_s: float, value: float) -> None:
        self.series.setdefault(Labels(labels), []).append((int(t_s * 1000), value))

    def sample_count(self) -> int:
        return sum(len(v) for v in self.series.values())


def wave(t: float, period_s: float = 1200.0, amp: float = 0.15) -> float:
    """A slow multiplicative wobble around 1, so charts move but a 1-minute rate stays near the mean."""
    return 1.0 + amp * math.sin(2 * math.pi * t / period_s)


def wave_integral(rate: float, a: float, b: float, period_s: float = 1200.0, amp: float = 0.15) -> float:
    """Exact integral of ``rate * wave(t, period_s, amp)`` from ``a`` to ``b`` (a counter's growth)."""
    k = 2 * math.pi / period_s
    return rate * ((b - a) - amp / k * (math.cos(k * b) - math.cos(k * a)))


def mean_rate(rate: float, a: float, b: float, period_s: float = 1200.0, amp: float = 0.15) -> float:
    """The mean of ``rate * wave`` over ``[a, b]``: what ``rate()`` over that window should return."""
    return wave_integral(rate, a, b, period_s, amp) / (b - a)


def _times(ds: Dataset) -> Iterator[float]:
    t = ds.start_ms / 1000
    while t * 1000 <= ds.end_ms:
        yield t
        t += STEP_S


def cpu_rates(h: Host, t: float) -> dict[str, float]:
    """Per-CPU seconds per second in each mode at ``t`` (idle is the rest)."""
    r = {"user": h.user * wave(t), "system": h.system, "iowait": h.iowait, "irq": 0.002, "softirq": 0.004,
         "nice": 0.0, "steal": 0.001}
    r["idle"] = 1.0 - sum(r.values())
    return r


def _hosts(ds: Dataset) -> None:
    t0 = ds.start_ms / 1000
    for h in HOSTS:
        base = {"instance": h.name, "job": "node"}
        last = ds.now - h.stops_before_now_s if h.stops_before_now_s else math.inf
        for t in _times(ds):
            if t > last:
                break
            el = t - t0
            for cpu in range(h.cpus):
                for mode in cpu_rates(h, t):
                    ds.add({"__name__": "node_cpu_seconds_total", **base, "cpu": str(cpu), "mode": mode}, t,
                           1e5 + cpu_counter(h, mode, t0, t))
            avail = h.mem_total * h.mem_avail_frac * wave(t, 900, 0.05)
            ds.add({"__name__": "node_memory_MemTotal_bytes", **base}, t, h.mem_total)
            ds.add({"__name__": "node_memory_MemAvailable_bytes", **base}, t, avail)
            for mount, dev, fstype, size, frac in (
                ("/", "/dev/sda1", "ext4", 100 * GIB, h.root_avail_frac),
                ("/var", "/dev/sdb1", "xfs", 500 * GIB, h.var_avail_frac - el * 1e-6),
                ("/run", "tmpfs", "tmpfs", GIB, 0.01),  # nearly full, but memory-backed: filtered out
            ):
                fs = {**base, "device": dev, "fstype": fstype, "mountpoint": mount}
                ds.add({"__name__": "node_filesystem_size_bytes", **fs}, t, size)
                ds.add({"__name__": "node_filesystem_avail_bytes", **fs}, t, size * frac)
                ds.add({"__name__": "node_filesystem_free_bytes", **fs}, t, size * frac + GIB)
            for dev, rx, tx in (("eth0", h.rx_bps, h.tx_bps), ("lo", 9e9, 9e9)):
                ds.add({"__name__": "node_network_receive_bytes_total", **base, "device": dev}, t,
                       wave_integral(rx / 8, t0, t))
                ds.add({"__name__": "node_network_transmit_bytes_total", **base, "device": dev}, t,
                       wave_integral(tx / 8, t0, t, 600))
            busy = h.cpus * (1 - cpu_rates(h, t)["idle"])
            ds.add({"__name__": "node_load1", **base}, t, busy * wave(t, 300, 0.3))
            ds.add({"__name__": "node_load5", **base}, t, busy * wave(t, 600, 0.1))
            ds.add({"__name__": "node_load15", **base}, t, busy)
            ds.add({"__name__": "node_disk_read_bytes_total", **base, "device": "sda"}, t, 2e6 * el)
            ds.add({"__name__": "node_disk_written_bytes_total", **base, "device": "sda"}, t, 5e6 * el)
            ds.add({"__name__": "node_boot_time_seconds", **base}, t, t0 - 86400 * 12)
            ds.add({"__name__": "node_uname_info", **base, "nodename": h.name, "release": "6.1.0-18-amd64",
                    "sysname": "Linux", "machine": "x86_64"}, t, 1.0)


def cpu_counter(h: Host, mode: str, t0: float, t: float) -> float:
    """Exact integral of :func:`cpu_rates` from ``t0`` (user follows the wave; idle takes the rest)."""
    const = cpu_rates(h, t0)
    user = wave_integral(h.user, t0, t)
    if mode == "user":
        return user
    if mode == "idle":
        others = sum(v for k, v in const.items() if k not in ("user", "idle"))
        return (1.0 - others) * (t - t0) - user
    return const[mode] * (t - t0)


def _devices(ds: Dataset) -> None:
    t0 = ds.start_ms / 1000
    for d in DEVICES:
        base = {**d.source_labels("instance", f"{d.ip}:161"), "job": "snmp"}
        for t in _times(ds):
            el = t - t0
            ds.add({"__name__": "sysUpTime", **base}, t, (d.uptime_s + el - HISTORY_S) * 100)
            for i in d.ifaces:
                lab = {**base, "ifIndex": str(i.index), "ifName": i.name, "ifDescr": i.descr, "ifAlias": i.alias}
                ds.add({"__name__": "ifHCInOctets", **lab}, t, 1e12 + wave_integral(i.in_bps / 8, t0, t))
                ds.add({"__name__": "ifHCOutOctets", **lab}, t, 5e11 + wave_integral(i.out_bps / 8, t0, t, 700))
                ds.add({"__name__": "ifOperStatus", **lab}, t, 1.0 if i.up else 2.0)
                ds.add({"__name__": "ifAdminStatus", **lab}, t, 1.0)
                ds.add({"__name__": "ifHighSpeed", **lab}, t, 1000.0)
                ds.add({"__name__": "ifInErrors", **lab}, t, 7 + i.in_errors_ps * el)
                ds.add({"__name__": "ifOutErrors", **lab}, t, 0.0)
            for k, part in enumerate(d.parts, 1):
                _health(ds, base, d.vendor, k, part, t)
        backups = [t for t in _times(ds) if int(t - t0) % BACKUP_EVERY_S == 0]
        fails_from = ds.now - 1200 if not d.backup_ok else math.inf
        last_ok = t0
        dl = {"device": d.name, "job": "backup"}
        for t in backups:  # the backup scheduler writes its metrics only when a backup runs
            ok = t < fails_from
            last_ok = t if ok else last_ok
            ds.add({"__name__": "sotp_config_backup_success", **dl}, t, 1.0 if ok else 0.0)
            ds.add({"__name__": "sotp_config_backup_last_success_timestamp_seconds", **dl}, t, last_ok)
            changed = d.change_ago_s is not None and t >= ds.now - d.change_ago_s
            ds.add({"__name__": "sotp_config_changes_total", **dl}, t, 3.0 + (1.0 if changed else 0.0))


def _health(ds: Dataset, base: dict[str, str], vendor: str, k: int, part: Component, t: float) -> None:
    """CPU, memory and temperature series as the cisco_device and juniper modules name and label them."""
    if vendor == "cisco":
        ds.add({"__name__": "cpmCPUTotal1minRev", **base, "cpmCPUTotalIndex": str(k)}, t, part.cpu_pct)
        pool = {**base, "ciscoMemoryPoolType": str(k), "ciscoMemoryPoolName": part.name}
        ds.add({"__name__": "ciscoMemoryPoolUsed", **pool}, t, part.mem_used)
        ds.add({"__name__": "ciscoMemoryPoolFree", **pool}, t, part.mem_free)
        sensor = {**base, "entPhysicalIndex": str(1000 + k), "entPhysicalName": f"{part.name} temp",
                  "entSensorScale": "9"}
        ds.add({"__name__": "entSensorValue", **sensor, "entSensorType": "8"}, t, part.temp_c)
        ds.add({"__name__": "entSensorValue", **sensor, "entPhysicalIndex": str(2000 + k),
                "entPhysicalName": f"{part.name} volts", "entSensorType": "4"}, t, 90.0)  # volts, not a temperature
    elif vendor == "juniper":
        comp = {**base, "jnxOperatingContentsIndex": str(k), "jnxOperatingL1Index": "1", "jnxOperatingL2Index": "0",
                "jnxOperatingL3Index": "0", "jnxOperatingDescr": part.name}
        ds.add({"__name__": "jnxOperatingCPU", **comp}, t, part.cpu_pct)
        ds.add({"__name__": "jnxOperatingBuffer", **comp}, t, part.mem_used)
        ds.add({"__name__": "jnxOperatingTemp", **comp}, t, part.temp_c)


def _snmp_hosts(ds: Dataset) -> None:
    """The series of :data:`SNMP_HOSTS` as the host_resources, entity_sensor and ucd_* modules name them."""
    hr = {"instance": "srv-hr:161", "job": "snmp"}
    ucd = {"instance": "srv-ucd:161", "job": "snmp"}
    ram, disk = "1.3.6.1.2.1.25.2.1.2", "1.3.6.1.2.1.25.2.1.4"  # HOST-RESOURCES-TYPES hrStorageRam, FixedDisk
    for t in _times(ds):
        for index, load in (("196608", 10.0), ("196609", 30.0)):
            ds.add({"__name__": "hrProcessorLoad", **hr, "hrDeviceIndex": index}, t, load)
        for index, kind, descr, size, used in (("1", ram, "Physical memory", 8000.0, 3000.0),
                                               ("31", disk, "/", 1000.0, 900.0)):  # a full disk is not memory
            storage = {**hr, "hrStorageIndex": index, "hrStorageType": kind, "hrStorageDescr": descr}
            ds.add({"__name__": "hrStorageSize", **storage}, t, size)
            ds.add({"__name__": "hrStorageUsed", **storage}, t, used)
        # ENTITY-SENSOR-MIB: type 8 is celsius, precision 1 means tenths; the 12 V rail (type 4) is not a temperature.
        sensors = (("1", "CPU package", "8", "0", 45.0), ("2", "Ambient", "8", "1", 385.0),
                   ("3", "12V rail", "4", "0", 12.0))
        for index, name, kind, precision, value in sensors:
            ds.add({"__name__": "entPhySensorValue", **hr, "entPhysicalIndex": index, "entPhysicalName": name,
                    "entPhySensorType": kind, "entPhySensorPrecision": precision, "entPhySensorScale": "9"}, t, value)
        ds.add({"__name__": "ssCpuIdle", **ucd}, t, 75.0)
        for name, value in (("memTotalReal", 1000.0), ("memAvailReal", 200.0), ("memBuffer", 100.0),
                            ("memCached", 300.0)):
            ds.add({"__name__": name, **ucd}, t, value)


def _pings(ds: Dataset) -> None:
    t0 = ds.start_ms / 1000
    for d in [*DEVICES, *PING_ONLY]:
        lab = {"ip": d.ip, "job": "icmp", "instance": "127.0.0.1:9115", **d.source_labels("host", d.ip)}
        for t in _times(ds):
            steps = round((t - t0) / STEP_S)
            sent = steps * PINGS_PER_STEP
            got = round(sent * (1 - d.loss))
            ds.add({"__name__": "sotp_icmp_requests_total", **lab}, t, float(sent))
            ds.add({"__name__": "sotp_icmp_responses_total", **lab}, t, float(got))
            # Replies split 60/30/10 between the RTT's bucket and the next two (a jittery link).
            k = next(i for i, b in enumerate(BUCKETS) if b >= d.rtt_s)
            cum = 0.0
            for i, le in enumerate(BUCKETS):
                cum = got * (0.6 * (i >= k) + 0.3 * (i >= k + 1) + 0.1 * (i >= k + 2))
                ds.add({"__name__": "sotp_icmp_rtt_seconds_bucket", **lab, "le": format_value(le)}, t, round(cum))
            ds.add({"__name__": "sotp_icmp_rtt_seconds_bucket", **lab, "le": "+Inf"}, t, float(got))
            ds.add({"__name__": "sotp_icmp_rtt_seconds_sum", **lab}, t, got * d.rtt_s)
            ds.add({"__name__": "sotp_icmp_rtt_seconds_count", **lab}, t, float(got))
    for name, fail in BLACKBOX.items():
        lab = {"instance": name, "job": "blackbox", "module": "icmp"}
        for t in _times(ds):
            n = round((t - t0) / STEP_S)
            ok = 0.0 if fail and n % round(1 / fail) == 0 else 1.0
            ds.add({"__name__": "probe_success", **lab}, t, ok)
            ds.add({"__name__": "probe_duration_seconds", **lab}, t, 0.004 if ok else 1.5)
            for phase, v in (("resolve", 0.0004), ("setup", 0.0001), ("rtt", 0.0031)):
                ds.add({"__name__": "probe_icmp_duration_seconds", **lab, "phase": phase}, t, v if ok else 0.0)


def _self(ds: Dataset) -> None:
    t0 = ds.start_ms / 1000
    base = {"instance": SOTP_INSTANCE, "job": "sotp"}
    for t in _times(ds):
        el = t - t0
        ds.add({"__name__": "up", **base}, t, 1.0)
        ds.add({"__name__": "up", "instance": "127.0.0.1:9100", "job": "node_exporter"}, t, 1.0)
        for proto, rate in INGEST.items():
            ds.add({"__name__": "sotp_ingest_samples_total", **base, "protocol": proto}, t,
                   wave_integral(rate, t0, t, 400, 0.3))
            ds.add({"__name__": "sotp_ingest_requests_total", **base, "protocol": proto, "code": "204"}, t,
                   rate / 100 * el)
            reqs = rate / 100
            cum = 0.0
            for i, le in enumerate(LATENCY_BUCKETS):
                cum = reqs * el * min(1.0, 0.2 * (i + 1))
                ds.add({"__name__": "sotp_write_latency_seconds_bucket", **base, "protocol": proto,
                        "le": format_value(le)},
                       t, cum)
            ds.add({"__name__": "sotp_write_latency_seconds_bucket", **base, "protocol": proto, "le": "+Inf"}, t,
                   reqs * el)
            ds.add({"__name__": "sotp_write_latency_seconds_sum", **base, "protocol": proto}, t, reqs * el * 0.004)
            ds.add({"__name__": "sotp_write_latency_seconds_count", **base, "protocol": proto}, t, reqs * el)
        for (proto, reason), rate in REJECTS.items():
            ds.add({"__name__": "sotp_ingest_rejected_samples_total", **base, "protocol": proto, "reason": reason},
                   t, rate * el)
        ds.add({"__name__": "sotp_write_queue_depth", **base}, t, 1.0 + (int(el) // 60) % 3)


def build(now: float) -> Dataset:
    """The whole dataset around ``now`` (Unix seconds), on a grid aligned to :data:`STEP_S`."""
    end = (int(now) // STEP_S) * STEP_S + FUTURE_S
    start = end - FUTURE_S - HISTORY_S
    ds = Dataset(now=now, start_ms=start * 1000, end_ms=end * 1000)
    _hosts(ds)
    _devices(ds)
    _snmp_hosts(ds)
    _pings(ds)
    _self(ds)
    return ds


def push(write_url: str, ds: Dataset, headers: dict[str, str] | None = None, chunk_s: int = 300) -> None:
    """Remote-write ``ds`` in time order (chunks of ``chunk_s``), as a Prometheus would send it."""
    t = ds.start_ms
    while t <= ds.end_ms:
        upto = t + chunk_s * 1000
        batch = [(labels, [(ts, v) for ts, v in samples if t <= ts < upto]) for labels, samples in ds.series.items()]
        batch = [(labels, samples) for labels, samples in batch if samples]
        if batch:
            body = encode_write_request(batch)
            req = urllib.request.Request(
                write_url,
                data=body,
                method="POST",
                headers={
                    "Content-Encoding": "snappy",
                    "Content-Type": "application/x-protobuf",
                    "X-Prometheus-Remote-Write-Version": "0.1.0",
                    **(headers or {}),
                },
            )
            with urllib.request.urlopen(req, timeout=60) as resp:
                if resp.status // 100 != 2:
                    raise RuntimeError(f"remote write to {write_url} answered {resp.status}")
        t = upto
