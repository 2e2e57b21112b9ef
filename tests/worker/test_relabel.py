"""Relabeling table: the semantics of Prometheus's documentation (<relabel_config>) and Go's regexp/template rules."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from sotp.config import from_dict
from sotp.errors import ConfigError
from worker.scrape.config import RelabelConfig
from worker.scrape.relabel import compile_steps, process


def run(labels: dict[str, str], *steps: dict[str, Any]) -> dict[str, str] | None:
    cfgs = [from_dict(RelabelConfig, s, f"relabel_configs[{i}]") for i, s in enumerate(steps)]
    return process(labels, compile_steps(cfgs))


CASES: list[tuple[str, dict[str, str], list[dict[str, Any]], dict[str, str] | None]] = [
    ("replace-defaults-copy", {"a": "foo"}, [{"source_labels": ["a"], "target_label": "b"}],
     {"a": "foo", "b": "foo"}),
    ("replace-group", {"__address__": "db1:9100"},
     [{"source_labels": ["__address__"], "regex": "(.*):(\\d+)", "target_label": "host", "replacement": "$1"}],
     {"__address__": "db1:9100", "host": "db1"}),
    ("replace-no-match-leaves-labels", {"a": "foo", "b": "keep"},
     [{"source_labels": ["a"], "regex": "bar", "target_label": "b", "replacement": "x"}],
     {"a": "foo", "b": "keep"}),
    ("replace-empty-result-deletes", {"a": "", "b": "old"},
     [{"source_labels": ["a"], "target_label": "b"}], {"b": None}),
    ("replace-joins-with-separator", {"a": "x", "b": "y"},
     [{"source_labels": ["a", "b"], "regex": "(.*);(.*)", "target_label": "c", "replacement": "${2}-${1}"}],
     {"a": "x", "b": "y", "c": "y-x"}),
    ("replace-custom-separator", {"a": "x", "b": "y"},
     [{"source_labels": ["a", "b"], "separator": "/", "target_label": "c"}],
     {"a": "x", "b": "y", "c": "x/y"}),
    ("missing-source-is-empty-string", {"a": "x"},
     [{"source_labels": ["a", "nope"], "regex": "x;", "target_label": "c", "replacement": "matched"}],
     {"a": "x", "c": "matched"}),
    ("go-template-$1x-is-a-group-name", {"a": "foo"},
     [{"source_labels": ["a"], "target_label": "b", "replacement": "$1x"}], {"a": "foo"}),
    ("go-template-braces", {"a": "foo"},
     [{"source_labels": ["a"], "target_label": "b", "replacement": "${1}x"}], {"a": "foo", "b": "foox"}),
    ("go-template-dollar-dollar", {"a": "foo"},
     [{"source_labels": ["a"], "target_label": "b", "replacement": "$$$1"}], {"a": "foo", "b": "$foo"}),
    ("go-template-unknown-group-empty", {"a": "foo"},
     [{"source_labels": ["a"], "target_label": "b", "replacement": "<$7>"}], {"a": "foo", "b": "<>"}),
    ("named-group", {"__address__": "web:80"},
     [{"source_labels": ["__address__"], "regex": "(?P<host>[^:]+):.*", "target_label": "h",
       "replacement": "$host"}], {"__address__": "web:80", "h": "web"}),
    ("templated-target-label", {"kind": "disk"},
     [{"source_labels": ["kind"], "target_label": "${1}_seen", "replacement": "yes"}],
     {"kind": "disk", "disk_seen": "yes"}),
    ("invalid-templated-target-ignored", {"kind": "1bad"},
     [{"source_labels": ["kind"], "target_label": "$1", "replacement": "yes"}], {"kind": "1bad"}),
    ("static-replacement", {},
     [{"target_label": "env", "replacement": "prod"}], {"env": "prod"}),
    ("keep-match", {"job": "node"}, [{"source_labels": ["job"], "regex": "node|snmp", "action": "keep"}],
     {"job": "node"}),
    ("keep-no-match-drops", {"job": "other"}, [{"source_labels": ["job"], "regex": "node", "action": "keep"}],
     None),
    ("regex-fully-anchored", {"job": "nodes"}, [{"source_labels": ["job"], "regex": "node", "action": "keep"}],
     None),
    ("drop-match", {"job": "node"}, [{"source_labels": ["job"], "regex": "no.*", "action": "drop"}], None),
    ("drop-no-match", {"job": "x"}, [{"source_labels": ["job"], "regex": "node", "action": "drop"}],
     {"job": "x"}),
    ("drop-missing-label-matches-empty", {"a": "1"}, [{"source_labels": ["b"], "regex": "", "action": "drop"}],
     None),
    ("dot-does-not-match-newline", {"a": "x\ny"}, [{"source_labels": ["a"], "regex": "x.*", "action": "keep"}],
     None),
    ("dollar-does-not-match-before-final-newline", {"a": "x\n"},
     [{"source_labels": ["a"], "regex": "x", "action": "keep"}], None),
    ("labelmap-meta", {"__meta_env": "prod", "__meta_rack": "r1", "a": "1"},
     [{"regex": "__meta_(.*)", "action": "labelmap"}],
     {"__meta_env": "prod", "__meta_rack": "r1", "a": "1", "env": "prod", "rack": "r1"}),
    ("labelmap-replacement", {"__meta_x": "1"},
     [{"regex": "__meta_(.*)", "replacement": "m_$1", "action": "labelmap"}], {"__meta_x": "1", "m_x": "1"}),
    ("labeldrop", {"tmp_a": "1", "tmp_b": "2", "keep": "3"}, [{"regex": "tmp_.*", "action": "labeldrop"}],
     {"keep": "3"}),
    ("labelkeep", {"tmp_a": "1", "__name__": "m", "keep": "3"},
     [{"regex": "__name__|keep", "action": "labelkeep"}], {"__name__": "m", "keep": "3"}),
    ("lowercase", {"host": "DB1.Example"},
     [{"source_labels": ["host"], "target_label": "host", "action": "lowercase"}], {"host": "db1.example"}),
    ("uppercase-joined", {"a": "x", "b": "y"},
     [{"source_labels": ["a", "b"], "target_label": "c", "action": "uppercase"}], {"a": "x", "b": "y", "c": "X;Y"}),
    ("steps-see-previous-results", {"a": "1"},
     [{"source_labels": ["a"], "target_label": "b"}, {"source_labels": ["b"], "regex": "1", "action": "drop"}],
     None),
    ("multi-target-pattern", {"__address__": "10.0.0.1"},
     [{"source_labels": ["__address__"], "target_label": "__param_target"},
      {"source_labels": ["__param_target"], "target_label": "instance"},
      {"target_label": "__address__", "replacement": "127.0.0.1:9116"}],
     {"__address__": "127.0.0.1:9116", "__param_target": "10.0.0.1", "instance": "10.0.0.1"}),
]


@pytest.mark.parametrize(("labels", "steps", "want"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_relabel(labels: dict[str, str], steps: list[dict[str, Any]], want: dict[str, str | None] | None) -> None:
    got = run(labels, *steps)
    if want is None:
        assert got is None
        return
    assert got is not None
    assert {k: v for k, v in got.items() if v} == {k: v for k, v in want.items() if v is not None}


def test_hashmod_is_md5_low_8_bytes_big_endian() -> None:
    # Prometheus: binary.BigEndian.Uint64(md5(value)[8:]) % modulus.
    for value in ("10.0.0.1:9100", "a", ""):
        want = int.from_bytes(hashlib.md5(value.encode()).digest()[8:], "big") % 7
        got = run({"__address__": value},
                  {"source_labels": ["__address__"], "modulus": 7, "target_label": "shard", "action": "hashmod"})
        assert got is not None and got["shard"] == str(want)


BAD = [
    ("unknown-action", {"action": "rename"}, "is not one of"),
    ("unknown-key", {"acton": "keep"}, "relabel_configs[0].acton: unknown key"),
    ("replace-needs-target", {"source_labels": ["a"]}, "needs target_label"),
    ("hashmod-needs-modulus", {"source_labels": ["a"], "target_label": "b", "action": "hashmod"}, "modulus"),
    ("bad-regex", {"regex": "(", "action": "keep"}, "invalid regular expression"),
    ("bad-source-label", {"source_labels": ["a-b"], "action": "keep"}, "invalid label name"),
    ("labeldrop-no-source", {"source_labels": ["a"], "regex": "x", "action": "labeldrop"}, "accepts only regex"),
    ("bad-target-label", {"source_labels": ["a"], "target_label": "a-b"}, "not a valid label name"),
]


@pytest.mark.parametrize(("step", "error"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_relabel_config(step: dict[str, Any], error: str) -> None:
    with pytest.raises(ConfigError) as info:
        from_dict(RelabelConfig, step, "relabel_configs[0]")
    assert error in str(info.value)
