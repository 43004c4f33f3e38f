"""A large terminal (200×60) is used, not left blank: found by a new-user tour in tmux.

The dashboard's stage detail column grows with the terminal (a 42-character rankings message
was cut to 33 cells at every size) and goes back to 33 cells at 80 columns.
"""

from __future__ import annotations

from pathlib import Path

from test_tui_helpers import make_session, wait_for

from salve_tui.app.app import SalveApp
from salve_tui.app.screens.dashboard import DETAIL_WIDTH, DashboardScreen

LARGE = (200, 60)
MESSAGE = "10 distinct dominant features / 10 classes, 3 shared"


def screen_lines(app: SalveApp) -> list[str]:
    """The plain text the terminal shows, line by line."""
    import html
    import re

    svg = app.export_screenshot()
    rows: dict[float, list[tuple[float, str]]] = {}
    for m in re.finditer(r'<text class="[^"]*" x="([\d.]+)" y="([\d.]+)"[^>]*>(.*?)</text>', svg):
        rows.setdefault(float(m.group(2)), []).append((float(m.group(1)), html.unescape(m.group(3))))
    lines = []
    for _, parts in sorted(rows.items()):
        line = ""
        for x, text in sorted(parts):  # each span starts at its cell (12.2 px a cell)
            line = line.ljust(round(x / 12.2)) + text.replace("\xa0", " ")
        lines.append(line)
    return lines


async def test_dashboard_detail_column_grows_with_the_terminal(tmp_path: Path) -> None:
    folder = tmp_path / "sessions"
    folder.mkdir()
    stages = {stage: ("done", "ok") for stage in ("data", "backbone", "activations", "sae")}
    make_session(folder, "wide", stages={**stages, "rankings": ("done", MESSAGE)})
    app = SalveApp(sessions_folder=folder, start_session="wide")
    async with app.run_test(size=LARGE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), what="dashboard")
        await pilot.pause(0.2)
        assert any(MESSAGE in line for line in screen_lines(app))
        await pilot.resize_terminal(80, 24)
        await pilot.pause(0.2)
        detail = app.screen.query_one("#stages").columns.get("detail")
        assert detail.width == DETAIL_WIDTH
        assert not any(MESSAGE in line for line in screen_lines(app))
        assert any(MESSAGE[:DETAIL_WIDTH - 1] + "…" in line for line in screen_lines(app))


async def test_ground_truth_tables_side_by_side_on_a_wide_terminal(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    """At 200 columns the concept tables stand right of the pointing-game tables (the right
    two thirds of the screen were blank); at 80 columns they are below them again."""
    from test_tui_analyses import GROUND_TRUTH
    from test_tui_analysis import make_synthetic_session

    from core.store.session import Session
    from salve_tui.app.screens.analysis_ground_truth import GroundTruthScreen

    monkeypatch.chdir(tmp_path)
    folder = Path("sessions")
    folder.mkdir()
    make_synthetic_session(folder)
    with Session.open(folder / "synth.h5") as session, session.transaction() as tx:
        tx.write_json("groundtruth/results", GROUND_TRUTH)
    app = SalveApp(sessions_folder=folder, start_session="synth")
    async with app.run_test(size=LARGE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), what="dashboard")
        await pilot.press("g")
        await wait_for(pilot, lambda: isinstance(app.screen, GroundTruthScreen) and app.screen.result is not None,
                       what="ground truth")
        await pilot.pause(0.2)
        body, concepts = (app.screen.query_one(f"#{i}") for i in ("truth-body", "truth-concepts"))
        assert concepts.region.x >= body.region.right and concepts.region.y == body.region.y
        line = next(line for line in screen_lines(app) if "Pointing game" in line)
        assert "Best latent per concept" in line
        await pilot.resize_terminal(80, 24)
        await pilot.pause(0.2)
        assert concepts.region.x == body.region.x and concepts.region.y > body.region.y


async def test_edit_stack_labels_whole_on_a_wide_terminal(synth_session_folder: Path) -> None:
    """A three-feature SALVE label is longer than the 30 cells the edit column has at 80
    columns; at 200 columns the column grows and the whole label is on screen."""
    import time

    from test_tui_analysis import synth_app

    from core.store.session import Session
    from core.workflow.edits import build_spec, describe_spec
    from core.workflow.inputs import clear_input_cache, load_inputs
    from salve_tui.app.screens.analysis_edits import EDIT_WIDTH, EditStackScreen

    with Session.open(synth_session_folder / "synth.h5") as session:
        spec = build_spec(load_inputs(session), features=[13, 19, 25], alpha=0.0867542, modulation="clamped")
        with session.transaction() as tx:
            tx.write_json("control/edits", [{**spec.to_dict(), "recorded_at": time.time()}])
    clear_input_cache()
    label = describe_spec(spec)
    assert len(label) > EDIT_WIDTH
    app = synth_app(synth_session_folder)
    async with app.run_test(size=LARGE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), what="dashboard")
        await pilot.press("s")
        await wait_for(pilot, lambda: isinstance(app.screen, EditStackScreen) and app.screen.stack is not None,
                       what="edit stack")
        await pilot.pause(0.2)
        row = next(line for line in screen_lines(app) if line.startswith(" 1 ") and "SALVE" in line)
        assert label in row
        await pilot.resize_terminal(80, 24)
        await pilot.pause(0.2)
        row = next(line for line in screen_lines(app) if line.startswith(" 1 ") and "SALVE" in line)
        assert label not in row and label[:EDIT_WIDTH] in row


async def test_help_uses_a_large_terminal(tmp_path: Path) -> None:
    """At 200×60 the dashboard's help shows every key without scrolling (it was capped at
    76×44 cells and scrolled with 8 rows free below it); at 80×24 it keeps its 76 columns."""
    from salve_tui.app.screens.help import HelpScreen

    folder = tmp_path / "sessions"
    folder.mkdir()
    make_session(folder, "wide", stages={stage: ("done", "ok") for stage in
                                         ("data", "backbone", "activations", "sae", "rankings")})
    app = SalveApp(sessions_folder=folder, start_session="wide")
    async with app.run_test(size=LARGE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), what="dashboard")
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen), what="help")
        await pilot.pause(0.2)
        dialog, body = app.screen.query_one("#help-dialog"), app.screen.query_one("#help-body")
        assert dialog.size.width > 76 and dialog.outer_size.height > 44
        assert body.virtual_size.height <= body.size.height  # nothing to scroll to
        await pilot.resize_terminal(80, 24)
        await pilot.pause(0.2)
        assert dialog.outer_size.width == 76


async def test_new_session_fields_do_not_stretch_across_a_large_terminal(tmp_path: Path) -> None:
    """At 200 columns the form's inputs and choices were 180 cells wide; they stop at 80."""
    from textual.widgets import Input, Select

    from salve_tui.app.screens.new_session import NewSessionScreen

    folder = tmp_path / "sessions"
    folder.mkdir()
    app = SalveApp(sessions_folder=folder)
    async with app.run_test(size=LARGE) as pilot:
        await pilot.pause(0.3)
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, NewSessionScreen), what="form")
        await pilot.pause(0.2)
        widths = {w.outer_size.width for w in app.screen.query(Input)} | {
            w.outer_size.width for w in app.screen.query(Select)}
        assert widths and max(widths) <= 80
