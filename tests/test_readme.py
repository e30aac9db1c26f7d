"""The README and the pages in docs/ stay true: CI runs the README's test
command, the README's example spec is the one in specs/, its commands and
exit statuses are the command line's, its gallery is what `figspec build`
writes; docs/reference.md lists every field of the spec language and
docs/checkpoints.md every metric; every link resolves."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from figspec.models import Spec
from figspec.spec import unwrap_annotation

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text()
#: Every page a user or a contributor reads.
PAGES = [REPO / "README.md", REPO / "CONTRIBUTING.md", *sorted((REPO / "docs").glob("*.md"))]


def _fences(lang: str, text: str = README) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, re.S)


def _section(page: str, heading: str) -> str:
    """The text under ``heading`` (a Markdown heading line), up to the next
    heading of the same or a higher level."""
    text = (REPO / page).read_text()
    level = len(heading) - len(heading.lstrip("#"))
    start = text.index(heading + "\n") + len(heading) + 1
    following = re.search(rf"^#{{1,{level}}} ", text[start:], re.M)
    return text[start:start + following.start()] if following else text[start:]


def test_ci_runs_the_readme_test_command():
    build_cmd, test_cmd = [b.strip() for b in _fences("sh")[:2]]
    assert build_cmd == ("python3 -m venv .venv && .venv/bin/pip install -e . "
                         "-c constraints.txt && .venv/bin/figspec build")
    assert test_cmd.endswith("pytest")
    assert test_cmd in (REPO / ".ci" / "run").read_text()


def test_the_readme_is_a_short_guide_that_installs_from_what_the_repository_holds():
    """At most 350 lines; no page installs from a tag (the repository holds
    none): pip from a branch or a commit, pre-commit from a commit."""
    assert len(README.splitlines()) <= 350
    for page in PAGES:
        text = page.read_text()
        assert not re.search(r"@v\d", text), f"{page.name} installs from a tag"
        assert not re.search(r"rev:\s*v\d", text), f"{page.name} pins a tag for pre-commit"


def _field_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    out = []
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        annotation = unwrap_annotation(info.annotation)
        is_list = typing.get_origin(annotation) is list
        candidates = typing.get_args(annotation) if is_list else (annotation,)
        nested = [c for c in map(unwrap_annotation, candidates)
                  if isinstance(c, type) and issubclass(c, BaseModel)]
        if nested:
            out += _field_paths(nested[0], path + ("[]." if is_list else "."))
        else:
            out.append(path)
    return out


def test_reference_lists_every_field():
    table = _section("docs/reference.md", "## Spec reference")
    documented = set(re.findall(r"^\| `([^`]+)` \|", table, re.M))
    fields = set(_field_paths(Spec))
    # A panel's data, modules and layers are the top-level ones: documented once.
    fields = {f for f in fields if not re.match(r"panels\[\]\.(data|modules|layers)[.\[]", f)}
    fields |= {"panels[].data", "panels[].modules", "panels[].layers"}
    assert fields - documented == set(), "fields missing from docs/reference.md"
    # `modules` and `panels[].x` are documented as a whole as well as field by field.
    extra = {"modules", "panels"}
    assert documented - fields - extra == set(), "docs/reference.md documents fields that " \
        "do not exist"


def test_readme_example_is_the_shipped_spec():
    example = _fences("yaml")[0]
    shipped = (REPO / "specs" / "update_ratio_1p5b.yaml").read_text()
    body = [line for line in example.splitlines() if not line.startswith("#")]
    assert "\n".join(body) in shipped


def test_the_readme_lists_every_command(run):
    """The README's command table names each command `figspec --help` lists,
    and says which take --allow-outside: those whose --help shows it."""
    code, out, _ = run("--help")
    assert code == 0
    commands = re.findall(r"^    (\w+)\s", out.split("COMMAND", 2)[2], re.M)
    assert len(commands) >= 9
    table = _section("README.md", "## Commands")
    listed = set(re.findall(r"^\| `figspec (\w+)", table, re.M))
    assert listed == set(commands)
    outside = set()
    for command in commands:
        assert run(command, "--help")[0] == 0
        if "--allow-outside" in run(command, "--help")[1]:
            outside.add(command)
    said = re.search(r"`--allow-outside` \(on ([^)]*)\)", table)
    assert said, "the README says which commands take --allow-outside"
    assert set(re.findall(r"`(\w+)`", said.group(1))) == outside


def test_the_readme_gives_every_exit_status():
    """Each status figspec.errors maps to, and nothing else."""
    from figspec import errors

    statuses = {errors.OK, errors.INVALID, errors.USAGE, errors.INTERNAL,
                errors.INTERRUPTED, errors.BROKEN_PIPE}
    table = _section("README.md", "### Exit status")
    assert set(map(int, re.findall(r"^\| \*\*(\d+)\*\* \|", table, re.M))) == statuses


def pinned() -> dict[str, str]:
    """constraints.txt: the releases that drew the committed figures."""
    lines = (REPO / "constraints.txt").read_text().splitlines()
    return dict(line.split("#")[0].strip().split("==") for line in lines
                if line.split("#")[0].strip())


def test_the_build_command_pins_every_renderer():
    """Every distribution that shapes a figure's bytes is pinned for the README's
    build command (figspec is this checkout)."""
    from figspec.versions import RENDERERS

    build_cmd = _fences("sh")[0]
    assert "-c constraints.txt" in build_cmd
    assert set(pinned()) == set(RENDERERS) - {"figspec"}


def test_every_figure_the_readme_shows_is_built_from_the_specs(tmp_path: Path):
    """The gallery's images are what `figspec build` writes from specs/, byte for
    byte, with the pinned renderers (the README's build command installs them)."""
    from importlib import metadata

    from figspec.builder import Options, build

    drift = {d: (v, metadata.version(d)) for d, v in pinned().items()
             if metadata.version(d) != v}
    if drift:
        pytest.skip("committed figures were drawn with the releases in constraints.txt; "
                    "installed: " + ", ".join(f"{d} {now} (pinned {v})"
                                              for d, (v, now) in drift.items()))

    shown = set(re.findall(r"\]\((out/[^)]+\.png)\)", README))
    assert len(shown) >= 6  # the five seed figures and the multi-panel one
    results = build([REPO / "specs"], Options(out_dir=tmp_path, jobs=1))
    assert all(r.ok for r in results)
    for image in sorted(shown):
        fresh = tmp_path / Path(image).name
        assert fresh.is_file(), f"{image}: no spec writes it"
        assert (REPO / image).read_bytes() == fresh.read_bytes(), f"{image} is stale"


def test_the_metric_table_is_the_one_figspec_computes_from():
    """docs/checkpoints.md's metric table is made from figspec.sources.metrics:
    a new metric is one row there, and the page must show it."""
    from figspec.sources import metrics

    assert metrics.markdown_table() in (REPO / "docs" / "checkpoints.md").read_text()
    assert set(metrics.NAMES) == {m.name for m in metrics.METRICS}


def test_the_design_notes_give_the_layers_the_architecture_test_holds():
    from test_architecture import LAYERS

    table = _section("docs/design.md", "## Layers")
    rows = {m.group(1): set(re.findall(r"`([\w.]+)`", m.group(2)))
            for m in re.finditer(r"^\| `(\w+)` \| (.*?) \|", table, re.M)}
    assert list(rows) == [name for name, _ in LAYERS]
    for name, modules in LAYERS:
        assert rows[name] == {m if m == "figspec" else m.removeprefix("figspec.")
                              for m in modules}, name


def anchors(text: str) -> set[str]:
    """The #anchors of a page's headings, as GitHub makes them: lower case,
    punctuation dropped, spaces to hyphens, a repeated one numbered."""
    out: set[str] = set()
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    for heading in re.findall(r"^#{1,6} (.+?)\s*$", text, re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        n, candidate = 0, slug
        while candidate in out:
            n += 1
            candidate = f"{slug}-{n}"
        out.add(candidate)
    return out


def test_anchors_are_made_as_github_makes_them():
    assert anchors("# A spec\n## Reviewing a change: `figspec diff`\n## A spec\n") == \
        {"a-spec", "reviewing-a-change-figspec-diff", "a-spec-1"}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_link_resolves(page: Path):
    """Each relative link and image of the page names a file of the
    repository, and each #anchor a heading of the page it points into."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    targets = re.findall(r"\]\(([^)\s]+)\)", text)
    broken = []
    for target in targets:
        if re.match(r"[a-z]+:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        missing = not linked.exists() or bool(anchor) and (
            linked.suffix != ".md" or anchor not in anchors(linked.read_text()))
        if missing:
            broken.append(target)
    assert broken == []
