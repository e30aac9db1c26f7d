"""figspec diff across git revisions, in scratch repositories."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

import support


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                          text=True).stdout


@pytest.fixture
def repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A paper repository: three specs over one data file, committed."""
    root = tmp_path / "paper"
    support.write_csv(root / "data" / "cells.csv", support.long_rows())
    for name in ("a", "b", "c"):
        support.write(root / "specs" / f"{name}.yaml", support.spec_text(
            extra=f"title: Figure {name}\nlegend: {{format: .3f}}\n"))
    git(root.parent, "init", "-q", str(root))
    git(root, "-c", "user.name=t", "-c", "user.email=t@t", "add", "-A")
    git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
    monkeypatch.chdir(root)
    return root


def commit(repo: Path, message: str = "change") -> None:
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", message)


def tree_state(repo: Path) -> str:
    return git(repo, "status", "--porcelain", "--ignored") + git(repo, "stash", "list")


def test_nothing_changed(repo: Path, run):
    code, out, err = run("diff", "--exit-code")
    assert (code, err) == (0, "")
    assert out.splitlines()[-1] == "0 of 3 figures differ"
    assert not (repo / "out").exists()


def test_a_changed_value_is_named_with_its_cell(repo: Path, run):
    rows = support.long_rows()
    rows[2 * 7 + 2]["value"] = 0.142  # layer 2, v_proj: was 0.1022
    support.write_csv(repo / "data" / "cells.csv", rows)
    before = tree_state(repo)
    code, out, _ = run("diff", "--exit-code")
    assert tree_state(repo).replace("?? out/\n", "").replace("!! out/\n", "") == before
    assert code == 1
    lines = out.splitlines()
    for name in ("a", "b", "c"):
        assert f"changed   specs/{name}.yaml" in lines
    assert "    layer 2, v_proj: 0.1022 -> 0.142 (+0.0398)" in lines
    assert "  1 of 42 cells changed" in lines
    images = repo / "out" / "diff"
    for name in ("before", "after", "difference"):
        assert (images / "specs" / f"a.yaml.{name}.png").is_file()
    assert (images / "index.html").is_file()


def test_labels_added_and_removed_specs_and_a_shared_base(repo: Path, run):
    support.write(repo / "specs" / "_base.yaml", "legend: {format: .3f}\n")
    for name in ("a", "b"):
        support.write(repo / "specs" / f"{name}.yaml", support.spec_text(
            extra=f"extends: _base.yaml\ntitle: Figure {name}\n"))
    commit(repo)
    support.write(repo / "specs" / "_base.yaml", "legend: {format: .3f}\ncolor: {scheme: redblue}\n")
    (repo / "specs" / "c.yaml").unlink()
    support.write(repo / "specs" / "d.yaml", support.spec_text(extra="title: new\n"))
    code, out, _ = run("diff", "--format", "json")
    kinds = {f["spec"]: f["kind"] for f in json.loads(out)["figures"]}
    assert kinds == {"specs/a.yaml": "changed", "specs/b.yaml": "changed",
                     "specs/c.yaml": "removed", "specs/d.yaml": "added"}
    a = next(f for f in json.loads(out)["figures"] if f["spec"] == "specs/a.yaml")
    assert a["cells"] == [] and a["other"] == ["colours blueorange -> redblue"]


def test_two_revisions_and_a_failing_side(repo: Path, run):
    support.write(repo / "specs" / "a.yaml", support.spec_text(extra="title: renamed\n"
                                                               "legend: {format: .3f}\n"))
    commit(repo, "retitle")
    support.write(repo / "specs" / "b.yaml", "data: {path: ../data/cells.csv}\ncolour: x\n")
    commit(repo, "break b")
    code, out, _ = run("diff", "HEAD~2", "HEAD~1")
    assert "changed   specs/a.yaml" in out and "title 'Figure a' -> 'renamed'" in out
    assert "specs/b.yaml" not in out
    code, out, _ = run("diff", "HEAD~1", "HEAD", "--format", "markdown")
    assert "### failed: `specs/b.yaml`" in out and "unknown key `colour`" in out
    assert "/tmp" not in out  # the revision's temporary folder is never shown


