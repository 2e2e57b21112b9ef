"""The agent's send queue: order across spills and restarts, the size limit, crash leftovers."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent.buffer import Buffer


def drain(buf: Buffer) -> list[bytes]:
    out = []
    while (b := buf.peek()) is not None:
        out.append(b.body)
        buf.pop(b)
    return out


def test_memory_only_while_receiver_answers(tmp_path: Path) -> None:
    buf = Buffer(tmp_path, 1 << 20)
    buf.push(b"a", 1)
    buf.push(b"b", 2)
    assert buf.on_disk == 0 and buf.samples == 3
    assert drain(buf) == [b"a", b"b"]
    assert list(tmp_path.iterdir()) == []


def test_spill_keeps_order_and_later_batches_queue_behind(tmp_path: Path) -> None:
    buf = Buffer(tmp_path, 1 << 20)
    buf.push(b"1", 1)
    buf.push(b"2", 1)
    buf.spill()  # the receiver went away
    buf.push(b"3", 1)  # collected during the outage: must go behind 1 and 2, on disk
    assert buf.on_disk == 3
    first = buf.peek()
    assert first is not None and first.body == b"1"
    buf.pop(first)
    buf.push(b"4", 1)
    assert drain(buf) == [b"2", b"3", b"4"]
    buf.push(b"5", 1)  # backlog gone: back to memory
    assert buf.on_disk == 0


def test_restart_replays_in_order_and_continues_numbering(tmp_path: Path) -> None:
    buf = Buffer(tmp_path, 1 << 20)
    for i in range(12):  # more than 9, so a lexical sort of unpadded names would misorder them
        buf.push(str(i).encode(), i + 1)
    buf.spill()
    again = Buffer(tmp_path, 1 << 20)
    assert again.samples == sum(range(1, 13))
    again.push(b"new", 1)
    assert drain(again) == [str(i).encode() for i in range(12)] + [b"new"]


def test_size_limit_drops_oldest_and_counts(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    buf = Buffer(tmp_path, 1000)
    buf.spill()
    for i in range(10):
        buf.push(bytes([i]) * 300, 10)
        buf.spill()
        assert buf.disk_bytes <= 1000
        assert sum(p.stat().st_size for p in tmp_path.iterdir()) <= 1000
    # 3 batches of 300 bytes fit in 1000; the 7 oldest were dropped, 10 samples each
    assert buf.dropped_samples == 70
    assert drain(buf) == [bytes([i]) * 300 for i in (7, 8, 9)]
    assert "full" in caplog.text and "dropped the 1 oldest batches (10 samples)" in caplog.text


def test_batch_larger_than_buffer_is_dropped_not_looping(tmp_path: Path) -> None:
    buf = Buffer(tmp_path, 100)
    buf.push(b"x" * 101, 5)
    buf.spill()
    assert buf.dropped_samples == 5 and len(buf) == 0


def test_crash_leftovers_are_cleaned(tmp_path: Path) -> None:
    (tmp_path / "0000000000000003-7.tmp").write_bytes(b"half")
    (tmp_path / "0000000000000001-7.rw").write_bytes(b"whole")
    buf = Buffer(tmp_path, 1 << 20)
    assert not list(tmp_path.glob("*.tmp"))
    assert drain(buf) == [b"whole"]


@pytest.mark.parametrize("damage", ["torn", "flipped", "emptied"])
def test_damaged_batch_is_skipped_with_its_reason(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                  damage: str) -> None:
    buf = Buffer(tmp_path, 1 << 20)
    for body in (b"first batch", b"second batch", b"third batch"):
        buf.push(body, 4)
    buf.spill()
    second = sorted(tmp_path.glob("*.rw"))[1]
    data = second.read_bytes()
    second.write_bytes({"torn": data[:5], "flipped": bytes([data[0] ^ 1]) + data[1:], "emptied": b""}[damage])
    again = Buffer(tmp_path, 1 << 20)  # the agent restarts on the damaged directory
    assert drain(again) == [b"first batch", b"third batch"]
    assert again.dropped_samples == 4 and not list(tmp_path.glob("*.rw"))
    assert f"skipping buffered batch {second}" in caplog.text and "do not match the checksum" in caplog.text
