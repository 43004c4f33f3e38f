"""Quality gates (core.workflow.quality): hand-worked thresholds and a real tiny session."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.store.session import Session, copy_session
from core.workflow.quality import (
    check_backbone,
    check_baseline,
    check_rankings,
    check_sae,
    per_class_test_accuracy,
    record_warnings,
    session_warnings,
)
from salve_tui.cli.main import main


def test_backbone_near_chance_threshold_is_halfway() -> None:
    # 10 classes: chance .1, warn below .1 + .5·.9 = .55 (the ViT at 35% warns).
    (w,) = check_backbone(0.35, 10)
    assert w.code == "backbone_near_chance" and w.value == 0.35
    assert w.threshold == pytest.approx(0.55)
    assert check_backbone(0.55, 10) == []


def test_sae_gates() -> None:
    codes = {w.code: w for w in check_sae(hidden=64, l0=55, dead=20)}
    assert set(codes) == {"sae_dense", "sae_many_dead"}  # no gate on the width (undercomplete is fine)
    assert codes["sae_dense"].value == pytest.approx(55 / 64)
    assert codes["sae_many_dead"].value == pytest.approx(20 / 64)
    assert "normalised" in codes["sae_dense"].message
    assert check_sae(hidden=2048, l0=100, dead=10) == []
    assert check_sae(hidden=64, l0=32, dead=16) == []  # exactly at the thresholds: no warning


def test_dense_advice_skips_normalising_normalised_activations() -> None:
    (w,) = check_sae(hidden=64, l0=55, dead=0, normalized=True)
    assert w.code == "sae_dense" and "normalis" not in w.message and "raise λ" in w.message


def test_alpha_crit_gate_counts_total_ablation_roots() -> None:
    from core.workflow.quality import check_alpha_crit, refresh_alpha_crit_warnings

    block = {"suppress-clamped": {
        "star": {"total_ablation": 97, "qualifying_numerical": 3, "n_samples": 100},
        "moon": {"total_ablation": 10, "qualifying_numerical": 10, "n_samples": 20},  # not more: fine
    }, "suppress-linear": {"moon": {"total_ablation": 0, "qualifying_numerical": 20, "n_samples": 20}}}
    (w,) = check_alpha_crit(block)
    assert w.code == "alpha_crit_total_ablation" and "star 97/100" in w.message and "moon" not in w.message
    assert w.value == pytest.approx(0.97)
    assert check_alpha_crit({}) == [] and check_alpha_crit(None) == []
    stored = [{"code": "weak_dominance"}, {"code": "alpha_crit_total_ablation", "message": "old"}]
    refreshed = refresh_alpha_crit_warnings(stored, block)
    assert [r["code"] for r in refreshed] == ["weak_dominance", "alpha_crit_total_ablation"]
    assert "star 97/100" in refreshed[1]["message"]
    assert [r["code"] for r in refresh_alpha_crit_warnings(stored, {})] == ["weak_dominance"]


def test_rankings_gates_shared_and_weak() -> None:
    # class 0 and 1 share f0; class 2: top 1.0 vs second .8 → ratio 1.25 < 1.5.
    M = np.array([[3.0, 0.1, 0.0], [-2.0, 0.5, 0.0], [0.0, 0.8, -1.0]])
    codes = {w.code: w for w in check_rankings(M, ["a", "b", "c"])}
    assert codes["shared_dominant"].value == 2 and "f0: a, b" in codes["shared_dominant"].message
    assert codes["weak_dominance"].value == pytest.approx(1.25)
    assert "c 1.25×" in codes["weak_dominance"].message


def test_baseline_gate() -> None:
    logits = np.array([[1, 0], [1, 0], [1, 0], [0, 1]], dtype=float)
    labels = np.array([0, 0, 1, 1])
    acc = per_class_test_accuracy(logits, labels, 2)
    assert acc.tolist() == [1.0, 0.5]
    assert check_baseline(acc, ["a", "b"]) == []
    (w,) = check_baseline(np.array([1.0, 0.05]), ["a", "b"])
    assert w.code == "already_suppressed" and w.value == 1


def test_session_warnings_recorded_and_in_info(tmp_path: Path, built_session_path: Path, capsys) -> None:
    path = tmp_path / "tiny.h5"
    copy_session(built_session_path, path)
    with Session.open(path) as session:
        warnings = session_warnings(session)
        # The tiny session: 1 epoch on 80 images (near chance).
        codes = {w.code for w in warnings}
        assert "backbone_near_chance" in codes and "sae_not_overcomplete" not in codes
        record_warnings(session)
        assert len(session.summary()["warnings"]) == len(warnings)
    assert main(["info", str(path), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert {w["code"] for w in payload["warnings"]} == codes
    assert all({"code", "value", "threshold", "message"} <= set(w) for w in payload["warnings"])
    assert main(["info", str(path)]) == 0
    assert "⚠ backbone_near_chance" in capsys.readouterr().out


async def test_dashboard_and_sessions_list_show_the_warnings(tmp_path: Path, built_session_path: Path) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from test_tui_helpers import wait_for
    from textual.widgets import Static

    from salve_tui.app.app import SalveApp
    from salve_tui.app.screens.dashboard import DashboardScreen

    folder = tmp_path / "sessions"
    folder.mkdir()
    copy_session(built_session_path, folder / "tiny.h5")
    with Session.open(folder / "tiny.h5") as session:
        n = len(record_warnings(session))
    app = SalveApp(sessions_folder=folder)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        detail = str(app.screen.query_one("#session-detail", Static).render())
        assert f"⚠ {n} quality warning(s)" in detail
    app = SalveApp(sessions_folder=folder, start_session="tiny")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), 10, "the dashboard")
        await pilot.pause()
        line = app.screen.query_one("#quality", Static)
        assert line.display and "backbone_near_chance" in str(line.render())


def test_selectivity_gates_by_hand() -> None:
    from core.workflow.quality import check_selectivity, poor_classes

    good = {"classes": 10, "checked": 10, "windows": 8, "no_window": ["a", "b"], "controls_fail": ["c"]}
    assert check_selectivity(good) == []  # 8/10 windows and 1/10 failing controls: at the limits
    assert poor_classes(good) == {"a", "b", "c"} and poor_classes(None) is None
    bad = {"classes": 10, "checked": 10, "windows": 7, "no_window": ["a", "b", "d"], "controls_fail": ["c", "e"]}
    codes = {w.code: w for w in check_selectivity(bad)}
    assert codes["few_selective_windows"].value == pytest.approx(0.7) and "7/10" in codes["few_selective_windows"].message
    assert codes["controls_not_specific"].value == pytest.approx(0.2) and "c, e" in codes["controls_not_specific"].message
    assert check_selectivity({"checked": 0}) == [] and check_selectivity(None) == []


def test_weak_dominance_reported_only_for_poor_classes_once_checked() -> None:
    M = np.array([[1.0, 0.8, 0.0], [0.0, 1.0, 0.9], [0.0, 0.1, 3.0]])  # a 1.25×, b 1.11×, c fine
    (unchecked,) = check_rankings(M, ["a", "b", "c"])
    assert "a 1.25×" in unchecked.message and "b 1.11×" in unchecked.message
    (checked,) = check_rankings(M, ["a", "b", "c"], poor={"b"})
    assert "b 1.11×" in checked.message and "a 1.25×" not in checked.message
    assert check_rankings(M, ["a", "b", "c"], poor=set()) == []


def test_selectivity_check_matches_the_sweeps(tmp_path: Path, built_session_path: Path) -> None:
    """The pipeline's check (stored after rankings) counts what `salve sweep` reports per class."""
    from core.workflow.inputs import load_inputs
    from core.workflow.selectivity import selectivity_report
    from core.workflow.sweeps import run_sweep

    path = tmp_path / "tiny.h5"
    copy_session(built_session_path, path)
    with Session.open(path) as session:
        check = session.summary()["selectivity_check"]  # recorded by the pipeline
        x = load_inputs(session)
        windows, fails = 0, []
        for c in range(x.num_classes):
            report = selectivity_report(session, run_sweep(session, c, record=False, inputs=x), x, train=False)
            windows += report["has_selective_window"]
            held = [v["target_accuracy_at_main_alpha50"] for v in report["controls"].values()]
            if report["target_alpha50"] is not None and not all(v is not None and v >= 0.5 for v in held):
                fails.append(x.class_names[c])
        assert check["checked"] == x.num_classes and check["windows"] == windows
        assert check["controls_fail"] == fails
        assert check["rankings_updated"] == session.stages()["rankings"].updated
