"""The TUI's layout rules, read from the source (no app is started).

One loading pattern: a screen's content comes through ``LOADING`` + ``load()``/``show()`` and
later computations through ``SessionScreen.compute_in_thread``; only ``screens/base.py`` starts
thread workers, so every screen gets the loading notice, the error wording and the dropping of
superseded results from one place.
"""

from __future__ import annotations

import ast
from pathlib import Path

from salve_tui.app.screens.base import SessionScreen, discover_views

SCREENS = Path(__file__).resolve().parents[1] / "salve_tui" / "app" / "screens"


def worker_calls(path: Path) -> list[str]:
    """``file:line name`` for each ``.run_worker`` / ``load_in_thread`` reference in ``path``."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        name = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) else ""
        if name in ("run_worker", "load_in_thread"):
            found.append(f"{path.name}:{node.lineno} {name}")
    return found


def test_worker_finder_finds_a_planted_call(tmp_path: Path) -> None:
    planted = tmp_path / "planted.py"
    planted.write_text("def f(screen):\n    screen.run_worker(print, thread=True)\n", encoding="utf-8")
    assert worker_calls(planted) == ["planted.py:2 run_worker"]


def test_only_the_base_screen_starts_workers() -> None:
    offenders = [call for path in sorted(SCREENS.glob("*.py"))
                 if path.stem != "base"
                 for call in worker_calls(path)]
    assert offenders == [], "use LOADING + load()/show() or self.compute_in_thread(...)"


def test_every_session_view_loads_through_the_pattern() -> None:
    """Each registered view says what it loads (the notice) and reads it in ``load()``."""
    for view in discover_views():
        screen = view.factory
        if not issubclass(screen, SessionScreen):
            continue
        assert screen.LOADING, f"{view.name}: declare LOADING and read the session in load()"
        assert screen.load is not SessionScreen.load, f"{view.name}: override load()"


# --------------------------------------------------------------------------- CSS
# Widgets keep their CSS in DEFAULT_CSS; each screen's is in <module>.tcss beside it (CSS_PATH).
# Textual reads a screen's CSS_PATH into the app's one stylesheet, unscoped, and as user CSS
# (which beats every DEFAULT_CSS): so each rule names its screen, and no element is styled from
# two places (a DEFAULT_CSS rule that an app.tcss rule for the same id silently overrode was
# how ``#matrix-status`` came to have a dead ``height: auto``).

APP = SCREENS.parent
CSS_FILES = sorted([APP / "app.tcss", *SCREENS.glob("*.tcss")])


def css_rules(css: str) -> list[str]:
    """The selector lists of ``css`` (comments dropped)."""
    import re

    css = re.sub(r"/\*.*?\*/", "", css, flags=re.S)
    return [part.rsplit("}", 1)[-1].strip() for part in css.split("{")[:-1]]


def styled_ids(css: str) -> set[tuple[str, str]]:
    """``(screen or widget type, id)`` for every id a rule styles; the type is "" when the rule
    does not start with one (it then applies wherever the id is)."""
    import re

    found = set()
    for selectors in css_rules(css):
        for selector in selectors.split(","):
            words = selector.split()
            first = re.match(r"[A-Z]\w*", words[0]) if words else None
            for name in re.findall(r"#([\w-]+)", selector):
                found.add((first.group(0) if first else "", name))
    return found


def default_css_blocks(path: Path) -> list[str]:
    """The ``DEFAULT_CSS`` strings of the classes in ``path``."""
    blocks = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "DEFAULT_CSS" for t in node.targets)
                and isinstance(node.value, ast.Constant)):
            blocks.append(node.value.value)
    return blocks


def test_css_parsers_on_a_planted_sheet() -> None:
    css = "/* #gone { } */\nFooScreen #a, FooScreen.-wide #b Static { x: 1; }\n#c { y: 2; }\n"
    assert styled_ids(css) == {("FooScreen", "a"), ("FooScreen", "b"), ("", "c")}


def test_screen_css_is_beside_its_module_and_names_its_screens() -> None:
    for path in sorted(SCREENS.glob("*.tcss")):
        module = path.with_suffix(".py")
        assert module.exists(), f"{path.name}: no {module.name} beside it"
        classes = {n.name for n in ast.walk(ast.parse(module.read_text(encoding="utf-8")))
                   if isinstance(n, ast.ClassDef)}
        for selectors in css_rules(path.read_text(encoding="utf-8")):
            for selector in selectors.split(","):
                head = selector.split()[0].split(".")[0].split(":")[0].split("#")[0]
                assert head in classes, f"{path.name}: '{selector.strip()}' must start with a screen of {module.name}"
        source = module.read_text(encoding="utf-8")
        loads = 'Path(__file__).with_suffix(".tcss")' in source or f'Path(__file__).with_name("{path.name}")' in source
        assert "CSS_PATH" in source and loads, f"{module.name}: load {path.name} with CSS_PATH"
        assert not default_css_blocks(module), f"{module.name}: screen CSS goes in {path.name}"


def test_every_styled_id_is_composed_and_styled_from_one_place() -> None:
    sources: dict[str, set[tuple[str, str]]] = {p.name: styled_ids(p.read_text(encoding="utf-8")) for p in CSS_FILES}
    python = sorted(APP.rglob("*.py"))
    for path in python:
        for i, block in enumerate(default_css_blocks(path)):
            sources[f"{path.name} DEFAULT_CSS {i}"] = styled_ids(block)
    code = "\n".join(p.read_text(encoding="utf-8") for p in python)
    seen: dict[str, list[tuple[str, str]]] = {}
    for source, ids in sources.items():
        for owner, name in ids:
            assert f'id="{name}"' in code or f"id='{name}'" in code, f"{source}: #{name} is not in any widget"
            seen.setdefault(name, []).append((source, owner))
    for name, places in seen.items():
        for i, (source, owner) in enumerate(places):
            for other_source, other_owner in places[i + 1:]:
                clash = other_source != source and (owner == other_owner or not owner or not other_owner)
                assert not clash, f"#{name} is styled in {source} and in {other_source}: keep one rule"


def test_no_screen_module_keeps_css_in_default_css() -> None:
    """Screens' CSS is in their .tcss (the modules under ``screens/`` hold screens only)."""
    for module in sorted(SCREENS.glob("*.py")):
        assert not default_css_blocks(module), f"{module.name}: move DEFAULT_CSS to {module.stem}.tcss"
