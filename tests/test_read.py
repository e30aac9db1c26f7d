"""How a reduction reads a local checkpoint: where its files are mapped, no
copy into a buffer; memory bounded however big the pair; a file that
shrinks while it is read is a located error, never a crash; the maps closed
with the files, whatever the caller still holds."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

import checkpoints as ck
import support
from figspec.sources.reduce import CHUNK, reduce_all, reduce_run
from figspec.sources.safetensors import open_checkpoint
from figspec.sources.shard_data import Files

EXACT = frozenset([("exact", 0.0)])


def spec(project: Path, modules: str = "q_proj, k_proj") -> Path:
    return support.write(project / "specs" / "fig.yaml", (
        "data: {checkpoint: ../ckpt/tuned, base: ../ckpt/base, metric: relative_change}\n"
        f"modules: [{modules}]\n"))


def test_a_local_pair_is_read_where_it_is_mapped_not_copied(project: Path, run,
                                                            monkeypatch: pytest.MonkeyPatch):
    """No byte of a local pair goes through preadv into a buffer: the kernel
    reads the files' pages (tensors of two chunks, on two threads)."""
    ck.make_pair(project / "ckpt", shape=(2, CHUNK // 2 + 3))
    copied: Counter[str] = Counter()
    real = os.preadv

    def counting(fd: int, buffers, offset: int, *args) -> int:
        got = real(fd, buffers, offset, *args)
        copied[str(fd)] += got
        return got

    monkeypatch.setattr(os, "preadv", counting)
    code, out, err = run("table", str(spec(project)))
    assert code == 0, err
    assert len(out.splitlines()) == 1 + 3 * 2 and not copied


def test_a_shard_that_shrinks_between_two_chunks_is_a_located_error(
        project: Path, run, monkeypatch: pytest.MonkeyPatch):
    """The file is cut short (written again in place) after its first
    chunks are reduced, from a window of it: the next ones, in that window,
    are never touched (a mapped page past the end would kill the process
    with SIGBUS). One tensor of 18 chunks (more than the kernel takes in one
    call) is drawn: a second thread reading another tensor of the file at
    the moment it is cut would be killed so (docs/checkpoints.md)."""
    tuned, _, _ = ck.make_pair(project / "ckpt", layers=1, shape=(2, 9 * CHUNK + 3))
    shard = tuned / "model.safetensors"
    real = Files.mapped

    def cutting(self, t, first, *args):
        if t.file == shard and first > 0:
            with open(shard, "r+b") as f:
                f.truncate(t.start + 64)
        return real(self, t, first, *args)

    monkeypatch.setattr(Files, "mapped", cutting)
    code, _, err = run("table", str(spec(project, "q_proj")))
    assert code == 1 and "internal error" not in err and "Traceback" not in err, err
    assert "in ckpt/tuned/model.safetensors" in err and "tensor `model.layers.0." in err, err
    assert "the file changed while it was read" in err


def test_closing_the_files_while_a_chunk_is_still_viewed(tmp_path: Path):
    """A caller's last chunk outlives the files: closing them raises nothing,
    and the chunk still reads what the file held."""
    tuned, _, stored = ck.make_pair(tmp_path, layers=1, shape=(4, 64))
    t = open_checkpoint(tuned)["model.layers.0.self_attn.q_proj.weight"]
    files = Files()
    view = files.read_into(t, 0, t.count, bytearray(t.count * 2))
    array = np.frombuffer(view, np.uint8)  # an export of the map, as the kernel's
    files.close()
    assert array.tobytes() == stored["tuned"][t.name]


def test_a_run_of_more_checkpoints_than_a_thread_maps_gives_the_same_sums(tmp_path: Path):
    """Eight checkpoints against one base, chunk by chunk: more files than a
    thread keeps mapped, so some are read into buffers; every pair's sums
    are those it gives alone, bit for bit."""
    runs = ck.make_run(tmp_path, [1, 2, 3, 4, 5, 6, 7, 8], shape=(3, CHUNK // 2 + 5))
    base = open_checkpoint(tmp_path / "base")
    steps = [open_checkpoint(p) for p in sorted(runs.iterdir())]
    together = reduce_run(steps, base, EXACT, [set()] * len(steps), threads=2)
    for step, sums in zip(steps, together):
        assert sums == reduce_all(step, base, EXACT, set(), threads=1)


RSS = """
import json, resource, sys
from pathlib import Path
from figspec.sources.reduce import reduce_all
from figspec.sources.safetensors import open_checkpoint
t, b = open_checkpoint(Path(sys.argv[1])), open_checkpoint(Path(sys.argv[2]))
reduce_all(dict(list(t.items())[:1]), b, frozenset(), set(), 2, )  # imports, the kernel
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
reduce_all(t, b, frozenset([("exact", 0.0)]), set(), 2)
print(json.dumps((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024))
"""


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss in KB, as Linux gives it")
def test_memory_stays_bounded_however_big_the_pair(tmp_path: Path):
    """A pair of 2 x 96 MB, reduced on two threads: the process grows by a
    few windows, never by the files it maps (every page touched would count)."""
    rng = np.random.default_rng(0)
    for side in ("tuned", "base"):
        ck.write_safetensors(tmp_path / side / "model.safetensors", {
            f"model.layers.{i}.mlp.up_proj.weight":
                ("BF16", (4096, 1536), rng.integers(0x3C00, 0x3D00, 4096 * 1536,
                                                    dtype=np.uint16).tobytes())
            for i in range(8)})
    out = subprocess.run([sys.executable, "-c", RSS, str(tmp_path / "tuned"),
                          str(tmp_path / "base")], capture_output=True, text=True,
                         env={**os.environ, "FIGSPEC_KERNEL": "numpy"})
    assert out.returncode == 0, out.stderr
    grown = json.loads(out.stdout.splitlines()[-1])
    assert grown < 60, f"{grown} MB"
