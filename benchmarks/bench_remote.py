"""A figure over a Hub pair read in place against downloading it whole.

The committed pair (data/ckpt: base and tuned, SYNTHETIC) is published on the
Hub-compatible test server (tests/hubserver.py) on 127.0.0.1; then, each in a
fresh project with empty caches:

- in place: `figspec build` of a spec naming `hf:bench/tuned` and `hf:bench/base`
  (the headers and the drawn tensors are received);
- whole: `snapshot_download` of both repositories (what `hf download` does),
  then `figspec build` of the same spec over the local copies.

Prints the bytes the server sent and the wall time of each, and the bytes
and time of a second build in place (the cache: nothing received).

    .venv/bin/python benchmarks/bench_remote.py [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path[:0] = [str(HERE), str(REPO / "tests")]

from common import machine  # noqa: E402

from hubserver import Hub  # noqa: E402

SPEC = """data:
  checkpoint: {tuned}
  base: {base}
  metric: relative_change
modules: qwen2
output: {{formats: [svg]}}
"""


def project(root: Path, tuned: str, base: str) -> Path:
    (root / ".git").mkdir(parents=True)
    (root / "specs").mkdir()
    (root / "specs" / "fig.yaml").write_text(SPEC.format(tuned=tuned, base=base))
    return root


def build(root: Path, *options: str) -> float:
    from figspec.cli import main

    here = os.getcwd()
    os.chdir(root)
    try:
        start = time.perf_counter()
        assert main(["build", *options]) == 0
        return time.perf_counter() - start
    finally:
        os.chdir(here)


def one(hub: Hub, tmp: Path, k: int) -> dict[str, float]:
    os.environ["FIGSPEC_CACHE"] = str(tmp / f"cache{k}")
    os.environ["HF_HUB_CACHE"] = str(tmp / f"hf{k}")
    out: dict[str, float] = {}
    sent = hub.sent
    root = project(tmp / f"inplace{k}", "hf:bench/tuned", "hf:bench/base")
    out["inplace_s"] = build(root)
    out["inplace_bytes"] = hub.sent - sent
    (root / "specs" / "fig.yaml").write_text((root / "specs" / "fig.yaml").read_text() +
                                             "title: again\n")
    sent = hub.sent
    out["again_s"] = build(root)
    out["again_bytes"] = hub.sent - sent

    from huggingface_hub import snapshot_download

    os.environ["FIGSPEC_CACHE"] = str(tmp / f"cache{k}w")
    sent = hub.sent
    start = time.perf_counter()
    local = {side: snapshot_download(f"bench/{side}", cache_dir=str(tmp / f"dl{k}"),
                                     endpoint=hub.url) for side in ("tuned", "base")}
    out["download_s"] = time.perf_counter() - start
    root = project(tmp / f"whole{k}", local["tuned"], local["base"])
    out["whole_s"] = out["download_s"] + build(root, "--allow-outside")
    out["whole_bytes"] = hub.sent - sent
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with Hub() as hub, tempfile.TemporaryDirectory() as tmp:
        for side in ("tuned", "base"):
            folder = REPO / "data" / "ckpt" / side
            hub.add(f"bench/{side}", {f.name: f.read_bytes() for f in folder.iterdir()})
        os.environ["HF_ENDPOINT"] = hub.url
        os.environ.pop("HF_HUB_OFFLINE", None)
        os.environ["FIGSPEC_KERNEL"] = "numpy"  # no compile in either: the same sums
        import huggingface_hub  # noqa: F401  (imported once, as both ways need it)

        os.environ["FIGSPEC_CACHE"] = str(Path(tmp) / "warm")  # imports and renderer warmed
        build(project(Path(tmp) / "warm", str(REPO / "data/ckpt/tuned"),
                      str(REPO / "data/ckpt/base")), "--allow-outside")
        runs = [one(hub, Path(tmp), k) for k in range(args.runs)]
    total = sum(f.stat().st_size for f in (REPO / "data" / "ckpt").rglob("*") if f.is_file())
    print(f"machine: {machine()}")
    print(f"pair: data/ckpt ({total:,} bytes in all), served on 127.0.0.1; "
          f"median of {args.runs} runs")

    def median(key: str) -> float:
        return sorted(r[key] for r in runs)[len(runs) // 2]

    print(f"in place     {median('inplace_bytes'):>10,.0f} bytes  {median('inplace_s'):.2f} s")
    print(f"again        {median('again_bytes'):>10,.0f} bytes  {median('again_s'):.2f} s")
    print(f"whole + build{median('whole_bytes'):>10,.0f} bytes  {median('whole_s'):.2f} s "
          f"(download {median('download_s'):.2f} s)")


if __name__ == "__main__":
    main()
