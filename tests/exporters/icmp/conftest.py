"""Fixtures for the ICMP exporter's tests: running the exporter (optionally inside a network namespace
the test creates) and building namespaces with veth pairs, blackhole routes and a TUN responder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import Proc, free_port, missing, require_binary, sotp_cmd, wait_for_port

HERE = Path(__file__).resolve().parent


def parse_exposition(text: str) -> dict[str, Any]:
    """Exposition text -> {"types": {family: type}, "help": {family: help}, "samples": {(name, labels): value}}."""
    types: dict[str, str] = {}
    helps: dict[str, str] = {}
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            types[name] = kind
        elif line.startswith("# HELP "):
            _, _, name, help_ = line.split(" ", 3)
            helps[name] = help_
        elif line and not line.startswith("#"):
            series, _, value = line.rpartition(" ")
            name, _, rest = series.partition("{")
            labels: list[tuple[str, str]] = []
            for part in rest.rstrip("}").split('",') if rest else []:
                k, _, v = part.partition('="')
                labels.append((k, v.rstrip('"')))
            samples[(name, tuple(sorted(labels)))] = float(value)
    return {"types": types, "help": helps, "samples": samples}


def value(parsed: dict[str, Any], name: str, **labels: str) -> float:
    """One sample's value; KeyError names what is missing."""
    key = (name, tuple(sorted(labels.items())))
    if key not in parsed["samples"]:
        raise KeyError(f"no sample {name}{labels} in {sorted(parsed['samples'])}")
    v: float = parsed["samples"][key]
    return v


@dataclass
class Netns:
    """A network namespace made by the test; ``run`` executes a command inside it."""

    name: str
    created: list[str] = field(default_factory=list)

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["ip", "netns", "exec", self.name, *argv], check=check, text=True,
                              capture_output=True, timeout=30)

    def ip(self, *argv: str) -> None:
        self.run("ip", *argv)

    def sysctl(self, key: str, val: str | None = None) -> str:
        """Set (or with ``val=None`` read) a sysctl of this namespace through /proc/sys, which shows the
        opener's namespace (no dependency on procps' sysctl)."""
        path = "/proc/sys/" + key.replace(".", "/")
        if val is None:
            return self.run("cat", path).stdout.strip()
        self.run("sh", "-c", 'printf "%s\\n" "$1" > "$2"', "sh", val, path)
        return val

    def get(self, url: str, headers: dict[str, str] | None = None, timeout: float = 30) -> tuple[int, str]:
        """HTTP GET from inside the namespace (the test process itself stays in the host's)."""
        code = (
            "import sys,json,urllib.request,urllib.error\n"
            "req=urllib.request.Request(sys.argv[1],headers=json.loads(sys.argv[2]))\n"
            "try:\n r=urllib.request.urlopen(req,timeout=float(sys.argv[3]))\n"
            " print(r.status); print(r.read().decode())\n"
            "except urllib.error.HTTPError as e:\n print(e.code); print(e.read().decode())\n"
        )
        out = self.run(sys.executable, "-c", code, url, json.dumps(headers or {}), str(timeout)).stdout
        status, _, body = out.partition("\n")
        return int(status), body


@pytest.fixture
def netns() -> Iterator[Callable[[str], Netns]]:
    """Factory of fresh namespaces (loopback up), deleted at teardown with everything inside them."""
    require_binary("ip", "/usr/sbin/ip", "/sbin/ip")
    made: list[Netns] = []

    def make(tag: str) -> Netns:
        name = f"sotp-icmp-{tag}-{os.getpid()}"
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
        res = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
        if res.returncode != 0:
            missing(f"cannot create a network namespace (needs root / CAP_SYS_ADMIN): {res.stderr.strip()}")
        ns = Netns(name)
        made.append(ns)
        ns.ip("link", "set", "lo", "up")
        return ns

    yield make
    for ns in reversed(made):
        # Processes still running inside would keep the namespace's devices alive; killing them is the
        # owning fixture's job (spawn). Deleting the name is enough for the kernel to clean up.
        subprocess.run(["ip", "netns", "del", ns.name], capture_output=True)


def veth(a: Netns, a_if: str, a_addr: str, b: Netns, b_if: str, b_addr: str, mtu: int = 1500) -> None:
    """A veth pair between two namespaces with /24 addresses, both ends up."""
    a.ip("link", "add", a_if, "mtu", str(mtu), "type", "veth", "peer", "name", b_if, "netns", b.name)
    a.ip("addr", "add", f"{a_addr}/24", "dev", a_if)
    b.ip("link", "set", b_if, "mtu", str(mtu))
    b.ip("addr", "add", f"{b_addr}/24", "dev", b_if)
    a.ip("link", "set", a_if, "up")
    b.ip("link", "set", b_if, "up")


