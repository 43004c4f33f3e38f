"""Sessions screen: listing (with unreadable files), opening as the single writer, delete, locks."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_tui_helpers import make_session, wait_for
from textual.widgets import DataTable, Static

from core.store.session import Session, SessionLocked
from salve_tui.app.app import SalveApp
from salve_tui.app.screens.confirm import ConfirmModal
from salve_tui.app.screens.dashboard import DashboardScreen
from salve_tui.app.screens.sessions import SessionsScreen


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    folder = tmp_path / "sessions"
    folder.mkdir()
    make_session(folder, "alpha", stages={"data": ("done", "60 train / 40 test images")})
    make_session(folder, "beta")
    (folder / "broken.h5").write_bytes(b"not an hdf5 file")
    return folder


async def test_lists_sessions_and_opens_one_as_writer(folder: Path) -> None:
    app = SalveApp(sessions_folder=folder)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, SessionsScreen)
        table = screen.query_one(DataTable)
        assert table.row_count == 3
        names = [str(table.get_row_at(i)[0]) for i in range(3)]
        assert names == ["alpha", "beta", "broken"]
        assert str(table.get_row_at(2)[1]) == "unreadable"
        # Stage glyphs in pipeline order: data done, the rest pending.
        assert str(table.get_row_at(0)[3]) == "✓····"

        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, DashboardScreen)
        assert app.session is not None and app.session.name == "alpha"
        with pytest.raises(SessionLocked):
            Session.open(folder / "alpha.h5")  # the app holds the writer lock

        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, SessionsScreen)
        assert app.session is None
        Session.open(folder / "alpha.h5").close()  # released when leaving the session


async def test_unreadable_session_shows_its_error_instead_of_opening(folder: Path) -> None:
    app = SalveApp(sessions_folder=folder)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("down", "down")
        detail = str(app.screen.query_one("#session-detail", Static).render())
        assert "not a readable HDF5 file" in detail
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, SessionsScreen)
        assert app.session is None
        assert any("not a readable HDF5 file" in str(n.message) for n in app._notifications)


async def test_session_locked_by_another_writer_is_a_notification(folder: Path) -> None:
    other_writer = Session.open(folder / "beta.h5")
    try:
        app = SalveApp(sessions_folder=folder)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("down", "enter")
            await pilot.pause()
            assert isinstance(app.screen, SessionsScreen)
            messages = [str(n.message) for n in app._notifications]
            assert any("open for writing in another process" in m for m in messages), messages
    finally:
        other_writer.close()


async def test_delete_asks_first_and_keeps_the_file_on_no(folder: Path) -> None:
    app = SalveApp(sessions_folder=folder)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("down", "d")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmModal)
        await pilot.press("n")
        await pilot.pause()
        assert (folder / "beta.h5").exists()

        await pilot.press("d")
        await pilot.pause()
        await pilot.press("y")
        await wait_for(pilot, lambda: not (folder / "beta.h5").exists(), 5, "the delete")
        table = app.screen.query_one(DataTable)
        assert [str(table.get_row_at(i)[0]) for i in range(table.row_count)] == ["alpha", "broken"]


async def test_missing_start_session_offers_to_build_and_no_creates_nothing(folder: Path) -> None:
    app = SalveApp(sessions_folder=folder, start_session="gamma")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, ConfirmModal), 5, "the build question")
        assert "no session 'gamma'" in app.screen.question
        await pilot.press("n")
        await pilot.pause()
        assert isinstance(app.screen, SessionsScreen)
        assert not (folder / "gamma.h5").exists()


async def test_start_session_opens_its_dashboard(folder: Path) -> None:
    app = SalveApp(sessions_folder=folder, start_session="alpha")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), 5, "the dashboard")
        assert app.session is not None and app.session.name == "alpha"


async def test_damaged_json_in_one_session_does_not_break_the_screen(folder: Path) -> None:
    """A session whose stored JSON is damaged is one red row; the others still list and open."""
    import h5py

    with h5py.File(folder / "beta.h5", "r+") as f:
        del f["json/stages"]
        f.create_dataset("json/stages", data='{"data": {"state": "do')  # cut mid-way
    app = SalveApp(sessions_folder=folder)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        table = app.screen.query_one(DataTable)
        assert table.row_count == 3
        assert str(table.get_row_at(1)[1]) == "unreadable"
        await pilot.press("down")
        detail = str(app.screen.query_one("#session-detail", Static).render())
        assert "beta.h5" in detail and "stages" in detail
        await pilot.press("up", "enter")
        await pilot.pause()
        assert isinstance(app.screen, DashboardScreen)


async def test_deleting_a_damaged_session_waits_for_its_writer(folder: Path) -> None:
    holder = Session(folder / "broken.h5", read_only=False)
    holder._acquire_lock(must_write=True)  # another process writing under this name
    app = SalveApp(sessions_folder=folder)
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("down", "down", "d")
            await pilot.pause()
            assert isinstance(app.screen, ConfirmModal)
            await pilot.press("y")
            await pilot.pause()
            assert (folder / "broken.h5").exists()
    finally:
        holder.close()
