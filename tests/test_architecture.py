"""The package's shape: no import cycles, nothing imports the CLI, and no layer imports a higher one.

The import graph is built from the source with :mod:`ast` alone (nothing is imported), over every
module of ``dmic_core`` plus the app (``app.py``, ``pages/``). Nodes are modules (files); an edge
``a -> b`` is an import statement in ``a`` naming ``b`` or something inside ``b``.

How imports are counted:

* **module-level** imports (top of the file, also inside a module-level ``if``/``try``) and
  **function-level** imports (inside a ``def``, the lazy imports used to keep start-up cheap) are
  treated the same by every rule: a lazy import is still a dependency at run time, making it lazy
  only hides a cycle or an upward dependency from the import order. ``if TYPE_CHECKING:``
  imports count too (the design depends on the type). Failure messages say which kind each is.
* ``import dmic_core.a.b`` and ``from dmic_core.a import b`` (``b`` a module) are edges to
  ``dmic_core.a.b`` only, not to the packages above it that Python also initialises: otherwise
  every package whose ``__init__`` re-exports its submodules would be a cycle with them.
  ``from dmic_core.a import name`` (``name`` not a module) is an edge to ``dmic_core.a``.
* Relative imports are resolved; dynamic imports (``importlib.import_module``) and subprocesses
  (``python -m dmic_core.cli``) are not seen.

The layer table :data:`LAYERS` is the one place the layering is written down
(``docs/architecture.md`` draws it). A module may import its own layer and any lower one.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "dmic_core"

#: Layers, lowest first: ``(name, module prefixes)``. A module belongs to the layer of the longest
#: prefix that names it or a package above it (``dmic_core`` itself names only its ``__init__``);
#: every module must belong to one, so a new package has to be placed here.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("core", ("dmic_core", "dmic_core.errors", "dmic_core.volume", "dmic_core.jsonio", "dmic_core.defaults",
              "dmic_core.runtime")),
    ("data", ("dmic_core.io", "dmic_core.transforms", "dmic_core.datasets", "dmic_core.assets",
              "dmic_core.assets_check", "dmic_core.export")),
    ("codecs", ("dmic_core.codecs", "dmic_core.maps")),
    ("measure", ("dmic_core.metrics", "dmic_core.segmentation", "dmic_core.evaluation", "dmic_core.pipeline",
                 "dmic_core.render")),
    ("agents", ("dmic_core.agents",)),
    ("methods", ("dmic_core.methods",)),
    ("runs", ("dmic_core.runs",)),
    ("studies", ("dmic_core.sweep", "dmic_core.experiments", "dmic_core.finetune", "dmic_core.plotting",
                 "dmic_core.protocol")),
    ("orchestration", ("dmic_core.jobs", "dmic_core.batch")),
    ("front ends", ("dmic_core.cli", "dmic_core.app_actions")),
    ("app", ("app", "pages")),
]

#: The command-line package: only its own modules may import it.
CLI = "dmic_core.cli"


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    line: int
    kind: str  # "module", "function" or "type-checking"

    def __str__(self) -> str:
        return f"{self.source} -> {self.target} (line {self.line}, {self.kind}-level)"


def module_files() -> dict[str, Path]:
    """Dotted module name -> file, for the package and the app."""
    files = sorted((ROOT / PACKAGE).rglob("*.py")) + [ROOT / "app.py"] + sorted((ROOT / "pages").glob("*.py"))
    out = {}
    for path in files:
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.Module):
    """Every import statement with its kind, walking into functions, classes and blocks."""
    def walk(node: ast.AST, kind: str):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, kind
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
                yield from walk(child, "function")
            elif isinstance(child, ast.If) and _is_type_checking(child.test):
                yield from walk(child, "type-checking" if kind == "module" else kind)
            else:
                yield from walk(child, kind)

    yield from walk(tree, "module")


def import_graph() -> tuple[dict[str, Path], list[Edge]]:
    """All modules and all import edges between them (see the module docstring for the rules)."""
    modules = module_files()
    trees = {name: ast.parse(path.read_text(), str(path)) for name, path in modules.items()}
    bound = {name: _bound_names(tree) for name, tree in trees.items() if modules[name].name == "__init__.py"}
    edges: list[Edge] = []
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node, kind in _imports(trees[name]):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [_from_target(base, a.name, modules, bound) for a in node.names]
            for target in targets:
                if target is None:
                    continue
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if target and target != name:
                    edges.append(Edge(name, target, node.lineno, kind))
    return modules, sorted(set(edges), key=lambda e: (e.source, e.line, e.target))


def _from_target(base: str, name: str, modules: dict[str, Path], bound: dict[str, set[str]]) -> str | None:
    """What ``from base import name`` depends on: the submodule ``base.name`` when there is one,
    else ``base`` itself; ``None`` for a compiled extension (a name that ``base`` does not bind
    and that has no Python source: outside the graph, like a third-party module)."""
    if f"{base}.{name}" in modules:
        return f"{base}.{name}"
    if base in bound and name != "*" and name not in bound[base]:
        return None
    return base


def _bound_names(tree: ast.Module) -> set[str]:
    """Names a module binds at its top level (also inside module-level ``if``/``try`` blocks)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
    return names


