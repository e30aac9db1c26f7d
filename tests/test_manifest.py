"""The manifest: what each figure was built from, checked as it is read."""

from __future__ import annotations

import json
from pathlib import Path

from figspec.files import Stamp
from figspec.manifest import MANIFEST, Manifest, env_change


def recorded(tmp_path: Path) -> tuple[Manifest, Path]:
    spec = tmp_path / "specs" / "a.yaml"
    spec.parent.mkdir()
    spec.write_text("x")
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.svg").write_bytes(b"<svg/>")
    manifest = Manifest(out)
    manifest.record(spec, "a", "env", {spec: Stamp.of(spec, b"x")},
                    {"svg": (out / "a.svg", b"<svg/>")})
    manifest.save()
    return Manifest.load(out), spec


def test_a_recorded_figure_is_up_to_date_until_an_input_changes(tmp_path: Path):
    manifest, spec = recorded(tmp_path)
    assert manifest.stale_reason(spec, "env") is None
    spec.write_text("y")
    assert manifest.stale_reason(spec, "env").endswith("a.yaml changed")


def test_entries_of_the_wrong_shape_are_dropped_not_trusted(tmp_path: Path):
    manifest, spec = recorded(tmp_path)
    data = json.loads((tmp_path / "out" / MANIFEST).read_text())
    (key,) = data["figures"]
    data["figures"]["other"] = {"name": "b/../../x", "env": "env", "inputs": {}, "outputs": {}}
    data["figures"][key]["inputs"] = ["not", "a", "mapping"]
    (tmp_path / "out" / MANIFEST).write_text(json.dumps(data))
    assert Manifest.load(tmp_path / "out").entries == {}


def test_a_renamed_output_is_an_orphan(tmp_path: Path):
    manifest, spec = recorded(tmp_path)
    out = tmp_path / "out"
    (out / "b.svg").write_bytes(b"<svg/>")
    manifest.record(spec, "b", "env", {}, {"svg": (out / "b.svg", b"<svg/>")})
    assert manifest.orphans() == {out / "a.svg": True}
    (out / "a.svg").write_bytes(b"edited")
    assert manifest.orphans() == {out / "a.svg": False}


def test_env_change_says_what_changed():
    old = "figspec==0.1.0;vl-convert-python==1.9.0|project=None"
    new = "figspec==0.1.0;vl-convert-python==1.10.0|project=/p/figspec.yaml"
    assert env_change(old, new).startswith("figspec.yaml added")
    assert "vl-convert-python 1.9.0 -> 1.10.0" in env_change(old, new)
