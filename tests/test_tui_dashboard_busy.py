"""The dashboard's footer while a job runs: ``c Cancel`` appears, ``a Run all`` (which cannot run
then) leaves, and every key shown fits 80 columns; after the job ``a Run all`` is back."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from test_tui_analysis import synth_app
from test_tui_conventions import footer_overflow
from test_tui_helpers import fixed_clock, held_job, line_with, screen_text, wait_for  # noqa: F401 (fixture)
from textual.widgets import Footer
from textual.widgets._footer import FooterKey

from salve_tui.app.screens.dashboard import DashboardScreen

SIZE = (80, 24)


@pytest.fixture
def synth_folder(fixed_clock: float, synth_session_folder: Path) -> Path:  # noqa: F811
    """The synthetic session, written with frozen timestamps (the dashboard shows them)."""
    return synth_session_folder


def footer_keys(screen) -> list[str]:  # noqa: ANN001
    return [k.key for k in screen.query_one(Footer).query(FooterKey)]


async def test_dashboard_footer_fits_while_a_job_runs(synth_folder: Path) -> None:
    stop = threading.Event()
    app = synth_app(synth_folder)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), what="dashboard")
        await pilot.pause(0.1)
        assert "a" in footer_keys(app.screen) and "c" not in footer_keys(app.screen)
        try:
            app.start_job("wait", held_job(stop))
            await wait_for(pilot, lambda: app.jobs.busy, what="job")
            await pilot.pause(0.2)
            keys = footer_keys(app.screen)
            assert "c" in keys and "a" not in keys and "q" in keys
            assert footer_overflow(app.screen) == []
        finally:
            stop.set()
        await wait_for(pilot, lambda: not app.jobs.busy, what="job end")
        await pilot.pause(0.2)
        assert "a" in footer_keys(app.screen) and "c" not in footer_keys(app.screen)


def test_dashboard_busy_snapshot(snap_compare, synth_folder: Path) -> None:
    stop = threading.Event()

    async def start_job(pilot) -> None:  # noqa: ANN001
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, DashboardScreen), what="dashboard")
        pilot.app.start_job("wait", held_job(stop))
        await wait_for(pilot, lambda: pilot.app.jobs.busy, what="job")
        await pilot.pause(0.3)
        text = screen_text(pilot.app)
        assert "job 'wait' started" in text and line_with(text, "wait") == ["wait", "starting…"]
        assert "c Cancel" in text and "a Run all" not in text

    try:
        assert snap_compare(synth_app(synth_folder), terminal_size=SIZE, run_before=start_job)
    finally:
        stop.set()
