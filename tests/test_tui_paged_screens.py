"""Tables longer than a page (issue 10, issue 13 item 3): sessions list, edit stack, compare
edits and the edit preview hold one page of 200 rows, say which rows they show, and turn pages.

Each test builds a real session list or session with more than 200 rows through core (edits
recorded in the format :func:`core.workflow.edits.record_edit` writes, classes from
:func:`core.workflow.synthetic.build_synthetic_session` plus the real rankings stage) and drives
the app with Pilot: the first page is shown, the page key shows the next one, and the cursor on
the new page still selects (the highlighted row is the one the screen acts on).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from test_tui_analysis import synth_app
from test_tui_helpers import make_session, tiny_config, wait_for
from textual.widgets import DataTable, Static

from core.config import SAEConfig
from core.store.session import Session
from core.workflow.edits import build_spec
from core.workflow.inputs import clear_input_cache, load_inputs
from core.workflow.pipeline import run_rankings
from core.workflow.synthetic import SyntheticSpec, build_synthetic_session
from salve_tui.app.app import SalveApp
from salve_tui.app.screens.analysis_edit import EditPreviewScreen
from salve_tui.app.screens.analysis_edits import CompareEditsScreen, EditStackScreen
from salve_tui.app.screens.analysis_shared import TABLE_PAGE
from salve_tui.app.screens.dashboard import DashboardScreen
from salve_tui.app.screens.sessions import SessionsScreen

SIZE = (80, 24)


def keys(table: DataTable) -> list[str]:
    return [str(key.value) for key in table.rows]


def text_of(screen, selector: str) -> str:  # noqa: ANN001
    return str(screen.query_one(selector, Static).render())


async def test_sessions_list_pages(tmp_path: Path) -> None:
    folder = tmp_path / "sessions"
    folder.mkdir()
    total = TABLE_PAGE + 5
    for i in range(total):
        make_session(folder, f"s{i:03d}")
    app = SalveApp(sessions_folder=folder)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, SessionsScreen), what="sessions")
        screen = app.screen
        table = screen.query_one(DataTable)
        paths = [row["path"] for row in screen.rows]
        assert len(paths) == total and keys(table) == paths[:TABLE_PAGE]
        assert f"{total} sessions · rows 1–{TABLE_PAGE}/{total} [ ]" in text_of(screen, "#sessions-folder")
        await pilot.press("right_square_bracket")
        assert keys(table) == paths[TABLE_PAGE:]
        assert f"rows {TABLE_PAGE + 1}–{total}/{total}" in text_of(screen, "#sessions-folder")
        await pilot.press("down", "down")  # the cursor moves on the new page; detail follows it
        assert screen.selected_row()["path"] == paths[TABLE_PAGE + 2]
        assert paths[TABLE_PAGE + 2] in text_of(screen, "#session-detail")
        await pilot.press("r")  # a refresh keeps the page and the selected session
        assert screen.selected_row()["path"] == paths[TABLE_PAGE + 2]
        await pilot.press("left_square_bracket")
        assert keys(table) == paths[:TABLE_PAGE] and screen.selected_row()["path"] == paths[0]


async def test_edit_stack_and_comparison_page(synth_session_folder: Path) -> None:
    total = TABLE_PAGE + 30
    with Session.open(synth_session_folder / "synth.h5") as session:
        inputs = load_inputs(session)
        log = [{**build_spec(inputs, target_class=i % 10, alpha=0.1 * (i + 1)).to_dict(),
                "recorded_at": time.time()} for i in range(total)]
        with session.transaction() as tx:  # what `total` record_edit calls leave behind
            tx.write_json("control/edits", log)
    clear_input_cache()
    app = synth_app(synth_session_folder)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), what="dashboard")
        await pilot.press("s")
        await wait_for(pilot, lambda: isinstance(app.screen, EditStackScreen) and app.screen.stack is not None,
                       what="edit stack", timeout=120)
        stack = app.screen
        table = stack.query_one(DataTable)
        assert keys(table) == [str(n) for n in range(1, TABLE_PAGE + 1)]
        assert f"{total} edit(s), {total} active · rows 1–{TABLE_PAGE}/{total} [ ]" in text_of(stack, "#stack-status")
        await pilot.press("right_square_bracket")
        assert keys(table) == [str(n) for n in range(TABLE_PAGE + 1, total + 1)]
        assert f"rows {TABLE_PAGE + 1}–{total}/{total}" in text_of(stack, "#stack-status")
        await pilot.press("down")  # edit #202: the detail line and the actions follow the cursor
        assert stack.highlighted().number == TABLE_PAGE + 2
        assert text_of(stack, "#stack-detail").startswith(f"#{TABLE_PAGE + 2} SALVE")
        await pilot.press("v", "down", "v")  # compare #202 with #203, both on page 2
        await wait_for(pilot, lambda: isinstance(app.screen, CompareEditsScreen), what="comparison")
        assert (app.screen.first, app.screen.second) == (TABLE_PAGE + 2, TABLE_PAGE + 3)


@pytest.fixture
def many_classes_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A ranked synthetic session with 450 classes (each its own planted feature)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SALVE_TUI_IMAGES", "halfblock")
    folder = tmp_path / "sessions"
    folder.mkdir()
    config = tiny_config("synth")
    config.sae = SAEConfig(hidden=512)
    path = build_synthetic_session(folder / "synth.h5", SyntheticSpec(
        n_classes=450, dim=16, hidden=512, n_train=900, n_test=900, noise=0.2), config)
    with Session.open(path) as session:
        run_rankings(session)
    clear_input_cache()
    return folder


async def test_edit_preview_pages_its_classes(many_classes_folder: Path) -> None:
    app = synth_app(many_classes_folder)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), what="dashboard")
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, EditPreviewScreen) and app.screen.effect is not None,
                       what="edit preview", timeout=120)
        edit = app.screen
        table = edit.query_one(DataTable)
        assert keys(table) == [str(c) for c in range(TABLE_PAGE)]
        assert "classes 1–200/450 { }" in text_of(edit, "#edit-status")
        await pilot.press("plus", "plus")  # [ ] stay the fine α steps; the page keys are { }
        await pilot.press("right_curly_bracket")
        assert keys(table) == [str(c) for c in range(TABLE_PAGE, 2 * TABLE_PAGE)]
        assert edit.target_class == TABLE_PAGE and "classes 201–400/450" in text_of(edit, "#edit-status")
        await pilot.press("down", "down")  # ↓ on the new page chooses the class and its feature
        await wait_for(pilot, lambda: edit.target_class == TABLE_PAGE + 2, what="class 202")
        assert edit.features == [int(edit.inputs.dominant[TABLE_PAGE + 2])]
        after = table.get_cell(str(TABLE_PAGE + 2), "after")
        assert str(after) == f"{100 * float(edit.effect.accuracy_after[TABLE_PAGE + 2]):.1f}%"
        await pilot.press("right_curly_bracket", "right_curly_bracket")  # clamped at the last page
        assert keys(table) == [str(c) for c in range(2 * TABLE_PAGE, 450)]
        await pilot.press("left_curly_bracket")
        assert keys(table)[0] == str(TABLE_PAGE) and edit.target_class == TABLE_PAGE
