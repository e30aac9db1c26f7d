"""`figspec diff` in a project of 100 figures where one changed, against a
cold build of that one figure plus git's own time (`git ls-tree` of the
revision, which diff lists). Goal: diff < 2 x (cold build of one + git).

With `--changed N`, N figures changed (one cell each): diff, which draws
three review images per figure, against a cold build of those N figures.

    python benchmarks/bench_diff.py [--figures 100] [--changed 1] [--runs 5]
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
    ap.add_argument("--changed", type=int, default=1)
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
        changed = [f"fig{i:03d}" for i in range(args.figures)][
            7 if args.changed == 1 else 0:][:args.changed]
        for name in changed:
            data = root / "data" / f"{name}.csv"
            lines = data.read_text().splitlines()
            lines[50] = lines[50].rsplit(",", 1)[0] + ",0.17777"  # one cell of the figure
            data.write_text("\n".join(lines) + "\n")

        diff, diff_all = median_time(
            lambda: run([figspec, "diff", "--out", str(Path(tmp) / "review")], root), args.runs)

        def cold_changed() -> None:
            shutil.rmtree(Path(tmp) / "one", ignore_errors=True)
            run([figspec, "build", *(f"specs/{n}.yaml" for n in changed),
                 "--out", str(Path(tmp) / "one")], root)

        one, _ = median_time(cold_changed, args.runs)
        listing, _ = median_time(lambda: subprocess.run(
            ["git", "ls-tree", "-r", "-z", "HEAD"], cwd=root, check=True,
            stdout=subprocess.DEVNULL), args.runs)
    budget = 2 * (one + listing)
    what = "one" if args.changed == 1 else f"the {args.changed}"
    print(f"machine: {machine()}; {args.figures} figures, {args.changed} changed; "
          f"median of {args.runs}\n")
    print("| what | wall time |\n|---|---|")
    print(f"| `figspec diff` (text, images, review page) | {diff:.2f} s |")
    print(f"| `figspec build` of {what} figure{'s' * (args.changed > 1)}, cold | {one:.2f} s |")
    print(f"| `git ls-tree -r HEAD` (git's own time) | {listing:.2f} s |")
    print(f"\ndiff / (cold build of {what} + git): {diff / (one + listing):.2f} "
          f"(goal < 2: {'met' if diff < budget else 'not met'}); runs: "
          + ", ".join(f"{t:.2f}" for t in diff_all))


if __name__ == "__main__":
    main()
