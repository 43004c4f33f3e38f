"""Results say what they were computed from; a stage rerun makes them read as out of date
(core.workflow.provenance), in the CLI and on the TUI screens that show them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_tui_helpers import wait_for

from core.store.session import Session, StageState, copy_session
from core.workflow.alpha_crit import run_alpha_crit
from core.workflow.edits import build_spec, record_edit
from core.workflow.inputs import clear_input_cache, load_inputs
from core.workflow.pipeline import run_stage
from core.workflow.provenance import staleness, when
from core.workflow.results import stale_results
from core.workflow.sweeps import run_sweep
from salve_tui.cli.main import main


@pytest.fixture
def folder(tmp_path: Path, built_session_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    clear_input_cache()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SALVE_TUI_IMAGES", "halfblock")
    sessions = tmp_path / "sessions"
    sessions.mkdir()
    copy_session(built_session_path, sessions / "tiny.h5")
    return sessions


def record_results(path: Path) -> float:
    """α_crit of every class, one sweep and one edit; returns the SAE run they read."""
    with Session.open(path) as session:
        sae_run = session.stages()["sae"].updated
        run_alpha_crit(session)
        run_sweep(session, 0, n_alphas=20)
        record_edit(session, build_spec(load_inputs(session), "salve", None, 1, "suppress", 2.0))
        index = session.read_json("control/alpha_crit_index")
        assert {e["computed_from"]["sae"] for e in index["suppress-linear"].values()} == {sae_run}
        assert stale_results(session) == []
    return sae_run


def test_rerunning_the_sae_marks_results_stale_until_they_are_recomputed(folder: Path) -> None:
    path = folder / "tiny.h5"
    old_sae = record_results(path)
    with Session.open(path) as session:
        run_stage(session, "sae")
        new_sae = session.stages()["sae"].updated
        found = stale_results(session)
    assert new_sae != old_sae
    kinds = sorted({r.kind for r in found})
    assert kinds == ["alpha-crit", "edit", "sweep"]
    crit = [r for r in found if r.kind == "alpha-crit"]
    n = len(crit)  # every class of the session (all have test samples)
    assert n >= 3 and all(r.why.stage == "sae" for r in found)
    assert crit[0].message == (
        f"computed with the SAE of {when(old_sae)}; the SAE was retrained at {when(new_sae)}: run the "
        "pipeline (`salve run tiny`), then rerun α_crit (`salve alpha-crit tiny`)")  # rankings is stale now

    with Session.open(path) as session:
        run_stage(session, "rankings")
        run_alpha_crit(session, 0)  # after the rerun: class 0 is current again
        found = stale_results(session)
    crit = {r.key: r for r in found if r.kind == "alpha-crit"}
    assert len(crit) == n - 1 and not any(k.startswith("suppress-linear/c0-") for k in crit)
    assert all(r.message.endswith(": rerun α_crit (`salve alpha-crit tiny`)") for r in crit.values())
    assert [r.kind for r in found].count("sweep") == 1


def test_cli_lists_out_of_date_results_as_warnings(folder: Path, capsys: pytest.CaptureFixture) -> None:
    path = folder / "tiny.h5"
    record_results(path)
    with Session.open(path) as session:
        run_stage(session, "sae")
        run_stage(session, "rankings")
    capsys.readouterr()
    assert main(["alpha-crit", str(path), "--class", "0"]) == 0
    out = capsys.readouterr().out
    with Session.open(path, read_only=True) as session:
        n = len(session.read_json("class_names"))
    assert f"warning: {n - 1} α_crit results out of date: computed with the SAE of " in out
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"warning: {n - 1} α_crit results out of date" in out
    assert "warning: 1 sweep out of date" in out and "warning: 1 recorded edit out of date" in out
    assert main(["info", str(path), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert sorted(r["kind"] for r in shown["stale_results"]) == ["alpha-crit"] * (n - 1) + ["edit", "sweep"]
    assert main(["edits", str(path)]) == 0
    assert "warning: 1 recorded edit out of date: computed with the SAE of" in capsys.readouterr().out


def test_results_without_a_record_are_judged_by_when_they_were_saved() -> None:
    stages = {"backbone": StageState("done", updated=10.0), "activations": StageState("done", updated=20.0),
              "sae": StageState("done", updated=30.0), "rankings": StageState("done", updated=40.0)}
    assert staleness(stages, {"recorded_at": 50.0}, "rerun it") is None  # saved after every run
    assert staleness(stages, {}, "rerun it") is None  # nothing says when: not flagged
    stages["sae"] = StageState("done", updated=60.0)
    why = staleness(stages, {"recorded_at": 50.0}, "rerun it")
    assert why is not None and why.unknown_provenance and why.stage == "sae"
    assert why.message.startswith(f"unknown provenance (saved {when(50.0)}") and "retrained at" in why.message
    # with a record, a later save time does not hide a changed stage, and the record wins
    recorded = {"recorded_at": 70.0, "computed_from": {"backbone": 10.0, "activations": 20.0, "sae": 30.0,
                                                        "rankings": 40.0}}
    assert staleness(stages, recorded, "rerun it").stage == "sae"
    stages["activations"] = StageState("stale", updated=80.0)
    why = staleness(stages, recorded, "rerun it", session_name="s")
    assert why.stage == "activations" and "the cached activations are now stale" in why.message
    assert why.message.endswith("now stale: run the pipeline (`salve run s`), then rerun it")


async def test_alpha_crit_screen_shows_a_warning_line_when_the_sae_was_retrained(folder: Path) -> None:
    from salve_tui.app.app import SalveApp
    from salve_tui.app.screens.analysis_alpha_crit import AlphaCritScreen
    from salve_tui.app.screens.base import StaleNotice
    from salve_tui.app.screens.dashboard import DashboardScreen

    path = folder / "tiny.h5"
    record_results(path)
    with Session.open(path) as session:
        run_stage(session, "sae")
        run_stage(session, "rankings")
        new_sae = session.stages()["sae"].updated
    app = SalveApp(sessions_folder=folder, start_session="tiny")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), what="dashboard")
        await pilot.press("k")
        await wait_for(pilot, lambda: isinstance(app.screen, AlphaCritScreen) and app.screen.loaded
                       and app.screen.query(StaleNotice), what="α_crit with its warning")
        notice = app.screen.query_one(StaleNotice)
        text = str(notice.render())
        assert text.startswith("warning: ") and text.endswith(
            " α_crit results out of date: the SAE was retrained at "
            f"{when(new_sae, new_sae)}, after they were computed; recompute them")
        assert notice.display
        await pilot.press("r")  # recompute every class: the warning goes
        await wait_for(pilot, lambda: not app.screen.query_one(StaleNotice).display and not app.jobs.busy,
                       what="warning cleared", timeout=60)
