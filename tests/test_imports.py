"""The package's import graph: no cycles, no private names imported across modules, layers kept.

`lint-imports` (import-linter, a test dependency) checks the layers contract in pyproject.toml;
the other tests build the graph from the source with `ast` (every import, at module level or
inside a function; imports under `if TYPE_CHECKING:` are for annotations only and do not count)
and check what the contract does not: no cycles within a layer, no private names imported.
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "landscape"

# Lower layers never import higher ones (a module may import its own layer and those below).
# The data path reads top to bottom: entry points -> jobs -> evaluation/storage -> values.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("cli", "__main__"),
    ("demo",),
    ("batch_study",),
    ("api", "compute"),
    ("runner", "distributed"),
    ("resolve", "curvature", "train", "trial", "watch", "frames"),
    ("job", "export", "report", "info", "comparison"),
    ("evaluate", "hessian", "hessian_directions", "plotting", "topology_plot", "density_plot", "frames_plot",
     "paths_plot"),
    ("batchnorm", "storage", "checkpoint", "metrics", "executor", "views"),
    ("planning", "losses", "inputs", "lanczos", "topology", "spectral_density", "loss_surface", "userdata", "directions", "data",
     "schema", "probe", "lock", "preview"),
    ("dataset", "models", "hooks", "grid", "device", "progress", "mpi_env", "cpu", "outputs", "figure_style"),
    ("errors", "_version", "__init__", "text", "threads"),
)

# The only imports against the layers: `Surface.plot` / `Surface.to_html` import the figure
# modules when called (they import `loss_surface` for annotations only: no cycle).
SHORTCUTS = {("loss_surface", "plotting"), ("loss_surface", "report")}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"] or ["__init__"]
    return ".".join(parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(imported module within the package, imported names) for every runtime import."""
    module = _module_name(path)
    package = module.split(".")[:-1] if path.name != "__init__.py" else module.split(".")
    if module == "__init__":
        package = []
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and _is_type_checking(node):
            skip.update(id(n) for n in ast.walk(node))
    out = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
            target = ".".join([*base, *(node.module.split(".") if node.module else [])])
            names = [a.name for a in node.names]
            if not node.module:  # `from . import storage`: each name is a module
                out.extend((".".join([*base, n]), []) for n in names)
            else:
                out.append((target or "__init__", names))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("landscape"):
            out.append((node.module.removeprefix("landscape").lstrip(".") or "__init__", [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out.extend((a.name.removeprefix("landscape").lstrip("."), []) for a in node.names
                       if a.name.startswith("landscape."))
    return out


def _graph() -> dict[str, dict[str, list[str]]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, dict[str, list[str]]] = {m: {} for m in modules}
    for name, path in modules.items():
        for target, names in _imports(path):
            while target not in modules and "." in target:  # `from .models.resnet import X`
                target = target.rsplit(".", 1)[0]
            if target in modules and target != name:
                graph[name].setdefault(target, []).extend(names)
    return graph


def _top(module: str) -> str:
    return module.split(".")[0]


def _cycles(graph: dict[str, dict[str, list[str]]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def _package_level_graph() -> dict[str, dict[str, list[str]]]:
    """Modules of subpackages (`cli.*`, `models.*`) folded into their package."""
    folded: dict[str, dict[str, list[str]]] = {}
    for name, targets in _graph().items():
        for target, names in targets.items():
            a, b = _top(name), _top(target)
            folded.setdefault(a, {})
            if a != b:
                folded[a].setdefault(b, []).extend(names)
            folded.setdefault(b, {})
    return folded


def test_no_import_cycles() -> None:
    assert _cycles(_graph()) == []
    assert _cycles(_package_level_graph()) == []


def test_no_private_names_imported_from_other_modules() -> None:
    bad = [
        f"{name} imports {n} from {target}"
        for name, targets in _graph().items()
        for target, names in targets.items()
        for n in names
        if n.startswith("_") and not n.startswith("__")
    ]
    assert bad == []


def test_layers() -> None:
    rank = {m: i for i, layer in enumerate(LAYERS) for m in layer}
    graph = _package_level_graph()
    assert sorted(set(graph) - set(rank)) == [], "every module belongs to a layer (add new ones to LAYERS)"
    upward = [
        f"{a} (layer {rank[a]}) imports {b} (layer {rank[b]})"
        for a, targets in graph.items()
        for b in targets
        if rank[b] < rank[a] and (a, b) not in SHORTCUTS
    ]
    assert upward == []


def test_import_linter_contract() -> None:
    repo = PACKAGE.parent
    beside = Path(sys.executable).with_name("lint-imports")
    exe = str(beside) if beside.exists() else shutil.which("lint-imports")
    assert exe is not None, "lint-imports is missing: pip install -e '.[test]' (import-linter)"
    proc = subprocess.run([exe], cwd=repo, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-1000:]
