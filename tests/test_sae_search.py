"""The SAE width/λ search (issue 19 item 3): grid, budget, choice rule, a planted width, resume."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from core.config import demo_config
from core.discover import sae_search as search
from core.discover.sae_search import Candidate
from core.jobs import CancelToken, JobCancelled
from core.store.session import Session
from core.workflow.sae_search_session import GROUP_PREFIX, run_search
from core.workflow.synthetic import SyntheticSpec, build_synthetic_session

C = 8  # classes, each along its own direction: fewer than C latents cannot give each its own
GRID = [Candidate(h, lam) for h in (4, 32) for lam in (0.1, 0.3)]


def row(**values) -> dict:
    base = {"hidden": 64, "l1_coeff": 0.1, "ev_test": 0.9, "selective_windows": 5, "controls_ok": 5,
            "distinct_dominants": 8, "dominance_ratio_median": 2.0}
    return {**base, **values}


def test_choice_rule_by_hand() -> None:
    rows = [
        row(hidden=16, selective_windows=9, ev_test=0.3),  # most windows but below the EV floor
        row(hidden=64, selective_windows=7, controls_ok=6),
        row(hidden=32, selective_windows=7, controls_ok=6),  # ties with the above: smaller width wins
        row(hidden=128, selective_windows=7, controls_ok=5, distinct_dominants=10),
    ]
    assert search.choose(rows) == 2
    rows[1]["dominance_ratio_median"] = 2.5  # a stronger dominance ratio now beats the smaller width
    assert search.choose(rows) == 1
    assert search.choose([row(ev_test=0.1, hidden=8), row(ev_test=0.2, hidden=16, selective_windows=6)]) == 1
    with pytest.raises(ValueError, match="no candidates"):
        search.choose([])


def test_default_grid_and_budget() -> None:
    grid = search.default_grid(512, 10, 0.01)
    assert sorted({c.hidden for c in grid}) == [32, 64, 128, 256]
    assert [c.l1_coeff for c in grid[:3]] == pytest.approx([0.01 / 3, 0.01, 0.03])
    assert {c.hidden for c in search.default_grid(64, 40, 0.1)} == {48}  # never fewer latents than classes
    cfg = replace(demo_config().sae, hidden=64, epochs=300)
    epochs = search.search_epochs(cfg, grid)  # Σh = 3·480 = 1440: 2.5·64·300/1440 = 33.3
    assert epochs == 33
    assert sum(c.hidden for c in grid) * epochs <= search.TRAIN_BUDGET * 64 * 300
    assert search.candidate_config(cfg, 128, epochs).lr_step_epochs == round(cfg.lr_step_epochs * 33 / 300)
    assert search.within_budget(grid, cfg) == grid  # 1440 latents fit 2.5·64·300
    short = replace(cfg, epochs=5)  # budget 2.5·64·5 = 800 < Σh = 1440: h = 256 goes (Σh = 672)
    kept = search.within_budget(grid, short)
    assert sorted({c.hidden for c in kept}) == [32, 64, 128] and len(kept) == 9
    assert sum(c.hidden for c in kept) * search.search_epochs(short, kept) <= search.TRAIN_BUDGET * 64 * 5
    assert {c.hidden for c in search.within_budget(grid, replace(cfg, epochs=1))} == {32}  # the narrowest stays


def planted_session(tmp_path: Path, n_train: int = 480, epochs: int = 200) -> Path:
    spec = SyntheticSpec(n_classes=C, dim=32, hidden=16, n_train=n_train, n_test=240, seed=1, noise=0.1)
    cfg = demo_config("planted")
    cfg.sae = replace(cfg.sae, hidden=16, epochs=epochs, lr_step_epochs=epochs // 5, l1_coeff=0.1, lr=1e-2)
    return build_synthetic_session(tmp_path / "planted.h5", spec, cfg, with_sae=False)


def test_search_picks_the_planted_width_records_and_resumes(tmp_path: Path) -> None:
    path = planted_session(tmp_path)
    cancel = CancelToken()
    seen = []

    def progress(p) -> None:  # cancel once the first width is done: the second width is cut short
        seen.append(p.message)
        if p.message.startswith("width 32"):
            cancel.cancel()

    with Session.open(path) as session, pytest.raises(JobCancelled):
        run_search(session, progress, cancel, grid=GRID)
    with Session.open(path) as session:  # the finished width was committed, nothing else changed
        kept = session.read_json(f"{GROUP_PREFIX}/h4")
        assert kept is not None and session.read_json(f"{GROUP_PREFIX}/h32") is None
        assert "sae_search" not in session.summary() and session.config.sae.hidden == 16
        again: list[str] = []
        record = run_search(session, lambda p: again.append(p.message), grid=GRID)
        rows = record["rows"]
        assert again and not any(m.startswith("width 4") for m in again)  # resumed: width 4 not retrained
        assert any(m.startswith("width 4") for m in seen)
        assert [r["ev_test"] for r in rows[:2]] == [r["ev_test"] for r in kept["rows"]]
        assert all(r["distinct_dominants"] <= 4 for r in rows[:2])  # 4 latents: at most 4 owners
        assert record["chosen"]["hidden"] == 32  # the planted structure needs ≥ C = 8 latents
        assert rows[record["chosen_index"]]["selective_windows"] > max(r["selective_windows"] for r in rows[:2])
        assert sum(r["chosen"] for r in rows) == 1
        assert record["cost"]["work_vs_one_run"] <= search.TRAIN_BUDGET
        # the choice is applied and recorded; the partial widths are gone
        assert session.config.sae.hidden == 32
        assert session.config.sae.l1_coeff == record["chosen"]["l1_coeff"]
        assert session.summary()["sae_search"]["rows"] == rows
        assert session.read_json(f"{GROUP_PREFIX}/h4") is None


def test_search_refuses_clearly_above_the_memory_budget(tmp_path: Path, monkeypatch) -> None:
    path = planted_session(tmp_path, n_train=8000)  # ~5.7 MB to hold in memory
    monkeypatch.setenv("SALVE_MEMORY_BUDGET", "1M")
    with Session.open(path) as session, pytest.raises(ValueError, match="does not stream.*SALVE_MEMORY_BUDGET"):
        run_search(session, grid=GRID)
    with Session.open(path, read_only=True) as session:
        assert "sae_search" not in session.summary()


def test_search_figure_is_written(tmp_path: Path) -> None:
    rows = [row(hidden=16, n_classes=C), row(hidden=32, n_classes=C)]
    record = {"rows": rows, "chosen_index": 1, "epochs": 10, "rule": search.RULE}
    out = search.save_search_figure(record, tmp_path / "search.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert np.isfinite(rows[0]["ev_test"])


async def test_tui_sae_screen_runs_the_search_and_shows_the_table(tmp_path: Path) -> None:
    from test_tui_helpers import wait_for

    from salve_tui.app.app import SalveApp
    from salve_tui.app.screens.dashboard import DashboardScreen
    from salve_tui.app.screens.sae_training import SAETrainingScreen

    planted_session(tmp_path, epochs=30)
    app = SalveApp(sessions_folder=tmp_path, start_session="planted")
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), 10)
        await pilot.press("t")
        await wait_for(pilot, lambda: isinstance(app.screen, SAETrainingScreen) and app.screen.loaded)
        screen = app.screen
        assert not screen.query_one("#sae-search").display  # no search yet, nothing shown
        await pilot.press("w")
        await wait_for(pilot, lambda: screen.search_record is not None, what="the search job")
        text = str(screen.query_one("#sae-search").render())
        chosen = screen.search_record["chosen"]
        assert f"chose h={chosen['hidden']}" in text and "rule:" in text
        assert text.count("\n  ") >= len(screen.search_record["rows"])  # one line per candidate
    with Session.open(tmp_path / "planted.h5", read_only=True) as session:
        assert session.summary()["sae_search"]["chosen"] == chosen


def test_cli_search_info_text_and_json_and_new_flags(tmp_path: Path) -> None:
    import json

    from test_cli_bad_values import run_cli

    planted_session(tmp_path, epochs=30)
    folder = ["--sessions-dir", str(tmp_path)]
    rc, out = run_cli(["sae", "search", "planted", *folder, "--figure", str(tmp_path / "s.png")])
    assert rc == 0 and "SAE width search: chose h=" in out and (tmp_path / "s.png").exists()
    rc, text = run_cli(["info", "planted", *folder])
    assert rc == 0 and "SAE width search: chose h=" in text and "rule: among candidates" in text
    rc, raw = run_cli(["info", "planted", "--json", *folder])
    record = json.loads(raw)["sae_search"]
    assert sum(r["chosen"] for r in record["rows"]) == 1
    assert text.count("→") == 1  # the chosen row is marked in the text table
    rc, out = run_cli(["new", "auto", "--sae-width", "auto", "--sae-early-stop", "20", *folder])
    assert rc == 0
    rc, out = run_cli(["new", "bad", "--sae-width", "wide", *folder])
    assert rc != 0 and "--sae-width" in out and "Traceback" not in out
    with Session.open(tmp_path / "auto.h5", read_only=True) as session:
        assert session.config.sae.auto_width and session.config.sae.early_stop_patience == 20


def test_auto_width_runs_the_search_before_the_sae_stage(tmp_path: Path) -> None:
    from core.workflow.pipeline import run_sae

    path = planted_session(tmp_path, epochs=30)
    with Session.open(path) as session, session.transaction() as tx:
        config = session.config
        tx.write_json("config", replace(config, sae=replace(config.sae, auto_width=True)).to_dict())
    with Session.open(path) as session:
        run_sae(session)
        record = session.summary()["sae_search"]
        sae = session.summary()["sae"]
        assert sae["hidden"] == record["chosen"]["hidden"] == session.config.sae.hidden
        assert sae["schedule"]["epochs_run"] == 30 and not sae["schedule"]["stopped_early"]
        assert session.read_arrays("sae/weights")["decoder.weight"].shape == (32, sae["hidden"])


@pytest.mark.slow
def test_kill_9_during_the_search_leaves_the_session_sound_and_a_rerun_gives_the_same_table(tmp_path: Path) -> None:
    """(The fast cancel-and-resume test above covers the same commit points in-process.)"""
    import shutil

    from test_fault_injection import assert_session_sound, salve

    planted_session(tmp_path / "prepared", epochs=120)
    runs = {}
    for label in ("whole", "killed"):
        shutil.copytree(tmp_path / "prepared", tmp_path / label)
    rc, out, took = salve(["sae", "search", "planted"], tmp_path / "whole")
    assert rc == 0, out
    salve(["sae", "search", "planted"], tmp_path / "killed", kill_after=0.6 * took)
    assert_session_sound(tmp_path / "killed" / "planted.h5")
    rc, out, _ = salve(["sae", "search", "planted"], tmp_path / "killed")
    assert rc == 0, out
    rc, out, _ = salve(["sae", "search", "planted"], tmp_path / "whole")  # a rerun searches the same grid
    assert rc == 0, out
    for label in ("whole", "killed"):
        with Session.open(tmp_path / label / "planted.h5", read_only=True) as session:
            runs[label] = [{k: v for k, v in r.items() if not k.endswith("seconds")}
                           for r in session.summary()["sae_search"]["rows"]]
    assert runs["killed"] == runs["whole"]
