"""Snapshots of the main screens at 80×24 (update with `pytest --snapshot-update`).

Deterministic: sessions are written with a frozen clock (shown in UTC), paths are relative to a
temporary working directory, log lines use a fixed clock and no job runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_tui_helpers import FIXED_TIME, add_sae_history, fixed_clock, make_session, wait_for  # noqa: F401

from salve_tui.app.app import SalveApp

SIZE = (80, 24)


@pytest.fixture
def snapshot_sessions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fixed_clock: float) -> Path:  # noqa: F811
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SALVE_TUI_IMAGES", "halfblock")
    folder = Path("sessions")
    folder.mkdir()
    make_session(folder, "demo", stages={
        "data": ("done", "60 train / 40 test images"),
        "backbone": ("done", "test accuracy 0.975"),
        "activations": ("done", "d=512, test acc from cache 0.975"),
        "sae": ("partial", "150/300 epochs"),
    })
    make_session(folder, "cifar-run", stages={"data": ("failed", "no folder at /data/cifar")})
    (folder / "corrupt.h5").write_bytes(b"junk")
    return folder


def make_app(folder: Path, **kwargs) -> SalveApp:
    return SalveApp(sessions_folder=folder, clock=lambda: FIXED_TIME, **kwargs)


def test_sessions_screen(snap_compare, snapshot_sessions: Path) -> None:
    assert snap_compare(make_app(snapshot_sessions), terminal_size=SIZE)


def test_new_session_form(snap_compare, snapshot_sessions: Path) -> None:
    async def fill(pilot) -> None:
        await pilot.press("n")
        await pilot.pause()
        pilot.app.screen.query_one("#field-image_size").value = "3"  # and no name: two refusals
        for field in pilot.app.screen.query("Input"):
            field.cursor_blink = False  # a blinking cursor made this snapshot flaky
        await pilot.press("ctrl+s")
        await pilot.pause()

    assert snap_compare(make_app(snapshot_sessions), terminal_size=SIZE, run_before=fill)


def test_dashboard(snap_compare, snapshot_sessions: Path) -> None:
    app = make_app(snapshot_sessions, start_session="demo")
    assert snap_compare(app, terminal_size=SIZE, run_before=lambda pilot: pilot.pause(0.3))


def test_help_on_dashboard(snap_compare, snapshot_sessions: Path) -> None:
    async def open_help(pilot) -> None:
        await pilot.pause(0.3)
        await pilot.press("question_mark")
        await pilot.pause()

    assert snap_compare(make_app(snapshot_sessions, start_session="demo"), terminal_size=SIZE,
                        run_before=open_help)


def test_sae_training_view(snap_compare, snapshot_sessions: Path) -> None:
    add_sae_history(snapshot_sessions / "demo.h5")

    async def open_view(pilot) -> None:
        await pilot.pause(0.3)
        await pilot.press("t")
        await wait_for(pilot, lambda: getattr(pilot.app.screen, "loaded", False), what="SAE curves")
        await pilot.pause()

    assert snap_compare(make_app(snapshot_sessions, start_session="demo"), terminal_size=SIZE,
                        run_before=open_view)
