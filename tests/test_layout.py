"""The layout rules of the tree: no import cycles, core imports no front end, one HDF5 module.

The graph is built from the source with ``ast`` (every ``import`` and ``from … import``,
including the lazy ones inside functions, except those under ``if TYPE_CHECKING:``), so a cycle
that only bites on some code path is still caught.
"""

from __future__ import annotations

import ast
import textwrap
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


def imported_modules(path: Path, known: set[str], type_checking: bool = False) -> set[str]:
    """Every project module ``path`` imports at run time (``from pkg import mod`` included);
    ``type_checking``: the imports under ``if TYPE_CHECKING:`` too."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip: set[int] = set()
    for node in ast.walk(tree):
        if not type_checking and _type_checking_block(node):
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


def project_graph(type_checking: bool = False) -> dict[str, set[str]]:
    files = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    known = {module_name(p) for p in files}
    return {module_name(p): imported_modules(p, known, type_checking) - {module_name(p)} for p in files}


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


def test_no_import_cycle_in_core_even_under_type_checking() -> None:
    """The edit record, the method interface and the registry form no loop, not even for the
    type checker, and none is dodged through ``importlib`` (issue 21)."""
    graph = {m: {d for d in deps if d.startswith("core")}
             for m, deps in project_graph(type_checking=True).items() if m.startswith("core")}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " → ".join(cycle or [])
    assert not [p for p in (ROOT / "core" / "control").rglob("*.py") if "importlib" in imported_names(p)]


def test_cli_commands_are_registered_directly_without_a_cycle() -> None:
    """``cli.main`` imports every command module by name (a missing one is an ImportError, not
    a silent skip), command modules import ``cli.common`` and never ``cli.main``, and the CLI has
    no import cycle even for the type checker (issue 21)."""
    cli = ROOT / "salve_tui" / "cli"
    graph = {m: {d for d in deps if d.startswith("salve_tui.cli")}
             for m, deps in project_graph(type_checking=True).items() if m.startswith("salve_tui.cli")}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " → ".join(cycle or [])
    assert not [p.name for p in cli.rglob("*.py") if "importlib" in imported_names(p)]
    commands = {module_name(p) for p in cli.glob("*.py")
                if any(isinstance(n, ast.FunctionDef) and n.name == "register"
                       for n in ast.parse(p.read_text(encoding="utf-8")).body)}
    assert len(commands) >= 5, commands
    assert commands <= graph["salve_tui.cli.main"], commands - graph["salve_tui.cli.main"]
    assert not [m for m in commands if "salve_tui.cli.main" in graph[m]]
    assert all("salve_tui.cli.common" in graph[m] for m in commands)


def method_name_literals(path: Path, names: set[str]) -> list[int]:
    """Lines where a method name is compared with, listed or used as a key (a per-method branch
    or table): ``x == "rome"``, ``("salve", "rome")``, ``{"steer": ...}``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            values = [node.left, *node.comparators]
        elif isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            values = list(node.elts)
        elif isinstance(node, ast.Dict):
            values = [k for k in node.keys if k is not None]
        else:
            continue
        lines += [v.lineno for v in values if isinstance(v, ast.Constant) and v.value in names]
    return lines


def test_no_branch_on_method_names_outside_the_methods(tmp_path: Path) -> None:
    """Fronts and workflow ask the method (``core.control.methods``), never test its name."""
    names = {"salve", "rome", "steer"}
    methods = ROOT / "core" / "control" / "methods"
    offenders = [f"{p.relative_to(ROOT)}:{line}" for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")
                 if methods not in p.parents for line in method_name_literals(p, names)]
    assert not offenders, offenders
    planted = tmp_path / "planted.py"  # the finder sees planted branches and tables
    planted.write_text('log = "salve"\nif m == "rome":\n    pass\nT = {"steer": 1}\nM = ("salve", "x")\n')
    assert method_name_literals(planted, names) == [2, 4, 5]


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
    """Nothing outside ``core.control.methods`` imports a concrete editing method (only
    base/spec/registry): the package registers them."""
    concrete = {"core.control.methods.salve", "core.control.methods.rome", "core.control.methods.steering"}
    graph = project_graph(type_checking=True)
    for module, deps in graph.items():
        if module != "core.control.methods" and not module.startswith("core.control.methods."):
            assert not deps & concrete, (module, deps & concrete)


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


