"""What `figspec serve` costs when nothing changes: CPU seconds used by the
server over 10 s of idling, with a page open (polling /state.json every 0.3 s)
and without, in a project of 100 figures.

    python benchmarks/bench_serve.py [--figures 100] [--seconds 10]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from common import machine, make_project, tool


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--figures", type=int, default=100)
    ap.add_argument("--seconds", type=float, default=10)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = make_project(Path(tmp), args.figures)
        proc = subprocess.Popen([tool("figspec"), "serve", "--port", "0"], cwd=root,
                                stdout=subprocess.PIPE, text=True)
        url = proc.stdout.readline().strip()
        time.sleep(3)  # the first check of every spec
        rows = []
        for polling in (False, True):
            stop = threading.Event()

            def page() -> None:  # as the page does: the whole state once, then versions
                version = __import__("json").loads(
                    urllib.request.urlopen(url + "state.json").read())["version"]
                while not stop.wait(0.3):
                    urllib.request.urlopen(f"{url}state.json?since={version}").read()

            thread = threading.Thread(target=page)
            if polling:
                thread.start()
            before = cpu_seconds(proc.pid)
            time.sleep(args.seconds)
            used = cpu_seconds(proc.pid) - before
            stop.set()
            if polling:
                thread.join()
            rows.append((polling, used))
        proc.terminate()
        proc.wait()
    print(f"machine: {machine()}; {args.figures} figures, {args.seconds:.0f} s idle\n")
    print("| while idle | server CPU | share of one core |\n|---|---|---|")
    for polling, used in rows:
        what = "a page open (polls every 0.3 s)" if polling else "no page open"
        print(f"| {what} | {used:.2f} s | {100 * used / args.seconds:.1f}% |")


if __name__ == "__main__":
    main()
