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
#: Worked on in parallel by another helper of issue 21 (they move to compute_in_thread there);
#: drop them from this set once that work is merged.
NOT_YET_CONVERTED = frozenset({"analysis_edit", "analysis_feature"})


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
                 if path.stem != "base" and path.stem not in NOT_YET_CONVERTED
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
