"""``sotp serve`` as a real process the fault suite can kill -9 and start again on the same address."""

from __future__ import annotations

import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.conftest import Proc, free_port, sotp_cmd, wait_for_port


class Serve:
    """One ``sotp serve --listen 127.0.0.1:<port> --storage <url>``; every start logs to its own file."""

    def __init__(self, storage: str, logdir: Path, name: str = "serve", port: int | None = None):
        self.storage = storage
        self.logdir = logdir
        self.name = name
        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.procs: list[Proc] = []

    def start(self, timeout_s: float = 60.0) -> Serve:
        argv = sotp_cmd("serve", "--listen", f"127.0.0.1:{self.port}", "--storage", self.storage)
        self.procs.append(Proc(argv, self.logdir / f"{self.name}-{len(self.procs)}.log"))
        wait_for_port(self.port, timeout=timeout_s)
        return self

    def kill9(self) -> None:
        """SIGKILL: no shutdown hook runs, so only what was committed before may remain."""
        self.procs[-1].stop(signal.SIGKILL)

    def stop(self) -> None:
        for proc in self.procs:
            proc.stop()

    def ready(self) -> int:
        """The status of ``/-/ready`` (0 when nothing answers)."""
        try:
            with urllib.request.urlopen(self.base + "/-/ready", timeout=10) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as err:
            return int(err.code)
        except OSError:
            return 0

    def wait_ready(self, want: int = 200, timeout_s: float = 120.0) -> None:
        deadline = time.monotonic() + timeout_s
        while (got := self.ready()) != want:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.base}/-/ready answered {got}, not {want}, for {timeout_s}s")
            time.sleep(0.1)

    def log(self) -> str:
        return "\n".join(p.output() for p in self.procs)
