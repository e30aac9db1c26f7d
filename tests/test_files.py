"""Stamps and writes: bounded memory, regular files only, all or nothing."""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

import pytest

from figspec.files import hash_file, read_bounded, write_together


def test_the_stamp_of_a_large_file_takes_bounded_memory(tmp_path: Path):
    """A sparse 1 GB file (a checkpoint shard, say) is hashed in pieces."""
    big = tmp_path / "shard.bin"
    with big.open("wb") as f:
        f.truncate(1 << 30)
    tracemalloc.start()
    try:
        digest = hash_file(big, big.stat().st_size)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(digest) == 64
    assert peak < 8 << 20, f"{peak:,} bytes"


def test_a_fifo_is_refused_without_waiting(tmp_path: Path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="not a regular file"):
        read_bounded(fifo, 100)


def test_files_written_together_or_not_at_all(tmp_path: Path):
    a, b = tmp_path / "a.svg", tmp_path / "sub" / "b.png"  # b's folder is missing
    a.write_bytes(b"old")
    with pytest.raises(OSError):
        write_together({a: b"new", b: b"new"})
    assert a.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["a.svg"]  # no temporary left
