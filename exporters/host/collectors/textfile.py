"""``textfile``: metrics that cron jobs and scripts write to ``*.prom`` files in
``--collector.textfile.directory``, merged into the output with node_exporter 1.5's rules.

* The directory may be a glob (several directories); files are read in name order; only ``*.prom``.
* A file that does not parse, or has a sample with a timestamp, is skipped whole and sets
  ``node_textfile_scrape_error 1`` (so does an unreadable directory). Each file read sets
  ``node_textfile_mtime_seconds{file}`` (whole seconds).
* A family without HELP gets ``Metric read from <files>``; labels missing from some of a family's samples
  are added empty; a family defined in two files is merged when HELP and type agree, and the later
  file's family is dropped when they do not (the registry does that, as client_golang's ``Gather``).
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from exporters.host.options import Options
from exporters.host.sources import Sources
from sotp.codec.exposition import MetricFamily, format_value

if TYPE_CHECKING:
    from exporters.host.textfile_parser import Family

log = logging.getLogger("exporters.host")


def _directories(pattern: str) -> list[str]:
    import glob

    matches = sorted(glob.glob(pattern))
    return matches or [pattern]  # no match: the path itself, so a missing directory is reported


def _error(errored: bool) -> MetricFamily:
    error = MetricFamily("node_textfile_scrape_error", "gauge",
                         "1 if there was an error opening or reading a file, 0 otherwise")
    error.add({}, 1.0 if errored else 0.0)
    return error


def _convert(fam: Family, help_: str) -> MetricFamily:
    assert fam.type is not None
    out = MetricFamily(fam.name, fam.type, help_)
    names = sorted({name for m in fam.metrics for name, _ in m.labels})
    for m in fam.metrics:
        given = dict(m.labels)
        labels = {name: given.get(name, "") for name in names}
        if fam.type == "summary":
            for q, v in sorted(dict(m.quantiles).items()):  # one value per quantile, the last one written
                out.add({**labels, "quantile": format_value(q)}, v)
            out.add(labels, m.sum, "_sum")
            out.add(labels, float(_uint(m.count)), "_count")
        elif fam.type == "histogram":
            buckets = sorted(dict(m.buckets).items())
            for le, count in buckets:
                out.add({**labels, "le": format_value(le)}, float(_uint(count)), "_bucket")
            if not buckets or buckets[-1][0] != float("inf"):  # the writer adds +Inf when it is missing
                out.add({**labels, "le": "+Inf"}, float(_uint(m.count)), "_bucket")
            out.add(labels, m.sum, "_sum")
            out.add(labels, float(_uint(m.count)), "_count")
        else:
            out.add(labels, m.value)
    return out


def _uint(value: float) -> int:
    """Counts are uint64 in node_exporter: the fraction is dropped."""
    return int(value) if value == value and abs(value) != float("inf") else 0


def collect(src: Sources, opts: Options) -> list[MetricFamily]:
    if not opts.textfile_directory:  # the default: nothing to read, and no parser to load into the agent
        return [_error(False)]
    from exporters.host.textfile_parser import parse

    errored = False
    parsed: list[Family] = []
    files_of: dict[str, list[str]] = {}
    mtimes: dict[str, float] = {}
    for directory in _directories(opts.textfile_directory):
        try:
            names = sorted(os.listdir(directory))
        except OSError as err:
            if directory:
                errored = True
                log.error("failed to read textfile collector directory %s: %s", directory, err)
            continue
        for name in names:
            if not name.endswith(".prom"):
                continue
            path = os.path.normpath(os.path.join(directory, name))
            try:
                if os.path.isdir(path):
                    # node_exporter opens it, its parser takes the read error for the end of input: an
                    # empty file, with the directory's mtime
                    families, mtime_ns = {}, os.stat(path).st_mtime_ns
                else:
                    with open(path, "rb") as fh:
                        families = parse(fh.read().decode("utf-8"))
                        if any(m.timestamp is not None for f in families.values() for m in f.metrics):
                            raise ValueError("contains unsupported client-side timestamps, skipping entire file")
                        mtime_ns = os.fstat(fh.fileno()).st_mtime_ns
            except (OSError, ValueError) as err:  # UnicodeDecodeError is a ValueError
                errored = True
                log.error("failed to collect textfile data from %s: %s", path, err)
                continue
            for fam in families.values():
                files_of.setdefault(fam.name, []).append(path)
                parsed.append(fam)
            mtimes[path] = float(mtime_ns // 1_000_000_000)
    out = [_convert(f, f.help if f.help is not None else f"Metric read from {', '.join(files_of[f.name])}")
           for f in parsed]
    mtime = MetricFamily("node_textfile_mtime_seconds", "gauge", "Unixtime mtime of textfiles successfully read.")
    for path in sorted(mtimes):
        mtime.add({"file": path}, mtimes[path])
    return [*out, mtime, _error(errored)]
