"""A rankings (or SAE) rerun marks every stored result computed from the older run as out of
date, with what reruns it, wherever the result is shown: ``salve info`` (text and JSON), the
dashboard, the α_crit screen and the edit stack (core.workflow.results drives all of them)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_provenance import folder  # noqa: F401 - the fixture: a copy of the built session
from test_tui_helpers import wait_for

from core.store.session import Session
from core.workflow.alpha_crit import run_alpha_crit
from core.workflow.edits import build_spec, record_edit
from core.workflow.inputs import load_inputs
from core.workflow.pipeline import run_stage
from core.workflow.provenance import when
from core.workflow.results import stale_results
from core.workflow.sweeps import run_sweep
from salve_tui.cli.main import main


def rerun_rankings(path: Path) -> tuple[float, float]:
    """α_crit of class 0, one sweep and one edit, then a rankings rerun; returns the old and
    new rankings runs."""
    with Session.open(path) as session:
        old = session.stages()["rankings"].updated
        run_alpha_crit(session, 0)
        run_sweep(session, 0, n_alphas=10)
        record_edit(session, build_spec(load_inputs(session), "salve", None, 1, "suppress", 2.0))
        assert stale_results(session) == []
        run_stage(session, "rankings")
        new = session.stages()["rankings"].updated
    assert new != old
    return old, new


def test_a_rankings_rerun_marks_alpha_crit_sweeps_and_edits_in_salve_info(
        folder: Path, capsys: pytest.CaptureFixture) -> None:  # noqa: F811
    path = folder / "tiny.h5"
    old, new = rerun_rankings(path)
    capsys.readouterr()
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    why = f"computed with the rankings of {when(old)}; the rankings were recomputed at {when(new)}"
    assert f"warning: 1 α_crit result out of date: {why}: rerun α_crit (`salve alpha-crit tiny`)" in out
    assert f"warning: 1 sweep out of date: {why}: rerun the sweep (`salve sweep tiny`)" in out
    assert f"warning: 1 recorded edit out of date: {why}: " in out
    assert main(["info", str(path), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)["stale_results"]
    assert sorted((r["kind"], r["stage"]) for r in shown) == [
        ("alpha-crit", "rankings"), ("edit", "rankings"), ("sweep", "rankings")]
    assert all(r["rerun"] for r in shown)
    edit = next(r for r in shown if r["kind"] == "edit")
    assert edit["rerun"] in edit["message"] and "salve edit tiny" in edit["rerun"]


async def test_a_rankings_rerun_is_shown_on_the_dashboard_alpha_crit_and_edit_stack(
        folder: Path) -> None:  # noqa: F811
    from salve_tui.app.app import SalveApp
    from salve_tui.app.screens.analysis_alpha_crit import AlphaCritScreen
    from salve_tui.app.screens.analysis_edits import EditStackScreen
    from salve_tui.app.screens.base import StaleNotice
    from salve_tui.app.screens.dashboard import DashboardScreen

    path = folder / "tiny.h5"
    _, new = rerun_rankings(path)
    since = f"the rankings were recomputed at {when(new, new)}"
    app = SalveApp(sessions_folder=folder, start_session="tiny")
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen) and app.screen.query(StaleNotice),
                       what="dashboard with its warning")
        text = str(app.screen.query_one(StaleNotice).render())
        assert text == ("warning: 1 α_crit result (k), 1 sweep (`salve sweep tiny`), 1 recorded edit (s) "
                        f"out of date ({since}, after they were computed); recompute them")
        for screen, key in ((AlphaCritScreen, "k"), (EditStackScreen, "s")):
            await pilot.press(key)
            await wait_for(pilot, lambda screen=screen: isinstance(app.screen, screen) and app.screen.loaded
                           and app.screen.query(StaleNotice), what=f"{screen.__name__} with its warning")
            text = str(app.screen.query_one(StaleNotice).render())
            assert since in text and text.endswith("recompute them"), text
            await pilot.press("escape")
