"""Nothing lost: export-all writes what is missing and asks only about files that exist; an
edit identical to the top of the stack is not recorded twice; written paths stay readable."""

from __future__ import annotations

from pathlib import Path

from test_tui_analysis import synth_app
from test_tui_helpers import wait_for
from textual.widgets import Static

from salve_tui.app.screens.analysis_exports import ExportsScreen
from salve_tui.app.screens.confirm import ConfirmModal
from salve_tui.app.screens.dashboard import DashboardScreen


async def test_export_all_writes_the_rest_and_asks_only_about_existing_files(
        synth_session_folder: Path) -> None:
    app = synth_app(synth_session_folder)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), what="dashboard")
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, ExportsScreen) and app.screen.loaded,
                       what="exports")
        exports = app.screen
        await pilot.press("enter")  # the matrix alone
        await wait_for(pilot, lambda: exports.last_written and not app.jobs.busy, timeout=20,
                       what=f"matrix {exports.status}")
        matrix = exports.last_written[0]
        before = matrix.stat().st_mtime_ns
        await pilot.press("A")
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmModal), what="replace question")
        question = str(app.screen.query_one("#confirm-question", Static).render())
        assert "Feature–class matrix" in question and "α_crit" not in question
        written = list(exports.last_written)
        await pilot.press("n")  # Keep
        await wait_for(pilot, lambda: app.screen is exports and not app.jobs.busy, what="kept")
        assert matrix.stat().st_mtime_ns == before  # kept
        names = {p.name for p in written}
        assert {"alpha_crit_suppress-linear.csv", "alpha_crit_suppress-linear.samples.csv"} <= names
        assert all(p.exists() for p in written) and matrix not in written
        status = str(exports.query_one("#exports-status", Static).render())
        assert "kept the existing files of: Feature–class matrix" in status
        await pilot.press("A")  # now only the matrix and the α_crit files exist: both asked about
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmModal), what="second question")
        question = str(app.screen.query_one("#confirm-question", Static).render())
        assert "Feature–class matrix" in question and "α_crit tables" in question
        await pilot.press("y")
        await wait_for(pilot, lambda: matrix.stat().st_mtime_ns != before and not app.jobs.busy,
                       what="replaced")


async def test_recording_the_same_edit_twice_adds_it_once(tmp_path: Path, built_session_path: Path) -> None:
    """On the tiny real session (the export rebuilds the whole model)."""
    from core.store.session import Session, copy_session
    from core.workflow.edits import list_edits
    from salve_tui.app.app import SalveApp
    from salve_tui.app.screens.analysis_edit import EditPreviewScreen

    folder = tmp_path / "sessions"
    folder.mkdir()
    copy_session(built_session_path, folder / "tiny.h5")
    app = SalveApp(sessions_folder=folder, start_session="tiny")
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), what="dashboard")
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, EditPreviewScreen) and app.screen.spec is not None,
                       what="edit preview")
        edit = app.screen
        await pilot.press("plus", "w")
        await wait_for(pilot, lambda: "recorded edit #1" in edit.status and not app.jobs.busy,
                       timeout=30, what=f"first record: {edit.status} {edit.error}")
        await pilot.press("w")
        await wait_for(pilot, lambda: "not recorded again" in edit.status and not app.jobs.busy,
                       timeout=30, what=f"second record: {edit.status} {edit.error}")
        assert "#1" in edit.status
        shown = str(edit.query_one("#edit-status", Static).render())
        assert "already #1" in shown
        await pilot.press("plus", "w")  # a different strength is a new edit
        await wait_for(pilot, lambda: "recorded edit #2" in edit.status and not app.jobs.busy,
                       timeout=30, what=f"third record: {edit.status} {edit.error}")
    with Session.open(folder / "tiny.h5", read_only=True) as session:
        specs = list_edits(session)
    assert len(specs) == 2 and specs[0].alpha < specs[1].alpha
