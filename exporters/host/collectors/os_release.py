"""``os``: ``node_os_info`` and ``node_os_version`` from /etc/os-release (else /usr/lib/os-release), under
``--path.rootfs``.

The file is parsed with the shell-like rules of os-release(5), as hashicorp/go-envparse reads it:
``KEY=value``, single quotes literal, double quotes and bare values with backslash escapes, ``#`` comments.
"""

from __future__ import annotations

import re

from exporters.host.collectors import NoData
from exporters.host.options import Options
from exporters.host.sources import Sources
from sotp.codec.exposition import MetricFamily

_VERSION = re.compile(r"^[0-9]+\.?[0-9]*")
_INFO_LABELS = {"build_id": "BUILD_ID", "id": "ID", "id_like": "ID_LIKE", "image_id": "IMAGE_ID",
                "image_version": "IMAGE_VERSION", "name": "NAME", "pretty_name": "PRETTY_NAME",
                "variant": "VARIANT", "variant_id": "VARIANT_ID", "version": "VERSION",
                "version_codename": "VERSION_CODENAME", "version_id": "VERSION_ID"}
_KEY = re.compile(r"^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "$": "$", "`": "`", "a": "\a",
            "b": "\b", "f": "\f", "v": "\v"}


def _value(raw: str, where: str) -> str:
    out: list[str] = []
    i, quote = 0, ""
    while i < len(raw):
        c = raw[i]
        if quote == "'":
            if c == "'":
                quote = ""
            else:
                out.append(c)
        elif c == "\\" and i + 1 < len(raw):
            i += 1
            nxt = raw[i]
            out.append(_ESCAPES.get(nxt, nxt) if quote == '"' else nxt)
        elif c == quote:
            quote = ""
        elif not quote and c in "'\"":
            quote = c
        elif not quote and c == "#" and (i == 0 or raw[i - 1].isspace()):
            break  # a trailing comment
        elif not quote and c.isspace():
            if raw[i:].strip() and not raw[i:].strip().startswith("#"):
                raise ValueError(f"{where}: unquoted value with blanks: {raw!r}")
            break
        else:
            out.append(c)
        i += 1
    if quote:
        raise ValueError(f"{where}: unterminated quote in {raw!r}")
    return "".join(out)


def parse_os_release(text: str, where: str = "os-release") -> dict[str, str]:
    env: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = _KEY.match(line)
        if m is None:
            raise ValueError(f"{where} line {n}: expected KEY=value, got {line!r}")
        env[m.group(1)] = _value(m.group(2), f"{where} line {n}")
    return env


def collect(src: Sources, opts: Options) -> list[MetricFamily]:
    for path in ("/etc/os-release", "/usr/lib/os-release"):
        try:
            text = src.rooted(path).read_text()
            break
        except FileNotFoundError:
            continue
    else:
        raise NoData("no os-release file found (/etc/os-release, /usr/lib/os-release)")
    env = parse_os_release(text, path)
    info = MetricFamily(
        "node_os_info", "gauge",
        "A metric with a constant '1' value labeled by build_id, id, id_like, image_id, image_version, "
        "name, pretty_name, variant, variant_id, version, version_codename, version_id.",
    )
    info.add({label: env.get(key, "") for label, key in _INFO_LABELS.items()}, 1.0)
    out = [info]
    m = _VERSION.search(env.get("VERSION_ID", ""))
    version = float(m.group(0)) if m else 0.0
    if version > 0:
        fam = MetricFamily("node_os_version", "gauge", "Metric containing the major.minor part of the OS version.")
        fam.add({"id": env.get("ID", ""), "id_like": env.get("ID_LIKE", ""), "name": env.get("NAME", "")}, version)
        out.append(fam)
    return out
