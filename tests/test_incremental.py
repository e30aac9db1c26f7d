"""Incremental, parallel and watched builds: a figure is rebuilt exactly when
something it depends on changed, whatever the number of workers."""

from __future__ import annotations

import hashlib
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import support
from figspec import builder as build_module
from figspec.builder import Options, build, status
from figspec.events import Finished
from figspec.watch import watch

REPO = Path(__file__).resolve().parent.parent


def spec(project: Path, name: str, data: str = "cells.csv", extra: str = "") -> Path:
    return support.write(project / "specs" / f"{name}.yaml",
                         support.spec_text(f"path: ../data/{data}", extra=extra))


def statuses(project: Path, **kw) -> dict[str, str]:
    results = build([project / "specs"], Options(out_dir=project / "out", jobs=1, **kw))
    return {r.spec.stem: r.status for r in results}


@pytest.fixture
def three(project: Path) -> Path:
    """a and b read cells.csv; c reads other.csv."""
    support.write_csv(project / "data" / "other.csv", support.long_rows())
    spec(project, "a")
    spec(project, "b")
    spec(project, "c", "other.csv")
    assert statuses(project) == {"a": "built", "b": "built", "c": "built"}
    return project


def test_nothing_changed_nothing_built(three: Path):
    mtimes = {p: p.stat().st_mtime_ns for p in (three / "out").iterdir()}
    assert statuses(three) == {"a": "up to date", "b": "up to date", "c": "up to date"}
    assert {p: p.stat().st_mtime_ns for p in (three / "out").iterdir()} == mtimes


def test_a_data_change_rebuilds_exactly_its_readers(three: Path):
    rows = support.long_rows()
    rows[0]["value"] = 0.5
    support.write_csv(three / "data" / "other.csv", rows)
    assert statuses(three) == {"a": "up to date", "b": "up to date", "c": "built"}
    support.write_csv(three / "data" / "cells.csv", rows)
    assert statuses(three) == {"a": "built", "b": "built", "c": "up to date"}


def test_touching_without_changing_content_rebuilds_nothing(three: Path):
    for f in (three / "data" / "cells.csv", three / "specs" / "a.yaml", three / "out" / "a.svg"):
        os.utime(f, (time.time() + 5, time.time() + 5))
    assert set(statuses(three).values()) == {"up to date"}


def test_spec_change_and_format_change(three: Path):
    spec(three, "a", extra="title: new\n")
    assert statuses(three)["a"] == "built"
    spec(three, "b", extra="output: {formats: [svg, pdf]}\n")
    assert statuses(three) == {"a": "up to date", "b": "built", "c": "up to date"}
    assert support.figures(three / "out") == ["a.png", "a.svg", "b.pdf", "b.png", "b.svg",
                                              "c.png", "c.svg"]


def test_missing_or_hand_edited_output_is_rebuilt(three: Path):
    original = (three / "out" / "a.svg").read_bytes()
    (three / "out" / "a.svg").unlink()
    (three / "out" / "b.png").write_bytes(b"edited by hand")
    reasons = {r.spec.stem: r.reason for r in status([three / "specs"], Options(three / "out"))}
    assert reasons == {"a": "out/a.svg is missing", "b": "out/b.png was modified", "c": None}
    assert statuses(three) == {"a": "built", "b": "built", "c": "up to date"}
    assert (three / "out" / "a.svg").read_bytes() == original