def layer_of(module: str) -> int | None:
    best, best_len = None, -1
    for index, (_name, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            covers = module == prefix or (prefix != PACKAGE and module.startswith(prefix + "."))
            if covers and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    return best


def find_cycles(nodes, edges: list[Edge]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    succ: dict[str, set[str]] = {n: set() for n in nodes}
    for e in edges:
        succ[e.source].add(e.target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(succ[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(succ):
        if v not in index:
            visit(v)
    return found


@pytest.fixture(scope="module")
def graph() -> tuple[dict[str, Path], list[Edge]]:
    return import_graph()


def test_the_graph_sees_imports_of_both_kinds(graph) -> None:
    """Guard the parser itself: a known module-level and a known function-level edge are found."""
    _modules, edges = graph
    kinds = {(e.source, e.target): e.kind for e in edges}
    assert kinds.get(("dmic_core.pipeline", "dmic_core.codecs")) == "module"
    assert kinds.get(("dmic_core.cli", "dmic_core.errors")) in {"module", "function"}
    assert "function" in kinds.values()


def test_the_cycle_finder_finds_a_known_cycle() -> None:
    edges = [Edge("a", "b", 1, "module"), Edge("b", "c", 2, "function"), Edge("c", "a", 3, "module"),
             Edge("c", "d", 4, "module")]
    assert find_cycles(["a", "b", "c", "d"], edges) == [["a", "b", "c"]]


def test_every_module_has_a_layer_and_every_layer_entry_a_module(graph) -> None:
    modules, _edges = graph
    unplaced = [m for m in modules if layer_of(m) is None]
    assert not unplaced, f"add these modules to LAYERS: {unplaced}"
    stale = [p for _n, prefixes in LAYERS for p in prefixes if not any(layer_of(m) is not None and (
        m == p or m.startswith(p + ".")) for m in modules)]
    assert not stale, f"LAYERS names modules that no longer exist: {stale}"


def test_no_import_cycles(graph) -> None:
    modules, edges = graph
    cycles = find_cycles(modules, edges)
    detail = [[str(e) for e in edges if e.source in c and e.target in c] for c in cycles]
    assert not cycles, "import cycles:\n" + "\n\n".join("\n".join(d) for d in detail)


def test_nothing_outside_the_cli_imports_it(graph) -> None:
    _modules, edges = graph
    bad = [str(e) for e in edges if (e.target == CLI or e.target.startswith(CLI + "."))
           and not (e.source == CLI or e.source.startswith(CLI + "."))]
    assert not bad, "move what these need out of dmic_core.cli into the library:\n" + "\n".join(bad)


def test_no_import_points_to_a_higher_layer(graph) -> None:
    _modules, edges = graph
    placed = [e for e in edges if layer_of(e.source) is not None and layer_of(e.target) is not None]
    upward = [f"{e} [{LAYERS[layer_of(e.source)][0]} -> {LAYERS[layer_of(e.target)][0]}]" for e in placed
              if layer_of(e.target) > layer_of(e.source)]
    assert not upward, "imports from a lower layer into a higher one:\n" + "\n".join(upward)
