"""Writing snmp.yml: snmp_exporter's field order, the generator's warning header."""

from __future__ import annotations

from typing import Any

import yaml

HEADER = "# WARNING: This file was auto-generated using sotp snmp generate, manual changes will be lost.\n"


def dump_snmp_yml(document: dict[str, Any]) -> str:
    body = yaml.safe_dump(document, sort_keys=False, default_flow_style=False, allow_unicode=True, width=100)
    return HEADER + body
