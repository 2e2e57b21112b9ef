"""``timex``: the kernel clock discipline (NTP) state from ``adjtimex(2)``, scaled as node_exporter does.

Offsets and jitter are in micro- or nanoseconds depending on ``STA_NANO``; frequencies are in ppm with a
16-bit fraction. A seccomp filter that refuses the call (EPERM) means no data.
"""

from __future__ import annotations

from exporters.host.collectors import NoData
from exporters.host.options import Options
from exporters.host.sources import Sources
from sotp.codec.exposition import MetricFamily

TIME_ERROR = 5  # adjtimex's return value when the clock is not synchronised
STA_NANO = 0x2000
PPM16FRAC = 1000000.0 * 65536.0
MICRO = 1000000.0
NANO = 1000000000.0


def collect(src: Sources, opts: Options) -> list[MetricFamily]:
    try:
        tx = src.adjtimex()
    except PermissionError as err:
        raise NoData(f"not collecting timex metrics: {err}") from err
    divisor = NANO if tx.status & STA_NANO else MICRO
    rows = [
        ("sync_status", "gauge", "Is clock synchronized to a reliable server (1 = yes, 0 = no).",
         0.0 if tx.state == TIME_ERROR else 1.0),
        ("offset_seconds", "gauge", "Time offset in between local system and reference clock.", tx.offset / divisor),
        ("frequency_adjustment_ratio", "gauge", "Local clock frequency adjustment.", 1 + tx.freq / PPM16FRAC),
        ("maxerror_seconds", "gauge", "Maximum error in seconds.", tx.maxerror / MICRO),
        ("estimated_error_seconds", "gauge", "Estimated error in seconds.", tx.esterror / MICRO),
        ("status", "gauge", "Value of the status array bits.", float(tx.status)),
        ("loop_time_constant", "gauge", "Phase-locked loop time constant.", float(tx.constant)),
        ("tick_seconds", "gauge", "Seconds between clock ticks.", tx.tick / MICRO),
        ("pps_frequency_hertz", "gauge", "Pulse per second frequency.", tx.ppsfreq / PPM16FRAC),
        ("pps_jitter_seconds", "gauge", "Pulse per second jitter.", tx.jitter / divisor),
        ("pps_shift_seconds", "gauge", "Pulse per second interval duration.", float(tx.shift)),
        ("pps_stability_hertz", "gauge", "Pulse per second stability, average of recent frequency changes.",
         tx.stabil / PPM16FRAC),
        ("pps_jitter_total", "counter", "Pulse per second count of jitter limit exceeded events.", float(tx.jitcnt)),
        ("pps_calibration_total", "counter", "Pulse per second count of calibration intervals.", float(tx.calcnt)),
        ("pps_error_total", "counter", "Pulse per second count of calibration errors.", float(tx.errcnt)),
        ("pps_stability_exceeded_total", "counter", "Pulse per second count of stability limit exceeded events.",
         float(tx.stbcnt)),
        ("tai_offset_seconds", "gauge", "International Atomic Time (TAI) offset.", float(tx.tai)),
    ]
    out = []
    for suffix, typ, help_, value in rows:
        fam = MetricFamily(f"node_timex_{suffix}", typ, help_)
        fam.add({}, value)
        out.append(fam)
    return out
