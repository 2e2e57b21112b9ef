"""The send queue: batches wait in memory while the receiver answers, on disk while it does not.

A batch is one encoded remote-write body. In normal operation the queue holds at most the current
interval's batches in memory. When a send fails with a retryable error, :meth:`Buffer.spill` moves them
to the buffer directory, and every later batch goes to disk behind them until the backlog is drained,
so batches always leave in the order they were collected — across restarts too, since the directory is
read back at start-up.

On disk each batch is one file ``<seq:016d>-<samples>-<crc32:08x>.rw`` (written to ``.tmp``, fsynced, then
renamed, so a crash never leaves half a batch under a ``.rw`` name). The CRC-32 of the body in the name
catches what the rename cannot: a file torn or damaged by the disk or by hand is skipped with a logged
reason and counted as dropped, never sent and never a crash (files of older agents, named without it, are
sent unchecked). The directory is bounded by ``max_bytes``: when a new batch does not fit, the oldest
batches are deleted first, counted in ``dropped_samples`` and logged.
"""

from __future__ import annotations

import logging
import os
import zlib
from collections import deque
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("agent.buffer")


@dataclass(frozen=True, slots=True)
class Batch:
    seq: int
    samples: int
    body: bytes
    path: Path | None = None  # set when the batch lives on disk


class Buffer:
    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.dir = directory
        self.max_bytes = max_bytes
        self.dir.mkdir(parents=True, exist_ok=True)
        for stale in self.dir.glob("*.tmp"):  # a crash between write and rename
            stale.unlink(missing_ok=True)
        # (seq, samples, size, crc) per file, oldest first (crc -1: an older agent's file, no checksum);
        # plain ints because a long outage holds ~10^4 batches and the agent's memory budget is small (the
        # path is rebuilt from them)
        self._disk: deque[tuple[int, int, int, int]] = deque()
        for p in sorted(self.dir.glob("*.rw")):
            parts = p.stem.split("-")
            try:
                crc = int(parts[2], 16) if len(parts) == 3 else -1
                if len(parts) not in (2, 3):
                    raise ValueError(p.stem)
                self._disk.append((int(parts[0]), int(parts[1]), p.stat().st_size, crc))
            except (ValueError, OSError):
                log.warning("ignoring unexpected file %s in the buffer directory", p)
        self._mem: deque[Batch] = deque()
        self._next_seq = (self._disk[-1][0] + 1) if self._disk else 0
        self.disk_bytes = sum(d[2] for d in self._disk)
        self._disk_samples = sum(d[1] for d in self._disk)
        self.dropped_samples = 0
        if self._disk:
            log.info("buffer %s holds %d batches (%d bytes) from a previous run; replaying them first",
                     self.dir, len(self._disk), self.disk_bytes)

    # -- state ---------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._disk) + len(self._mem)

    @property
    def samples(self) -> int:
        return self._disk_samples + sum(b.samples for b in self._mem)

    @property
    def on_disk(self) -> int:
        return len(self._disk)

    # -- queue operations ----------------------------------------------------------------------------
    def push(self, body: bytes, samples: int) -> None:
        """Queue a batch behind every earlier one (on disk if a backlog is already there)."""
        batch = Batch(self._next_seq, samples, body)
        self._next_seq += 1
        if self._disk:
            self._write(batch)
        else:
            self._mem.append(batch)

    def spill(self) -> None:
        """Move the in-memory batches to disk (the receiver is unreachable, or we are shutting down)."""
        while self._mem:
            self._write(self._mem.popleft())

    def peek(self) -> Batch | None:
        """The oldest batch, or None."""
        while self._disk:
            seq, samples, _, crc = self._disk[0]
            path = self._path(seq, samples, crc)
            try:
                body = path.read_bytes()
            except OSError as err:
                reason = f"cannot read it: {err}"
            else:
                if crc < 0 or zlib.crc32(body) == crc:
                    return Batch(seq, samples, body, path)
                reason = (f"its {len(body)} bytes do not match the checksum in its name (a torn write or a "
                          "damaged disk)")
            log.error("skipping buffered batch %s (%d samples, counted as dropped): %s", path, samples, reason)
            self._pop_disk()
            self.dropped_samples += samples
        return self._mem[0] if self._mem else None

    def pop(self, batch: Batch) -> None:
        """Remove ``batch`` (the one :meth:`peek` returned) after it was sent or rejected for good."""
        if batch.path is not None:
            if self._disk and self._disk[0][0] == batch.seq:
                self._pop_disk()
        elif self._mem and self._mem[0].seq == batch.seq:
            self._mem.popleft()

    # -- disk ----------------------------------------------------------------------------------------
    def _path(self, seq: int, samples: int, crc: int) -> Path:
        return self.dir / (f"{seq:016d}-{samples}.rw" if crc < 0 else f"{seq:016d}-{samples}-{crc:08x}.rw")

    def _pop_disk(self) -> None:
        seq, samples, size, crc = self._disk.popleft()
        self._path(seq, samples, crc).unlink(missing_ok=True)
        self.disk_bytes -= size
        self._disk_samples -= samples

    def _write(self, batch: Batch) -> None:
        size = len(batch.body)
        if size > self.max_bytes:
            log.error("batch of %d bytes (%d samples) is larger than the whole buffer (%d bytes); dropping "
                      "it (raise --buffer-max-bytes)", size, batch.samples, self.max_bytes)
            self.dropped_samples += batch.samples
            return
        dropped_batches = dropped_samples = 0
        while self._disk and self.disk_bytes + size > self.max_bytes:
            dropped_samples += self._disk[0][1]
            dropped_batches += 1
            self._pop_disk()
        if dropped_batches:
            self.dropped_samples += dropped_samples
            log.warning("buffer %s full (%d bytes, --buffer-max-bytes): dropped the %d oldest batches "
                        "(%d samples)", self.dir, self.max_bytes, dropped_batches, dropped_samples)
        crc = zlib.crc32(batch.body)
        path = self._path(batch.seq, batch.samples, crc)
        tmp = path.with_suffix(".tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(batch.body)
                fh.flush()
                os.fsync(fh.fileno())
            tmp.rename(path)
        except OSError as err:
            log.error("cannot write batch to %s, dropping it (%d samples): %s", path, batch.samples, err)
            tmp.unlink(missing_ok=True)
            self.dropped_samples += batch.samples
            return
        self._disk.append((batch.seq, batch.samples, size, crc))
        self.disk_bytes += size
        self._disk_samples += batch.samples
