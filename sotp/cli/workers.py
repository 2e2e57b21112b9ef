"""``sotp serve --workers N``: N server processes behind one listening socket, supervised.

One Python process uses one core; remote-write decoding and PromQL evaluation are CPU work. With
``--workers N`` (``server.workers``) the parent binds the socket once and starts N copies of the same
``sotp serve`` command that inherit it (the kernel spreads connections over them); the parent serves
nothing, restarts a worker that exits (with backoff) and stops them all on SIGTERM/SIGINT.

The workers are replicas on one store, as several ``sotp serve`` behind a load balancer are: each keeps
its own head and reads the others' log rows before answering (docs/storage.md). Self-metrics are
aggregated over the workers with prometheus_client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, a
directory the parent creates), so ``/metrics`` answers the same totals whichever worker serves it.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from types import FrameType

log = logging.getLogger("sotp.serve")

#: The hidden option a worker gets: the inherited listening socket's file descriptor.
WORKER_FD_OPTION = "--worker-fd"
#: Restart backoff of a worker that exited on its own, seconds.
BACKOFF_S = (1.0, 2.0, 5.0, 10.0)


def bind(host: str, port: int) -> socket.socket:
    """The listening socket the workers share (no SO_REUSEPORT: no other process can join the port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.create_server((host, port), family=family, backlog=1024)
    sock.set_inheritable(True)
    return sock


def supervise(workers: int, host: str, port: int, argv: list[str]) -> int:
    """Run ``workers`` copies of ``sotp <argv>`` on one socket until SIGTERM/SIGINT; returns the exit code."""
    sock = bind(host, port)
    metrics_dir = tempfile.mkdtemp(prefix="sotp-serve-metrics-")
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": metrics_dir}
    command = [sys.executable, "-m", "sotp", *argv, WORKER_FD_OPTION, str(sock.fileno())]
    procs: dict[int, subprocess.Popen[bytes]] = {}
    restarts: dict[int, int] = {}
    stopping = False

    def start(slot: int) -> None:
        procs[slot] = subprocess.Popen(command, env=env, pass_fds=(sock.fileno(),))

    def stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    log.info("serving on http://%s:%d with %d worker processes", host, port, workers)
    for slot in range(workers):
        start(slot)
    try:
        while not stopping:
            time.sleep(0.2)
            for slot, proc in list(procs.items()):
                code = proc.poll()
                if code is None or stopping:
                    continue
                _forget_worker(metrics_dir, proc.pid)
                n = restarts.get(slot, 0)
                delay = BACKOFF_S[min(n, len(BACKOFF_S) - 1)]
                log.warning("serve worker %d (pid %d) exited with %d; restarting in %gs", slot, proc.pid, code, delay)
                restarts[slot] = n + 1
                time.sleep(delay)
                start(slot)
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        sock.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0


def _forget_worker(metrics_dir: str, pid: int) -> None:
    """Drop a dead worker's live gauges from the aggregate (its counters keep counting, as Prometheus expects)."""
    try:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, metrics_dir)  # type: ignore[no-untyped-call]
    except Exception as err:  # a bookkeeping failure must not stop the supervisor
        log.warning("cannot clear metrics of worker pid %d: %s", pid, err)


def inherited_socket(fd: int) -> socket.socket:
    """The socket a worker got from its supervisor."""
    return socket.socket(fileno=fd)


__all__ = ["WORKER_FD_OPTION", "inherited_socket", "supervise"]