def test_renderer_version_change_rebuilds_all(three: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(build_module, "environment_key", lambda: "vl-convert-python==99")
    assert set(statuses(three).values()) == {"built"}


def test_an_altair_release_rebuilds_nothing(three: Path):
    """Altair draws no figure (it only serves notebooks): a figure built under
    one Altair release is up to date under another."""
    code = ("import importlib.metadata as m, sys\n"
            "real = m.version\n"
            "m.version = lambda d: '0.0.1+other' if d.lower() == 'altair' else real(d)\n"
            "assert m.version('altair') == '0.0.1+other'\n"
            "from figspec.cli import main\n"
            "sys.exit(main(['status']))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=three, capture_output=True,
                         text=True, check=True).stdout
    assert [line.split()[:3] for line in out.splitlines()[:3]] == \
        [["up", "to", "date"]] * 3, out


def test_force(three: Path):
    assert set(statuses(three, force=True).values()) == {"built"}


def test_a_broken_manifest_means_a_full_rebuild(three: Path):
    (three / "out" / ".figspec-manifest.json").write_text("{not json")
    assert set(statuses(three).values()) == {"built"}


def test_failing_spec_keeps_its_figure_and_is_retried(three: Path):
    before = (three / "out" / "a.svg").read_bytes()
    spec(three, "a", extra="domain: [2, 1]\n")
    assert statuses(three) == {"a": "failed", "b": "up to date", "c": "up to date"}
    assert (three / "out" / "a.svg").read_bytes() == before
    assert statuses(three)["a"] == "failed"  # still failing, still reported
    spec(three, "a")
    assert statuses(three)["a"] == "up to date"  # back to what was built


def test_status_command(three: Path, run):
    support.write_csv(three / "data" / "other.csv", support.long_rows(layers=3))
    spec(three, "b", extra="colour: x\n")
    code, out, err = run("status")
    assert code == 1
    assert out.splitlines() == [
        "up to date  specs/a.yaml",
        "failing     specs/b.yaml (specs/b.yaml changed)",
        "stale       specs/c.yaml (data/other.csv changed)",
    ]
    assert "unknown key `colour`" in err
    c_svg = (three / "out" / "c.svg").read_bytes()
    assert run("build", "--dry-run")[1] == out
    assert run("status")[1] == out  # nothing was built: c is still stale
    assert (three / "out" / "c.svg").read_bytes() == c_svg


def test_progress_on_a_terminal_rewrites_one_line():
    from figspec.commands.build import Progress as _Progress
    from figspec.events import Result

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Tty()
    progress = _Progress(stream)
    progress(Result(Path("specs/a.yaml"), "built"), 1, 2)
    progress(Result(Path("specs/b.yaml"), "up to date"), 2, 2)
    progress.done()
    assert stream.getvalue().count("\r\033[K") == 3 and "\n" not in stream.getvalue()
    assert "[2/2] up to date" in stream.getvalue()


def test_no_op_build_imports_nothing_heavy(three: Path):
    code = ("import sys; from figspec.cli import main; rc = main(['build']); "
            "heavy = [m for m in ('altair', 'vl_convert', 'pikepdf', 'pydantic', 'numba') "
            "if m in sys.modules]; print(rc, heavy)")
    out = subprocess.run([sys.executable, "-c", code], cwd=three, capture_output=True, text=True,
                         check=True).stdout
    assert out.strip().splitlines()[-1] == "0 []"


def test_watch_rebuilds_when_data_changes(project: Path):
    spec(project, "a")
    builds, thread = support.watched(project)
    first = (project / "out" / "a.svg").read_bytes()
    rows = support.long_rows()
    rows[3]["value"] = 0.9
    support.write_csv(project / "data" / "cells.csv", rows, atomic=True)
    thread.join(60)
    assert not thread.is_alive()
    assert builds == [["built"], ["built"]]
    assert (project / "out" / "a.svg").read_bytes() != first


def test_watch_command_stops_cleanly_on_interrupt(project: Path):
    spec(project, "a")
    proc = subprocess.Popen([sys.executable, "-m", "figspec", "build", "--watch", "--poll", "0.1"],
                            cwd=project, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (project / "out" / "a.svg").exists() and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "1 built, 0 up to date, 0 failed" in out


def _digests(folder: Path) -> dict[str, str]:
    return {n: hashlib.sha256((folder / n).read_bytes()).hexdigest()
            for n in support.figures(folder)}


@pytest.mark.slow
def test_output_is_identical_whatever_the_number_of_workers(project: Path):
    for i in range(6):
        spec(project, f"fig{i}", extra=f"title: figure {i}\noutput: {{formats: [svg, png, pdf, html]}}\n")
    one = build([project / "specs"], Options(out_dir=project / "one", jobs=1))
    two = build([project / "specs"], Options(out_dir=project / "two", jobs=2))
    assert {r.status for r in one + two} == {"built"}
    assert _digests(project / "one") == _digests(project / "two")
    assert len(_digests(project / "one")) == 24


def test_status_says_what_changed_in_the_environment(three: Path, run,
                                                     monkeypatch: pytest.MonkeyPatch):
    """Not "figspec or renderer version changed": which version, or which figspec.yaml."""
    real = build_module.environment_key()
    newer = real.replace("vl-convert-python==", "vl-convert-python==99.0+was-")
    with monkeypatch.context() as m:
        m.setattr(build_module, "environment_key", lambda: newer)
        reasons = {r.spec.stem: r.reason
                   for r in status([three / "specs"], Options(three / "out"))}
    was = real.split("vl-convert-python==")[1].split(";")[0]
    assert reasons["a"] == f"vl-convert-python {was} -> 99.0+was-{was}"
    support.write(three / "figspec.yaml", "defaults: {legend: {format: .2f}}\n")
    code, out, _ = run("status")
    assert out.splitlines()[0] == "stale       specs/a.yaml (figspec.yaml added (figspec.yaml))"


@pytest.mark.parametrize("broken", ["missing", "bad value"])
def test_watch_retries_a_figure_that_never_built_when_its_data_is_fixed(project: Path,
                                                                        broken: str):
    """A spec that failed before it ever built has no manifest entry: its
    files are watched from what checking looked at."""
    data = project / "data" / "cells.csv"
    rows = support.long_rows()
    if broken == "missing":
        data.unlink()
    else:
        rows[3]["value"] = "n/a"
        support.write_csv(data, rows)
    spec(project, "a")
    builds, thread = support.watched(project)
    assert builds == [["failed"]]
    rows[3]["value"] = 0.5
    support.write_csv(data, rows, atomic=True)  # the watch polls meanwhile
    thread.join(60)
    assert not thread.is_alive()
    assert builds == [["failed"], ["built"]]


def test_figures_of_deleted_or_renamed_specs_are_reported_and_cleaned(three: Path, run):
    """Only files figspec wrote, and only while they hold what it wrote."""
    (three / "specs" / "c.yaml").unlink()
    spec(three, "b", extra="output: {name: bee}\n")
    code, out, _ = run("build")
    assert code == 0
    assert ("4 files in out belong to no spec now (deleted or renamed): out/b.png, out/b.svg, "
            "out/c.png, out/c.svg; `figspec clean` removes them") in out
    (three / "out" / "c.png").write_bytes(b"edited by hand")
    (three / "out" / "notes.txt").write_text("not figspec's")
    code, out, _ = run("clean")
    assert code == 0
    assert out.splitlines()[-1] == "3 removed, 1 kept"
    assert support.figures(three / "out") == ["a.png", "a.svg", "bee.png", "bee.svg", "c.png",
                                              "notes.txt"]
    code, out, _ = run("build")
    assert "belong to no spec" not in out


def test_a_build_is_a_stream_of_events(three: Path):
    from figspec.builder import build_events
    from figspec.events import FigureDone, Started

    spec(three, "b", extra="title: changed\n")
    spec(three, "c", extra="colour: x\n")
    events = list(build_events([three / "specs"], Options(three / "out", jobs=1)))
    assert isinstance(events[0], Started) and events[0].total == 3
    done = [e for e in events[1:-1] if isinstance(e, FigureDone)]
    assert [e.done for e in done] == [1, 2, 3]
    assert {e.result.spec.stem: e.result.status for e in done} == {
        "a": "up to date", "b": "built", "c": "failed"}
    assert isinstance(events[-1], Finished)
    assert [r.spec.stem for r in events[-1].results] == ["a", "b", "c"]


def test_figspec_yaml_redraws_only_the_figures_using_what_changed(project: Path, run,
                                                                   tmp_path_factory):
    import checkpoints as ck

    shared = tmp_path_factory.mktemp("shared")
    ck.make_pair(shared)
    support.write(project / "figspec.yaml", f"roots: {{ckpt: {shared}}}\n")
    spec(project, "a")
    support.write(project / "specs" / "b.yaml", "data:\n  checkpoint: $ckpt/tuned\n"
                  "  metric: norm\nmodules: qwen2\n")
    assert run("build")[0] == 0
    support.write(project / "figspec.yaml", f"roots: {{ckpt: {shared}, other: /elsewhere}}\n")
    code, out, _ = run("status")
    assert out.count("up to date") == 2, out  # a root added: nothing to redraw
    moved = tmp_path_factory.mktemp("moved")
    ck.make_pair(moved)
    support.write(project / "figspec.yaml", f"roots: {{ckpt: {moved}, other: /elsewhere}}\n")
    code, out, _ = run("status")
    assert "up to date  specs/a.yaml" in out
    assert "stale       specs/b.yaml (figspec.yaml changed its `roots.ckpt`)" in out
    assert run("build")[0] == 0
    support.write(project / "figspec.yaml", f"roots: {{ckpt: {moved}}}\n"
                  "defaults: {legend: {format: .3f}}\n")
    code, out, _ = run("status")
    assert out.count("figspec.yaml changed its `defaults`") == 2, out


def test_watch_retries_a_figure_fixed_before_it_looks_again(project: Path):
    """The data is fixed the moment the failed build finishes, before the
    watch takes its snapshot: the fix is still seen (no race with timing)."""
    data = project / "data" / "cells.csv"
    rows = support.long_rows()
    rows[3]["value"] = "n/a"
    support.write_csv(data, rows)
    spec(project, "a")
    builds = []
    for event in watch([project / "specs"], Options(out_dir=project / "out", jobs=1), poll=0.05):
        if isinstance(event, Finished):
            builds.append([r.status for r in event.results])
            if len(builds) == 2:
                break
            rows[3]["value"] = 0.5  # the watch is paused here, between build and snapshot
            support.write_csv(data, rows)
    assert builds == [["failed"], ["built"]]
