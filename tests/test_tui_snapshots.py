"""Snapshots of the main screens at 80×24 (update with `pytest --snapshot-update`).

Deterministic: sessions are written with a frozen clock (shown in UTC), paths are relative to a
temporary working directory, log lines use a fixed clock and no job runs.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from test_tui_helpers import (  # noqa: F401
    FIXED_TIME,
    add_sae_history,
    fixed_clock,
    line_with,
    make_session,
    screen_text,
    wait_for,
)

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
    async def check(pilot) -> None:  # noqa: ANN001
        await pilot.pause(0.3)
        text = screen_text(pilot.app)
        assert "3 sessions in sessions/" in text
        assert line_with(text, "corrupt") == ["corrupt", "unreadable"]
        assert line_with(text, "demo")[3] == "✓✓✓◐·"  # data, backbone, activations done; SAE partial
        assert "✗ data failed: no folder at /data/cifar" in text  # the highlighted session's failure

    assert snap_compare(make_app(snapshot_sessions), terminal_size=SIZE, run_before=check)


def test_new_session_form(snap_compare, snapshot_sessions: Path) -> None:
    async def fill(pilot) -> None:
        await pilot.press("n")
        await pilot.pause()
        pilot.app.screen.query_one("#field-image_size").value = "3"  # and no name: two refusals
        for field in pilot.app.screen.query("Input"):
            field.cursor_blink = False  # a blinking cursor made this snapshot flaky
        await pilot.press("ctrl+s")
        await pilot.pause()
        text = screen_text(pilot.app)
        assert "required: give the session a name" in text
        assert "image size must be between 16 and 1024, got 3" in text
        assert "2 settings to fix" in text and "nothing was created" in text
        assert not (snapshot_sessions / ".h5").exists() and len(list(snapshot_sessions.glob("*.h5"))) == 3

    assert snap_compare(make_app(snapshot_sessions), terminal_size=SIZE, run_before=fill)


def test_dashboard(snap_compare, snapshot_sessions: Path) -> None:
    async def check(pilot) -> None:  # noqa: ANN001
        await wait_for(pilot, lambda: "rankings" in screen_text(pilot.app), what="the stage table")
        await pilot.pause(0.3)
        text = screen_text(pilot.app)
        assert line_with(text, "SAE")[:3] == ["SAE", "◐", "partial"]
        assert line_with(text, "rankings")[:3] == ["rankings", "·", "pending"]
        assert "next: 'sae' is partial" in text and "no job running" in text

    app = make_app(snapshot_sessions, start_session="demo")
    assert snap_compare(app, terminal_size=SIZE, run_before=check)


def test_help_on_dashboard(snap_compare, snapshot_sessions: Path) -> None:
    async def open_help(pilot) -> None:
        await pilot.pause(0.3)
        await pilot.press("question_mark")
        await pilot.pause()
        text = screen_text(pilot.app)
        assert "Help — Pipeline dashboard" in text
        assert line_with(text, "│ a ")[1:4] == ["a", "Run", "all"]  # the screen's own keys are listed

    assert snap_compare(make_app(snapshot_sessions, start_session="demo"), terminal_size=SIZE,
                        run_before=open_help)


def test_sae_training_view(snap_compare, snapshot_sessions: Path) -> None:
    history = add_sae_history(snapshot_sessions / "demo.h5")

    async def open_view(pilot) -> None:
        await pilot.pause(0.3)
        await pilot.press("t")
        await wait_for(pilot, lambda: getattr(pilot.app.screen, "loaded", False), what="SAE curves")
        await pilot.pause()
        text = screen_text(pilot.app)
        final = {k: float(v[0, -1]) for k, v in history.items()}
        assert (f"final, 30 epochs: total {final['loss']:.3g}  recon {final['recon']:.3g}  "
                f"sparsity {final['sparsity']:.3g}") in text
        assert f"L0 {final['l0']:.3g}  EV {final['ev']:.3g}  dead {final['dead']:.0f}" in text

    assert snap_compare(make_app(snapshot_sessions, start_session="demo"), terminal_size=SIZE,
                        run_before=open_view)