@dataclass
class Exporter:
    """A running ``sotp exporter icmp``; ``get`` works whether it runs in the host's namespace or a test's."""

    proc: Proc
    port: int
    ns: Netns | None
    config_path: Path | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str, headers: dict[str, str] | None = None, method: str = "GET") -> tuple[int, str]:
        if self.ns is not None:
            return self.ns.get(self.base + path, headers)
        req = urllib.request.Request(self.base + path, headers=headers or {}, method=method)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return int(r.status), r.read().decode()
        except urllib.error.HTTPError as err:
            return int(err.code), err.read().decode()

    def metrics(self, path: str = "/metrics", headers: dict[str, str] | None = None) -> dict[str, Any]:
        status, body = self.get(path, headers)
        assert status == 200, body
        return parse_exposition(body)


@pytest.fixture
def exporter(spawn: Callable[..., Proc], tmp_path: Path) -> Callable[..., Exporter]:
    """Start the exporter: ``exporter(*flags, config=None|dict, ns=None|Netns, prefix=None|argv)``;
    stopped at teardown."""

    def start(*flags: str, config: dict[str, Any] | None = None, ns: Netns | None = None,
              prefix: list[str] | None = None) -> Exporter:
        port = free_port()
        argv = sotp_cmd("exporter", "icmp", "--listen", f"127.0.0.1:{port}", *flags)
        path = None
        if config is not None:
            path = tmp_path / f"icmp-{port}.yml"
            path.write_text(yaml.safe_dump(config))
            argv += ["--config", str(path)]
        argv = [*(prefix or []), *argv]  # e.g. setpriv dropping a capability
        if ns is not None:
            argv = ["ip", "netns", "exec", ns.name, *argv]
        proc = spawn(argv, name=f"icmp-exporter-{port}")
        exp = Exporter(proc, port, ns, path)
        deadline = time.monotonic() + 20
        while True:
            if proc.popen.poll() is not None:
                raise AssertionError(f"exporter exited with {proc.popen.returncode}:\n{proc.output()}")
            if ns is None:
                try:
                    wait_for_port(port, timeout=0.2)
                    break
                except TimeoutError:
                    pass
            elif "listening on" in proc.output():
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"exporter did not start:\n{proc.output()}")
            time.sleep(0.05)
        return exp

    return start


@pytest.fixture
def tun_responder(spawn: Callable[..., Proc], tmp_path: Path) -> Callable[..., Callable[[], dict[str, int]]]:
    """``tun_responder(ns, subnet_prefix, delay=, drop_every=)``: a TUN device ``tun0`` in ``ns`` with
    ``<prefix>.1/24``; echo requests to any other address of the /24 are answered by the scripted responder.
    Returns a function reading its exact request/reply counts."""

    def start(ns: Netns, prefix: str, delay: float = 0.0, drop_every: int = 0) -> Callable[[], dict[str, int]]:
        if not Path("/dev/net/tun").exists():
            missing("/dev/net/tun is absent: the delay/loss tests need TUN devices")
        stats = tmp_path / f"tun-{ns.name}.json"
        spawn(["ip", "netns", "exec", ns.name, sys.executable, str(HERE / "tun_responder.py"), "tun0",
               "--delay", str(delay), "--drop-every", str(drop_every), "--stats", str(stats)], name="tun")
        deadline = time.monotonic() + 10
        while not stats.exists():
            if time.monotonic() > deadline:
                raise AssertionError("tun responder did not start")
            time.sleep(0.05)
        ns.ip("addr", "add", f"{prefix}.1/24", "dev", "tun0")
        ns.ip("link", "set", "tun0", "up")

        def read() -> dict[str, int]:
            data: dict[str, int] = json.loads(stats.read_text())
            return data

        return read

    return start


@pytest.fixture
def quiet_dns(netns: Callable[[str], Netns]) -> Iterator[Netns]:
    """A namespace whose resolv.conf (bind-mounted by ``ip netns exec`` from /etc/netns/NAME) points at
    127.0.0.1, where nothing listens: name lookups fail inside the namespace, no query leaves it."""
    ns = netns("dns")
    etc = Path("/etc/netns") / ns.name
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "resolv.conf").write_text("nameserver 127.0.0.1\n")
    yield ns
    shutil.rmtree(etc, ignore_errors=True)