def test_figspec_yaml_changes_every_figure(repo: Path, run):
    support.write(repo / "figspec.yaml", "defaults: {font: {family: serif}}\n")
    code, out, _ = run("diff")
    assert out.count("changed   specs/") == 3
    assert "also changed: font sans-serif -> serif" in out


@pytest.mark.parametrize("args,message", [(["nope-rev"], "unknown revision 'nope-rev'")])
def test_bad_revisions_and_no_repository(repo: Path, run, args: list[str], message: str,
                                         tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    support.write(repo / "specs" / "a.yaml", support.spec_text())
    code, _, err = run("diff", "HEAD", "nope-rev")
    assert code == 2 and message in err
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    monkeypatch.chdir(outside)
    code, _, err = run("diff")
    assert code == 2 and "not in a git repository" in err


def test_nothing_of_the_working_tree_is_touched(repo: Path, run):
    support.write(repo / "specs" / "a.yaml", support.spec_text(extra="title: edited\n"))
    (repo / "out").mkdir()
    (repo / "out" / ".figspec-manifest.json").write_text("{}")
    before = {p: p.read_bytes() for p in repo.rglob("*") if p.is_file() and ".git" not in p.parts}
    run("diff")
    after = {p: p.read_bytes() for p in repo.rglob("*") if p.is_file() and ".git" not in p.parts
             and "diff" not in p.parts}
    assert after == before
    assert git(repo, "stash", "list") == ""


def test_data_the_revision_does_not_hold_is_named_and_its_image_shown(repo: Path, run):
    """A data file ignored at the revision, tracked since: the old side is the
    image committed at the revision."""
    (repo / ".gitignore").write_text("data/big.csv\n")
    support.write_csv(repo / "data" / "big.csv", support.long_rows())
    support.write(repo / "specs" / "big.yaml", support.spec_text("path: ../data/big.csv"))
    assert run("build", "specs/big.yaml")[0] == 0
    git(repo, "add", "-f", "out/big.png")
    commit(repo, "a figure from an untracked file, its image committed")
    rows = support.long_rows()
    rows[0]["value"] = 0.3
    support.write_csv(repo / "data" / "big.csv", rows)
    git(repo, "add", "-f", "data/big.csv")  # tracked now: not the same file on both sides
    code, out, _ = run("diff", "--format", "json")
    (big,) = [f for f in json.loads(out)["figures"] if f["spec"] == "specs/big.yaml"]
    assert big["kind"] == "changed"
    assert big["notes"] == ["data/big.csv is not tracked at the old revision",
                            "the old side is the committed image, without cell changes"]
    images = repo / "out" / "diff"
    assert (images / big["images"]["before"]).read_bytes() == \
        git_show(repo, "HEAD:out/big.png")
    assert "after" in big["images"] and "difference" not in big["images"]


def git_show(repo: Path, what: str) -> bytes:
    return subprocess.run(["git", "show", what], cwd=repo, check=True,
                          capture_output=True).stdout


def test_figures_whose_inputs_are_unchanged_are_not_even_checked(repo: Path, run,
                                                                 monkeypatch: pytest.MonkeyPatch):
    from figspec import diff

    assert run("build")[0] == 0  # the manifest knows each figure's inputs
    support.write(repo / "specs" / "a.yaml", support.spec_text(extra="title: edited\n"))
    checked: list[str] = []
    real = diff.prepare_side
    monkeypatch.setattr(diff, "prepare_side",
                        lambda path, *a: (checked.append(path.name), real(path, *a))[1])
    code, out, _ = run("diff")
    assert "changed   specs/a.yaml" in out and out.splitlines()[-1].startswith("1 of 3")
    assert sorted(checked) == ["a.yaml", "a.yaml"]  # once at each side; b and c not at all


def test_a_relabelled_module(repo: Path, run):
    text = (repo / "specs" / "a.yaml").read_text().replace("  - q_proj", '  - {name: q_proj, '
                                                           'label: "attn. q"}')
    (repo / "specs" / "a.yaml").write_text(text)
    code, out, _ = run("diff", "--exit-code")
    assert code == 1
    assert out.splitlines()[1:4] == ["changed   specs/a.yaml", "  0 of 42 cells changed",
                                     "  also changed: module labels"]


def test_the_revision_is_read_as_committed_not_as_git_archive_exports_it(repo: Path, run):
    """export-ignore and export-subst change what `git archive` gives, not
    what the revision holds: nothing changed, so no figure differs."""
    (repo / ".gitattributes").write_text("data/** export-ignore\nspecs/a.yaml export-subst\n")
    support.write(repo / "specs" / "a.yaml", support.spec_text(
        extra="title: Figure $Format:%h$\nlegend: {format: .3f}\n"))
    commit(repo, "attributes")
    code, out, err = run("diff", "--exit-code")
    assert (code, err) == (0, "")
    assert out.splitlines()[-1] == "0 of 3 figures differ"


def test_only_the_files_the_figures_need_are_read(repo: Path, run):
    """A large tracked file no figure reads is never fetched: its smudge
    filter, which would leave a mark, is never run."""
    mark = repo.parent / "read"
    git(repo, "config", "filter.mark.smudge", f"touch {mark}; cat")
    git(repo, "config", "filter.mark.clean", "cat")
    (repo / ".gitattributes").write_text("*.bin filter=mark\n")
    (repo / "weights.bin").write_bytes(b"\0" * (1 << 20))
    commit(repo, "an unrelated file")
    assert not mark.exists()
    rows = support.long_rows()
    rows[0]["value"] = 0.3
    support.write_csv(repo / "data" / "cells.csv", rows)
    code, out, _ = run("diff")
    assert "changed   specs/a.yaml" in out and "layer 0, q_proj: 0.1 -> 0.3 (+0.2)" in out
    assert not mark.exists()


def test_links_inside_the_repository_are_followed_and_links_out_are_not_tracked(
        repo: Path, run, tmp_path: Path):
    """`data/latest -> run1` is read as git stores it; `data/shared -> /abs/path`
    and `data/up -> ../../x` leave the repository: named as not tracked."""
    import os

    support.write_csv(repo / "data" / "run1" / "cells.csv", support.long_rows())
    os.symlink("run1", repo / "data" / "latest")
    shared = tmp_path / "shared"
    support.write_csv(shared / "cells.csv", support.long_rows())
    os.symlink(shared, repo / "data" / "shared")
    os.symlink("../../shared", repo / "data" / "up")
    for name, folder in (("latest", "latest"), ("abs", "shared"), ("up", "up")):
        support.write(repo / "specs" / f"{name}.yaml",
                      support.spec_text(f"path: ../data/{folder}/cells.csv"))
    commit(repo, "links")
    code, out, err = run("diff", "--format", "json", "--allow-outside")
    assert (code, err) == (0, "")
    figures = {f["spec"]: f for f in json.loads(out)["figures"]}
    assert {s: f["kind"] for s, f in figures.items()} == {
        "specs/a.yaml": "unchanged", "specs/b.yaml": "unchanged", "specs/c.yaml": "unchanged",
        "specs/latest.yaml": "unchanged", "specs/abs.yaml": "changed", "specs/up.yaml": "changed"}
    assert figures["specs/abs.yaml"]["notes"][0] == (
        f"data/shared/cells.csv (a link to {shared}, outside the repository) is not tracked "
        "at the old revision")
    assert figures["specs/up.yaml"]["notes"][0] == (
        "data/up/cells.csv (a link to ../../shared, outside the repository) is not tracked "
        "at the old revision")
    rows = support.long_rows()
    rows[3]["value"] = 0.3
    support.write_csv(repo / "data" / "run1" / "cells.csv", rows)
    code, out, err = run("diff", "--format", "json", "--allow-outside", "specs/latest.yaml")
    (latest,) = json.loads(out)["figures"]
    assert [(c["layer"], c["module"], c["after"]) for c in latest["cells"]] == [
        (0, "o_proj", 0.3)]


def test_out_naming_a_file_and_a_path_outside_the_repository_are_usage_errors(
        repo: Path, run, tmp_path: Path):
    support.write(repo / "specs" / "a.yaml", support.spec_text(extra="title: edited\n"))
    (repo / "notes.txt").write_text("mine\n")
    code, out, err = run("diff", "--out", "notes.txt")
    assert (code, out) == (2, "")
    assert err == "figspec: error: --out notes.txt: not a folder (it is a file)\n"
    assert (repo / "notes.txt").read_text() == "mine\n"
    elsewhere = support.write(tmp_path / "elsewhere" / "x.yaml", support.spec_text())
    code, out, err = run("diff", str(elsewhere))
    assert (code, out) == (2, "")
    assert err.startswith(f"figspec: error: {elsewhere}: outside the repository")


def test_two_specs_never_share_an_image(repo: Path, run):
    """specs/x__y.yaml and specs/x/y.yaml, specs/z.yaml and specs/z.yml."""
    for name, title in (("x__y.yaml", "flat"), ("x/y.yaml", "nested"), ("z.yaml", "yaml"),
                        ("z.yml", "yml")):
        data = "path: ../../data/cells.csv" if "/" in name else "path: ../data/cells.csv"
        support.write(repo / "specs" / name, support.spec_text(data, extra=f"title: {title}\n"))
    commit(repo, "four specs")
    rows = support.long_rows()
    rows[0]["value"] = 0.3
    support.write_csv(repo / "data" / "cells.csv", rows)
    code, out, _ = run("diff", "--format", "json")
    assert {f["spec"] for f in json.loads(out)["figures"]} >= {
        "specs/x__y.yaml", "specs/x/y.yaml", "specs/z.yaml", "specs/z.yml"}, out
    images = [i for f in json.loads(out)["figures"] for i in f["images"].values()]
    assert len(images) == 7 * 3 and len(set(images)) == len(images), out
    drawn = {i: (repo / "out" / "diff" / i).read_bytes() for i in images}
    assert len(set(drawn.values())) == len(images)  # each its own figure: no overwrite


def test_the_images_path_opens_from_a_subfolder_of_a_monorepo(tmp_path: Path, run,
                                                              monkeypatch: pytest.MonkeyPatch):
    root = tmp_path / "mono"
    paper = root / "paper"
    support.write_csv(paper / "data" / "cells.csv", support.long_rows())
    support.write(paper / "specs" / "a.yaml", support.spec_text())
    (paper / "figspec.yaml").write_text("{}\n")
    git(tmp_path, "init", "-q", str(root))
    commit(root, "a paper in a monorepo")
    rows = support.long_rows()
    rows[0]["value"] = 0.3
    support.write_csv(paper / "data" / "cells.csv", rows)
    for cwd in (paper, paper / "specs", root):
        monkeypatch.chdir(cwd)
        code, out, _ = run("diff", str((paper / "specs").relative_to(cwd)))
        where = out.splitlines()[-1].split("; images in ", 1)[1]
        assert (cwd / where).is_file(), where


def _two_panels(repo: Path, labels: str = "panel_labels: (a)\n") -> None:
    rows = support.long_rows(run="a") + support.long_rows(run="b")
    support.write_csv(repo / "data" / "runs.csv", rows)
    support.write(repo / "specs" / "p.yaml", support.spec_text(
        "path: ../data/runs.csv", extra=labels + "panels:\n"
        "  - {title: GRPO, data: {where: {run: a}}}\n  - {data: {where: {run: b}}}\n"))


def test_a_changed_cell_of_a_panel_names_its_panel(repo: Path, run):
    """As drawn: its letter and title; else "panel N"."""
    _two_panels(repo)
    commit(repo)
    rows = support.long_rows(run="a") + support.long_rows(run="b")
    rows[6 * 7 + 7 + 1]["value"] = 0.5  # run b, layer 1, k_proj
    support.write_csv(repo / "data" / "runs.csv", rows)
    code, out, _ = run("diff", "specs/p.yaml")
    assert "    (b), layer 1, k_proj: 0.1011 -> 0.5 (+0.399)" in out, out
    code, out, _ = run("diff", "specs/p.yaml", "--format", "json")
    (cell,) = json.loads(out)["figures"][0]["cells"]
    assert (cell["panel"], cell["layer"], cell["module"]) == ("(b)", 1, "k_proj")
    code, out, _ = run("diff", "specs/p.yaml", "--format", "markdown")
    assert "| panel | layer | module | before | after | change |" in out
    assert "| (b) | 1 | k\\_proj | 0.1011 | 0.5 | +0.399 |" in out
    page = (repo / "out" / "diff" / "index.html").read_text()
    assert "<th>panel</th>" in page and "<td>(b)</td>" in page
    rows[3]["value"] = 0.9  # run a, layer 0, o_proj
    support.write_csv(repo / "data" / "runs.csv", rows)
    code, out, _ = run("diff", "specs/p.yaml")
    assert "    (a) GRPO, layer 0, o_proj: 0.1003 -> 0.9 (+0.8)" in out, out
    _two_panels(repo, labels="")
    commit(repo)
    support.write_csv(repo / "data" / "runs.csv", support.long_rows(run="a") + rows[42:])
    code, out, _ = run("diff", "specs/p.yaml")
    assert "    panel 2, layer 1, k_proj: 0.1011 -> 0.5 (+0.399)" in out, out


def test_markdown_links_images_a_pull_request_can_show(repo: Path, run):
    support.write(repo / "specs" / "a.yaml", support.spec_text(extra="title: new\n"))
    code, out, _ = run("diff", "specs/a.yaml", "--format", "markdown")
    assert "![before](out/diff/specs/a.yaml.before.png)" in out  # from the repository's root
    assert (repo / "out" / "diff" / "specs" / "a.yaml.before.png").is_file()
    code, out, _ = run("diff", "specs/a.yaml", "--format", "markdown", "--image-url",
                       "https://example.org/review/42/")
    assert "![after](https://example.org/review/42/specs/a.yaml.after.png)" in out


def test_the_review_page_shows_figures_at_their_printed_size(repo: Path, run):
    from figspec.commands.diff import css_width

    support.write(repo / "specs" / "a.yaml", support.spec_text(
        extra="size: {width: 3in}\noutput: {formats: [png], dpi: 300}\n"))
    commit(repo)
    support.write(repo / "specs" / "a.yaml", support.spec_text(
        extra="title: T\nsize: {width: 3in}\noutput: {formats: [png], dpi: 300}\n"))
    run("diff", "specs/a.yaml")
    png = (repo / "out" / "diff" / "specs" / "a.yaml.after.png").read_bytes()
    assert support.png_size(repo / "out" / "diff" / "specs" / "a.yaml.after.png")[0] == 900
    assert css_width(png) == 288  # 3 in at 96 px/in
    page = (repo / "out" / "diff" / "index.html").read_text()
    assert 'src="specs/a.yaml.after.png" style="width:288px"' in page


def test_a_difference_image_that_cannot_be_laid_out_is_a_note(repo: Path, run):
    """The difference image's title is longer ("...: after - before"): at a
    fixed width it may not fit where the figure's own title did. The before
    and after images are still drawn, and the diff does not fail."""
    support.write(repo / "specs" / "a.yaml", support.spec_text(
        extra="title: Update ratio by layer\nsize: {width: 3in}\n"))
    commit(repo, "a figure of a fixed width")
    rows = support.long_rows()
    rows[0]["value"] = 0.3
    support.write_csv(repo / "data" / "cells.csv", rows)
    code, out, err = run("diff", "--format", "json", "specs/a.yaml")
    assert (code, err) == (0, "")
    (a,) = json.loads(out)["figures"]
    assert a["kind"] == "changed" and len(a["cells"]) == 1
    assert a["notes"] == [("the difference image could not be drawn: 3in leaves no room for "
                           "the cells: the title \"Update ratio by layer: after - before\" "
                           "needs 3.67in")]
    assert list(a["images"]) == ["before", "after"]
    assert all((repo / "out" / "diff" / name).is_file() for name in a["images"].values())


def test_the_committed_image_of_a_spec_is_found_by_the_name_it_inherits(repo: Path, run):
    """`output.name` written in the file it extends names the committed image."""
    (repo / ".gitignore").write_text("data/big.csv\n")
    support.write_csv(repo / "data" / "big.csv", support.long_rows())
    support.write(repo / "specs" / "_big.yaml", "output: {name: shared}\n")
    support.write(repo / "specs" / "big.yaml", support.spec_text(
        "path: ../data/big.csv", extra="extends: _big.yaml\n"))
    assert run("build", "specs/big.yaml")[0] == 0
    git(repo, "add", "-f", "out/shared.png")
    commit(repo, "a figure from an untracked file, its image committed")
    rows = support.long_rows()
    rows[0]["value"] = 0.3
    support.write_csv(repo / "data" / "big.csv", rows)
    git(repo, "add", "-f", "data/big.csv")  # tracked now: the revision lacks it
    out = run("diff", "--format", "json", "specs/big.yaml")[1]
    (big,) = json.loads(out)["figures"]
    assert big["notes"][-1] == "the old side is the committed image, without cell changes"
    assert (repo / "out" / "diff" / big["images"]["before"]).read_bytes() == \
        git_show(repo, "HEAD:out/shared.png")


def test_ignored_checkpoints_are_the_same_on_both_sides_read_from_the_working_tree(
        repo: Path, run):
    """Checkpoints inside the repository, git-ignored (as a paper keeps them):
    tracked at neither revision, they are the same files on both sides, read
    from the working tree, and every output says so."""
    import checkpoints as ck

    ck.make_run(repo / "ckpt", [100, 200], shards=2)
    (repo / ".gitignore").write_text("ckpt/\nout/\n")
    support.write(repo / "specs" / "run.yaml", (
        "data: {checkpoints: ../ckpt/run/checkpoint-*, base: ../ckpt/base, metric: update_norm}\n"
        "modules: [q_proj, up_proj]\noutput: {formats: [svg, html]}\n"))
    support.write(repo / "specs" / "pair.yaml", (
        "data: {checkpoint: ../ckpt/run/checkpoint-200, base: ../ckpt/base, "
        "metric: changed_fraction}\nmodules: [q_proj, up_proj]\n"))
    support.write_csv(repo / "data" / "local.csv", support.long_rows())  # not added: untracked
    support.write(repo / "specs" / "local.yaml", support.spec_text("path: ../data/local.csv"))
    git(repo, "add", ".gitignore", "specs")  # not `commit`: it adds data/local.csv
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "ignored data")
    assert "?? data/local.csv" in tree_state(repo)
    code, out, err = run("diff", "--exit-code")
    assert (code, err) == (0, ""), out + err
    lines = out.splitlines()
    assert lines[-1] == "0 of 6 figures differ", out
    note = ("note: tracked at neither revision, so read from the working tree on both sides: "
            "ckpt (specs/pair.yaml, specs/run.yaml); data/local.csv (specs/local.yaml)")
    assert note in lines, out
    assert not (repo / "out" / "diff").exists()
    code, out, _ = run("diff", "--format", "json")
    figures = {f["spec"]: f for f in json.loads(out)["figures"]}
    assert {s: f["kind"] for s, f in figures.items()} == dict.fromkeys(figures, "unchanged")
    assert figures["specs/run.yaml"]["from_working_tree"] == ["ckpt"]
    assert figures["specs/local.yaml"]["from_working_tree"] == ["data/local.csv"]
    assert figures["specs/a.yaml"]["from_working_tree"] == []
    code, out, _ = run("diff", "--format", "markdown")
    assert "Note: tracked at neither revision, so read from the working tree on both sides: " \
        "ckpt (specs/pair.yaml, specs/run.yaml); data/local.csv (specs/local.yaml)" in out, out
    code, out, _ = run("diff", "--exit-code", "HEAD", "HEAD")  # two revisions: the same
    assert code == 0 and note in out.splitlines(), out
    # A figure that changes: the review page says it too.
    support.write(repo / "specs" / "run.yaml", (
        "data: {checkpoints: ../ckpt/run/checkpoint-*, base: ../ckpt/base, metric: update_norm}\n"
        "modules: [q_proj, up_proj]\ntitle: edited\n"))
    code, out, _ = run("diff", "--exit-code", "specs/run.yaml")
    assert code == 1 and "changed   specs/run.yaml" in out, out
    page = (repo / "out" / "diff" / "index.html").read_text()
    assert "read from the working tree on both sides: ckpt (specs/run.yaml)" in page
