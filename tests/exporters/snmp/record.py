"""Record a device's varbinds for the fixture tests (not a test module).

    python tests/exporters/snmp/record.py HOST:PORT COMMUNITY MODULE OUT_DIR

Writes ``walk.txt`` (``oid<TAB>type<TAB>value``; OctetString values in hex) through SOTP's own walker
and pysnmp backend. ``expected.prom`` beside it comes from Debian's prometheus-snmp-exporter 0.21 on
the same device (the oracle), with the timing lines (``*_duration_seconds``) removed.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from exporters.snmp.backend_pysnmp import PysnmpBackend
from exporters.snmp.config import Auth, load_config
from exporters.snmp.pdu import Pdu
from exporters.snmp.scraper import parse_target, scrape


def encode(p: Pdu) -> str:
    v = p.value
    text = v.hex() if isinstance(v, bytes) else "" if v is None else str(v)
    return f"{p.oid}\t{p.type}\t{text}"


async def main(target: str, community: str, module_name: str, out: Path) -> None:
    module = load_config(None).modules[module_name]
    backend = PysnmpBackend()
    host, port = parse_target(target)
    session = await backend.open(host, port, Auth(community=community), 2.0, module.max_repetitions)
    result = await scrape(session, module, target)
    backend.close()
    out.mkdir(parents=True, exist_ok=True)
    (out / "walk.txt").write_text("".join(encode(p) + "\n" for p in result.pdus))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4])))
