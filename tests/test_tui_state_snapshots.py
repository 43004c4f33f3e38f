"""Snapshots at 80×24 of the edit stack (loading and filled), the comparison and the job log.

Deterministic: the synthetic session of ``test_tui_analysis`` (known arrays, no training), edits
recorded under a frozen clock, job-log entries written with fixed times, timestamps in UTC.
"""

from __future__ import annotations

import threading
import types
from pathlib import Path

import pytest
from test_tui_analysis import make_synthetic_session
from test_tui_helpers import (  # noqa: F401
    FIXED_TIME,
    fixed_clock,
    line_with,
    screen_text,
    wait_for,
    wait_or_cancelled,
)

import core.workflow.edits
import core.workflow.results
from core.control.spec import EditSpec
from core.store.joblog import append_job_log
from core.store.session import Session
from core.workflow.edits import record_edit
from salve_tui.app.app import SalveApp
from salve_tui.app.screens.analysis_edits import EditStackScreen
from salve_tui.app.screens.dashboard import DashboardScreen

SIZE = (80, 24)


@pytest.fixture
def stack_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fixed_clock: float) -> Path:  # noqa: F811
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(core.workflow.results, "time", types.SimpleNamespace(time=lambda: FIXED_TIME))
    folder = Path("sessions")
    folder.mkdir()
    path = make_synthetic_session(folder)
    with Session.open(path) as session:
        record_edit(session, EditSpec((1,), "suppress", 2.0))
        record_edit(session, EditSpec((7, 13), "suppress", 0.8, "clamped"))
        record_edit(session, EditSpec((19,), "enhance", 1.5))
    return folder


def app_for(folder: Path) -> SalveApp:
    return SalveApp(sessions_folder=folder, start_session="synth", clock=lambda: FIXED_TIME)


async def open_stack(pilot) -> EditStackScreen:  # noqa: ANN001
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, DashboardScreen))
    await pilot.press("s")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, EditStackScreen))
    screen = pilot.app.screen
    await wait_for(pilot, lambda: screen.stack is not None, what="the edit stack")
    return screen


def test_edit_stack_snapshot(snap_compare, stack_folder: Path) -> None:
    async def run_before(pilot) -> None:  # noqa: ANN001
        await open_stack(pilot)
        await pilot.press("down")
        await pilot.pause()
        text = screen_text(pilot.app)
        assert "3 edit(s), 3 active" in text
        assert line_with(text, "1 ")[:6] == ["1", "✓", "SALVE", "suppress", "f1", "α=2"]
        assert line_with(text, "2 ")[4:7] == ["f7+13", "α=0.8", "clamped"]
        assert "#2 SALVE suppress f7+13 α=0.8 clamped" in text  # ↓ selected the second edit

    assert snap_compare(app_for(stack_folder), terminal_size=SIZE, run_before=run_before)


def test_edit_stack_loading_snapshot(snap_compare, stack_folder: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The screen paints its loading notice (the load pattern of every screen) before the worker
    that lists the edits has finished; the keys that change the stack wait for it."""
    gate = threading.Event()
    real = core.workflow.edits.edit_stack

    def gated(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        wait_or_cancelled(gate)
        return real(*args, **kwargs)

    monkeypatch.setattr(core.workflow.edits, "edit_stack", gated)

    async def run_before(pilot) -> None:  # noqa: ANN001
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, DashboardScreen))
        await pilot.press("s")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, EditStackScreen))
        await pilot.pause()
        screen = pilot.app.screen
        assert screen.stack is None and not screen.loaded
        notice = screen.query_one("#loading-notice")
        assert notice.display and "loading the edit stack…" in str(notice.render())

    app = app_for(stack_folder)
    try:
        assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
    finally:
        gate.set()


def test_compare_edits_snapshot(snap_compare, stack_folder: Path) -> None:
    async def run_before(pilot) -> None:  # noqa: ANN001
        await open_stack(pilot)
        await pilot.press("v", "down", "down", "v")
        await pilot.pause()
        text = screen_text(pilot.app)
        assert "#1 SALVE suppress f1 α=2 linear   vs   #3 SALVE enhance f19 α=1.5 linear" in text
        assert line_with(text, "circle")[1:] == ["100.0%", "83.3%", "-16.7", "100.0%", "±0.0"]

    assert snap_compare(app_for(stack_folder), terminal_size=SIZE, run_before=run_before)


def test_job_log_snapshot(snap_compare, stack_folder: Path) -> None:
    path = stack_folder / "synth.h5"
    append_job_log(path, {"job": "run all", "status": "failed", "started": FIXED_TIME,
                          "ended": FIXED_TIME + 3, "elapsed": 3.0,
                          "error": "no folder at /data/cifar; pass --data-path",
                          "details": "Traceback (most recent call last):\n  ...\nFileNotFoundError",
                          "lines": [["22:13:20", "job 'run all' started", "bold"],
                                    ["22:13:23", "job 'run all' failed: no folder", "bold red"]]})
    append_job_log(path, {"job": "rerun sae", "status": "cancelled", "started": FIXED_TIME + 60,
                          "ended": FIXED_TIME + 90, "elapsed": 30.0, "error": "", "details": "",
                          "lines": [["22:14:20", "stage sae: epoch 1/300", "cyan"]]})

    async def run_before(pilot) -> None:  # noqa: ANN001
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, DashboardScreen))
        await pilot.press("l")
        await wait_for(pilot, lambda: getattr(pilot.app.screen, "loaded", False), what="the job log")
        await pilot.pause()
        text = screen_text(pilot.app)
        assert "2 job(s) logged, 1 failed" in text
        assert "error: no folder at /data/cifar" in text and "rerun sae cancelled after 30s" in text

    assert snap_compare(app_for(stack_folder), terminal_size=SIZE, run_before=run_before)