# --------------------------------------------------------------------------- sizes (issue 21 item 8)

MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60

#: Modules and functions still over the limits: this list may only shrink. A new module over 500
#: lines or a new function over 60 fails ``test_no_new_oversized_code``; an entry that now fits
#: fails ``test_the_size_allow_list_only_shrinks`` until it is removed here. The comment names the
#: branch that was changing the file when the list was made (``git diff main...BRANCH``), or says
#: that no branch was.
OVERSIZED_ALLOWED: dict[str, str] = {}  # empty: every module and function fits (issue 21 item 8)


def oversized(source: str, rel: str) -> dict[str, int]:
    """``{rel: lines}`` when the module is over the limit and ``{rel::Qual.name: lines}`` for
    each function or method over it (nested ones named through their parents)."""
    found: dict[str, int] = {}
    lines = len(source.splitlines())
    if lines > MAX_MODULE_LINES:
        found[rel] = lines

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    length = child.end_lineno - child.lineno + 1
                    if length > MAX_FUNCTION_LINES:
                        found[f"{rel}::{name}"] = length
                visit(child, f"{name}.")
            else:
                visit(child, prefix)

    visit(ast.parse(source), "")
    return found


def project_oversized() -> dict[str, int]:
    found: dict[str, int] = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            found.update(oversized(path.read_text(encoding="utf-8"), path.relative_to(ROOT).as_posix()))
    return found


def test_size_finder_counts_modules_functions_and_methods() -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(59))
    source = (f"def short():\n{body}\n\n"  # 60 lines: fits
              f"def long():\n{body}\n    return 1\n\n"  # 61 lines
              f"class K:\n    def method(self):\n{textwrap.indent(body, '    ')}\n        return 1\n"
              f"        def inner():\n            pass\n")
    found = oversized(source, "m.py")
    assert found == {"m.py::long": 61, "m.py::K.method": 63}
    assert oversized("x = 1\n" * 501, "big.py") == {"big.py": 501}
    assert oversized("x = 1\n" * 500, "ok.py") == {}


def test_no_new_oversized_code() -> None:
    new = {key: n for key, n in project_oversized().items() if key not in OVERSIZED_ALLOWED}
    assert not new, (f"over {MAX_MODULE_LINES} lines per module / {MAX_FUNCTION_LINES} per function "
                     f"(split along a real seam: load → compute → record, one module per concept): {new}")


def test_the_size_allow_list_only_shrinks() -> None:
    fixed = sorted(set(OVERSIZED_ALLOWED) - set(project_oversized()))
    assert not fixed, f"now within the limits: remove from OVERSIZED_ALLOWED in tests/test_layout.py: {fixed}"


def test_no_import_cycle_in_the_tui_even_under_type_checking() -> None:
    """Screens type the app through ``salve_tui.app.host.SalveHost``; importing the app class
    (which imports the screens) made a loop the type checker saw (issue 21)."""
    graph = {m: {d for d in deps if d.startswith("salve_tui")}
             for m, deps in project_graph(type_checking=True).items() if m.startswith("salve_tui")}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " → ".join(cycle or [])


def test_the_app_provides_what_the_screens_protocol_names(tmp_path: Path) -> None:
    from salve_tui.app.app import SalveApp
    from salve_tui.app.host import SalveHost

    app = SalveApp(sessions_folder=tmp_path)
    members = set(SalveHost.__annotations__) | {n for n in vars(SalveHost) if not n.startswith("_")}
    assert len(members) >= 15
    assert not [m for m in sorted(members) if not hasattr(app, m)]
