"""`figspec diff` in a project of 100 figures where one changed, against a
cold build of that one figure plus git's own time (`git archive` of the
revision, which diff unpacks). Goal: diff < 2 x (cold build of one + git).

    python benchmarks/bench_diff.py [--figures 100] [--runs 5]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
from pathlib import Path

from common import machine, make_project, median_time, run, tool


def git(root: Path, *args: str) -> None:
    run(["git", "-c", "user.name=b", "-c", "user.email=b@b", *args], root)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--figures", type=int, default=100)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    figspec = tool("figspec")
    with tempfile.TemporaryDirectory() as tmp:
        root = make_project(Path(tmp) / "paper", args.figures)
        shutil.rmtree(root / ".git")
        git(root, "init", "-q")
        git(root, "add", "-A")
        git(root, "commit", "-qm", "figures")
        run([figspec, "build"], root)  # the working tree's manifest, as in a real checkout
        data = root / "data" / "fig007.csv"
        lines = data.read_text().splitlines()
        lines[50] = lines[50].rsplit(",", 1)[0] + ",0.17777"  # one cell of one figure
        data.write_text("\n".join(lines) + "\n")

        diff, diff_all = median_time(
            lambda: run([figspec, "diff", "--out", str(Path(tmp) / "review")], root), args.runs)

        def cold_one() -> None:
            shutil.rmtree(Path(tmp) / "one", ignore_errors=True)
            run([figspec, "build", "specs/fig007.yaml", "--out", str(Path(tmp) / "one")], root)

        one, _ = median_time(cold_one, args.runs)
        archive, _ = median_time(lambda: subprocess.run(
            ["git", "archive", "--format=tar", "HEAD"], cwd=root, check=True,
            stdout=subprocess.DEVNULL), args.runs)
    budget = 2 * (one + archive)
    print(f"machine: {machine()}; {args.figures} figures, one changed; median of {args.runs}\n")
    print("| what | wall time |\n|---|---|")
    print(f"| `figspec diff` (text, images, review page) | {diff:.2f} s |")
    print(f"| `figspec build` of the one figure, cold | {one:.2f} s |")
    print(f"| `git archive HEAD` (git's own time) | {archive:.2f} s |")
    print(f"\ndiff / (cold build of one + git): {diff / (one + archive):.2f} "
          f"(goal < 2: {'met' if diff < budget else 'not met'}); runs: "
          + ", ".join(f"{t:.2f}" for t in diff_all))


if __name__ == "__main__":
    main()
