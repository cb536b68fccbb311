"""The package's import graph: no cycles, no private names imported across modules, layers kept.

`lint-imports` (import-linter, a test dependency) checks the contracts in pyproject.toml; the
other tests read the same contracts and build the graph from the source with `ast` (every import:
at module level, inside a function, under `if TYPE_CHECKING:`, and the root's importlib table),
and check what the contract does not: no cycles at all, no private names imported.
"""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

PACKAGE = Path(__file__).resolve().parents[1] / "landscape"
PYPROJECT = PACKAGE.parent / "pyproject.toml"


def _contracts() -> list[dict]:
    """The import-linter contracts, as pyproject.toml states them (this test copies none)."""
    return tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["tool"]["importlinter"]["contracts"]


def _layers() -> list[list[str]]:
    """The layers contract's layers, top first; each a list of sibling names."""
    (layers,) = [c for c in _contracts() if c["type"] == "layers"]
    return [[n.strip() for n in re.split(r"[|:]", layer)] for layer in layers["layers"]]


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"] or ["__init__"]
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    """(imported module within the package, imported names) for every import: at module level,
    inside a function, or under `if TYPE_CHECKING:` (an annotation is a dependency too)."""
    module = _module_name(path)
    package = module.split(".")[:-1] if path.name != "__init__.py" else module.split(".")
    if module == "__init__":
        package = []
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = []
    for node in ast.walk(tree):
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


def _lazy_exports() -> dict[str, str]:
    """The root's lazy public names (`landscape.surface`): name -> module, imported by importlib."""
    tree = ast.parse((PACKAGE / "__init__.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "_EXPORTS":
            return ast.literal_eval(node.value)
    raise AssertionError("landscape/__init__.py has no _EXPORTS table")


def _graph() -> dict[str, dict[str, list[str]]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, dict[str, list[str]]] = {m: {} for m in modules}
    for name, path in modules.items():
        for target, names in _imports(path):
            while target not in modules and "." in target:  # `from .models.resnet import X`
                target = target.rsplit(".", 1)[0]
            if target in modules and target != name:
                graph[name].setdefault(target, []).extend(names)
    for name, target in _lazy_exports().items():  # importlib.import_module in the root
        graph["__init__"].setdefault(target, []).append(name)
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


def test_no_importlib_for_own_modules() -> None:
    """An import the graph cannot see would hide a cycle: only the root's `_EXPORTS` table (read
    above) and the user-code loader (`system.hooks`, which imports the user's modules) use it."""
    allowed = {PACKAGE / "__init__.py", PACKAGE / "system" / "hooks.py"}
    users = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
             if p not in allowed and "import_module(" in p.read_text(encoding="utf-8")]
    assert users == []


def test_layers_as_the_contract_states_them() -> None:
    """The same rule as lint-imports, from the graph above (which also counts importlib and
    type-checking imports): a top-level part imports only parts of lower layers."""
    layers = _layers()
    rank = {m: i for i, layer in enumerate(layers) for m in layer}
    graph = _package_level_graph()
    assert sorted(set(graph) - set(rank) - {"__init__"}) == [], "every part belongs to a layer"
    upward = [
        f"{a} (layer {rank[a]}) imports {b} (layer {rank[b]})"
        for a, targets in graph.items() if a != "__init__"
        for b in targets
        if b != "__init__" and rank[b] <= rank[a] and a != b
    ]
    assert upward == []


def test_contract_has_meaning() -> None:
    """The contract is not one layer of everything: the parts the issue names are separate."""
    layers = _layers()
    flat = [m for layer in layers for m in layer]
    for part in ("cli", "studies", "jobs", "engine", "io", "render", "data", "models", "core", "system"):
        assert part in flat, part
    rank = {m: i for i, layer in enumerate(layers) for m in layer}
    assert rank["engine"] == rank["render"] and rank["jobs"] < rank["engine"] < rank["io"]
    (indep,) = [c for c in _contracts() if c["type"] == "independence"]
    assert set(indep["modules"]) == {"landscape.engine", "landscape.io"}


def test_import_linter_contract() -> None:
    repo = PACKAGE.parent
    beside = Path(sys.executable).with_name("lint-imports")
    exe = str(beside) if beside.exists() else shutil.which("lint-imports")
    assert exe is not None, "lint-imports is missing: pip install -e '.[test]' (import-linter)"
    proc = subprocess.run([exe], cwd=repo, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-1000:]
