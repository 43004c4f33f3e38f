"""The layout rules of the tree: no import cycles, core imports no front end, one HDF5 module.

The graph is built from the source with ``ast`` (every ``import`` and ``from … import``,
including the lazy ones inside functions, except those under ``if TYPE_CHECKING:``), so a cycle
that only bites on some code path is still caught.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "salve_tui")
FRONT_END_MODULES = ("salve_tui", "textual", "textual_plotext", "textual_image", "argparse")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_block(node: ast.AST) -> bool:
    if not isinstance(node, ast.If):
        return False
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported_modules(path: Path, known: set[str]) -> set[str]:
    """Every project module ``path`` imports at run time (``from pkg import mod`` included)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip: set[int] = set()
    for node in ast.walk(tree):
        if _type_checking_block(node):
            skip.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    found: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name in known}


def project_graph() -> dict[str, set[str]]:
    files = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    known = {module_name(p) for p in files}
    return {module_name(p): imported_modules(p, known) - {module_name(p)} for p in files}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = finished
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_cycle_finder_finds_a_planted_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    cycle = find_cycle(graph)
    assert cycle is not None and cycle[0] == cycle[-1] and set(cycle) == {"a", "b", "c"}
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_no_import_cycles() -> None:
    graph = project_graph()
    assert len(graph) > 40, "the walk found too few modules: is ROOT right?"
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " → ".join(cycle or [])


def test_core_imports_no_front_end() -> None:
    offenders = []
    for path in (ROOT / "core").rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                if name.split(".")[0] in FRONT_END_MODULES:
                    offenders.append(f"{path.relative_to(ROOT)}: {name}")
    assert not offenders, offenders


def test_only_the_store_touches_hdf5() -> None:
    users = []
    for path in (ROOT / "core").rglob("*.py"):
        if "h5py" in imported_names(path):
            users.append(path.relative_to(ROOT).as_posix())
    assert users and all(u.startswith("core/store/") for u in users), users


def imported_names(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted({p.parent for p in (ROOT / "core").rglob("__init__.py")}))
def test_every_core_package_says_what_lives_there(package: Path) -> None:
    doc = ast.get_docstring(ast.parse((package / "__init__.py").read_text(encoding="utf-8")))
    assert doc and len(doc.split()) >= 8, f"{package.relative_to(ROOT)}/__init__.py needs a docstring"


def test_sweeps_and_alpha_crit_use_the_method_interface_only() -> None:
    """Generic control modules never import a concrete editing method (only base/registry)."""
    concrete = {"core.control.methods.salve", "core.control.methods.rome", "core.control.methods.steering"}
    graph = project_graph()
    for module in ("core.control.sweep", "core.control.alpha_crit", "core.control.robustness",
                   "core.control.edit", "core.control.spec", "core.control.curves"):
        assert not graph[module] & concrete, (module, graph[module] & concrete)


def test_readme_python_imports_resolve() -> None:
    """Every import line of the README's Python examples names a module and attribute that exist.

    Optional extras (SAELens, the `interop` extra) are checked only where installed; CI installs
    them for its second run (`SALVE_REQUIRE_INTEROP=1`), so there they are checked too.
    """
    import importlib
    import importlib.util
    import os
    import re

    optional = {"sae_lens"}

    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    imports = [line for b in blocks for line in b.splitlines() if line.startswith(("from ", "import "))]
    assert len(imports) >= 5
    for line in imports:
        tree = ast.parse(line)
        node = tree.body[0]
        top = (node.module if isinstance(node, ast.ImportFrom) else node.names[0].name).split(".")[0]
        if (top in optional and importlib.util.find_spec(top) is None
                and os.environ.get("SALVE_REQUIRE_INTEROP") != "1"):
            continue
        if isinstance(node, ast.ImportFrom):
            module = importlib.import_module(node.module)
            for alias in node.names:
                assert hasattr(module, alias.name), line
        else:
            for alias in node.names:
                importlib.import_module(alias.name)
