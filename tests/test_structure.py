"""The package's shape: no import cycles between featvis modules (counting imports inside
functions too), and one home for each shared helper."""
import ast
from pathlib import Path

import featvis

ROOT = Path(featvis.__file__).parent


def _modules():
    mods = {}
    for p in ROOT.rglob("*.py"):
        parts = ("featvis",) + p.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = p
    return mods


def import_graph():
    """``{module: {featvis modules it imports anywhere in its source}}``."""
    mods = _modules()
    graph = {}
    for name, path in mods.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package[:len(package) - node.level + 1] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    deps.add(sub if sub in mods else target)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
        graph[name] = {d for d in deps if d in mods and d != name}
    return graph


def _reachable(graph, start):
    seen, todo = set(), [start]
    while todo:
        for nxt in graph[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_no_import_cycles():
    """A module never imports (even lazily) one that imports it back; a package importing its
    own submodules (and a submodule importing ``featvis.__version__``) is no cycle."""
    graph = import_graph()
    cycles = [f"{m} -> {d}" for m in sorted(graph) for d in sorted(graph[m])
              if m in _reachable(graph, d) and not (m.startswith(d + ".") or d.startswith(m + "."))]
    assert not cycles, cycles


def test_the_checker_sees_a_cycle():
    graph = {"a": {"b"}, "b": {"a"}, "c": set()}
    assert "a" in _reachable(graph, "b") and "c" not in _reachable(graph, "a")
    assert "featvis.objectives.base" in import_graph()["featvis.objectives.channels"]


#: The package's rooms, lowest first: a module imports only from its own room and the rooms before it
#: (DESIGN.md draws them). A module belongs to the first room with a prefix of its name.
ROOMS = [
    ("core", ["featvis", "featvis.lazy", "featvis.errors", "featvis.io", "featvis.rng", "featvis._cache",
              "featvis.display", "featvis.progress"]),
    ("engine", ["featvis.hooks", "featvis.units", "featvis.accel", "featvis.threads", "featvis.step", "featvis.render", "featvis.presets",
                "featvis.recipes", "featvis.objectives", "featvis.param", "featvis.transforms", "featvis.models"]),
    ("figures", ["featvis.figures"]),
    ("jobs", ["featvis.jobs"]),
    ("analysis", ["featvis.analysis"]),
    ("site", ["featvis.site"]),
    ("cli", ["featvis.cli", "featvis.__main__"]),
]


def room(module: str) -> int:
    """The rank of ``module``'s room (0: core)."""
    best = None
    for rank, (_, prefixes) in enumerate(ROOMS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and (best is None or len(p) > len(best[1])):
                best = (rank, p)
    assert best is not None, f"{module} is in no room: add it to ROOMS (and to DESIGN.md)"
    return best[0]


def test_imports_flow_one_way():
    """No module imports (even lazily) one of a higher room: the engine knows nothing of jobs,
    figures nothing of analyses, nothing below the command line knows the command line."""
    graph = import_graph()
    upward = [f"{m} ({ROOMS[room(m)][0]}) -> {d} ({ROOMS[room(d)][0]})"
              for m in sorted(graph) for d in sorted(graph[m]) if room(d) > room(m)]
    assert not upward, upward


def test_every_module_has_a_room():
    for m in import_graph():
        room(m)
    assert room("featvis.render") < room("featvis.jobs.folder") < room("featvis.analysis.topk") < room("featvis.cli")
    assert room("featvis.models.open") == room("featvis.render") and room("featvis") == 0


def test_old_import_paths_still_work():
    """Modules that moved into rooms keep their old names (the same module object), and the
    drawing that lived in ``featvis.io`` is still there by its old name."""
    import importlib

    import featvis.analysis.metrics
    import featvis.io
    import featvis.metrics
    assert featvis.metrics is featvis.analysis.metrics
    from featvis.folder import RenderFolder
    from featvis.jobs.folder import RenderFolder as Home
    assert RenderFolder is Home
    assert importlib.import_module("featvis.circuit_figure").circuit_figure is \
        importlib.import_module("featvis.analysis.circuit_figure").circuit_figure
    from featvis.figures import grid
    assert featvis.io.figure is grid.figure and featvis.io.sheet is grid.sheet
    import pytest
    with pytest.raises(AttributeError):
        featvis.io.no_such_name  # noqa: B018


def test_one_layer_name_cleanup():
    """Deduplicating layer names and dropping the input pseudo-layer happens in hooks.model_layers only."""
    from featvis.hooks import INPUT, model_layers
    assert model_layers(["b", INPUT, "a", "b"]) == ["b", "a"]
    hits = [p.name for p in ROOT.rglob("*.py") if "dict.fromkeys(" in p.read_text() and "!= INPUT" in p.read_text()]
    assert hits == ["hooks.py"], hits


def test_design_md_names_every_module():
    """DESIGN.md's module map is kept current: every module of the package is named in it."""
    root = Path(__file__).resolve().parents[1]
    design = (root / "DESIGN.md").read_text()
    modules = [p.relative_to(root).as_posix() for p in sorted((root / "featvis").rglob("*.py"))
               if p.name != "__init__.py" or p.parent.name == "featvis"]
    missing = [m for m in modules if f"`{m}`" not in design]
    assert not missing, f"DESIGN.md does not name: {', '.join(missing)}"
