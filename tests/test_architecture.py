"""The package's shape: its modules stand in layers that follow the data
flow, and a module imports only its own layer or those below (imports inside
functions and for type checking count: an upward import there is one in the
design); no module imports another that imports it back, at any depth."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "compiler"

#: The layers, lowest first: YAML with positions -> spec models -> sources ->
#: cells -> layout -> render -> files, the pipeline naming the phases, then
#: what runs it (builds, serve, the API) and the command line. A name stands
#: for the module and every module below it (``figspec.layout`` is the
#: package and its modules). Every module of the package is in exactly one.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    # plain helpers and vocabularies every phase may use; nothing heavy
    ("base", ("figspec.caches", "figspec.diagnostics", "figspec.units", "figspec.files",
              "figspec.cache", "figspec.session", "figspec.versions", "figspec.fonts",
              "figspec.presets", "figspec.vega", "figspec.sources.registry",
              "figspec.sources.metrics", "figspec.sources.params")),
    ("load", ("figspec.yaml_reader", "figspec.finding")),
    ("spec", ("figspec.project", "figspec.models", "figspec.spec")),
    # the sources; a checkpoint read where it lives (the Hub, a store) named too
    ("sources", ("figspec.sources", "figspec.sources.heads", "figspec.sources.hub",
                 "figspec.sources.remote", "figspec.sources.inplace", "figspec.sources.peft")),
    ("cells", ("figspec.cells", "figspec.views", "figspec.values")),
    ("layout", ("figspec.layout",)),
    ("render", ("figspec.render", "figspec.html")),
    ("files", ("figspec.manifest", "figspec.workers", "figspec.engine")),
    ("pipeline", ("figspec.pipeline", "figspec.events")),
    ("runs", ("figspec.builder", "figspec.diff", "figspec.watch", "figspec.serve",
              "figspec.api", "figspec.errors")),
    ("commands", ("figspec.commands", "figspec.cli", "figspec.__main__", "figspec")),
]


def _modules() -> dict[str, Path]:
    out = {}
    for f in PACKAGE.rglob("*.py"):
        # The folder is compiler/; the package it installs as is figspec.
        name = ".".join(("figspec",) + f.relative_to(PACKAGE).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = f
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package.split(".")[:len(package.split(".")) - node.level + 1] \
                if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in modules else target)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m in modules and m != name}


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_circles():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert "figspec.pipeline" in graph and graph["figspec.builder"]  # the walk sees imports
    assert _circles(graph) == []


def layer_of(module: str) -> int:
    """The index of the layer naming ``module`` or its nearest package."""
    best = None
    for i, (_, names) in enumerate(LAYERS):
        for name in names:
            # "figspec" is the package's __init__ only
            below = name != "figspec" and module.startswith(name + ".")
            if (module == name or below) and \
                    (best is None or len(name) > len(best[1])):
                best = (i, name)
    assert best is not None, f"{module} is in no layer of tests/test_architecture.py"
    return best[0]


def upward(graph: dict[str, set[str]]) -> list[str]:
    """Every import of a higher layer, as ``a (layer) -> b (layer)``."""
    return sorted(f"{a} ({LAYERS[layer_of(a)][0]}) -> {b} ({LAYERS[layer_of(b)][0]})"
                  for a, targets in graph.items() for b in targets
                  if layer_of(b) > layer_of(a))


def test_phases_import_only_downward():
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert upward(graph) == []


def test_an_upward_import_is_found():
    assert upward({"figspec.models": {"figspec.render"}, "figspec.render": set()}) == \
        ["figspec.models (spec) -> figspec.render (render)"]


def test_a_circle_is_found():
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_package_folder_is_installed():
    """pyproject.toml names the packages a wheel holds: a folder of the
    package missing there imports in an editable install and is absent
    from an installed one."""
    import tomllib

    setup = tomllib.loads((PACKAGE.parent / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {".".join(("figspec",) + f.parent.relative_to(PACKAGE).parts)
               for f in PACKAGE.rglob("__init__.py")}
    assert setup["package-dir"] == {"figspec": "compiler"}
    assert set(setup["packages"]) == folders
