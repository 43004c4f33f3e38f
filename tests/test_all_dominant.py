"""Sweeps and α_crit of every dominant feature as one job (core.workflow.all_dominant)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from core.config import SAEConfig, demo_config
from core.jobs import CancelToken, JobCancelled
from core.store.session import Session, copy_session
from core.workflow.all_dominant import recorded_classes, run_all_dominant
from core.workflow.alpha_crit import load_alpha_crit, run_alpha_crit
from core.workflow.inputs import clear_input_cache, load_inputs
from core.workflow.pipeline import run_rankings
from core.workflow.sweeps import list_sweeps, load_sweep, run_sweep
from core.workflow.synthetic import SyntheticSpec, build_synthetic_session
from salve_tui.cli.main import main

C = 8


@pytest.fixture(scope="module")
def ranked_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("alldom") / "synth.h5"
    config = demo_config("synth")
    config.sae = SAEConfig(hidden=32)
    build_synthetic_session(path, SyntheticSpec(n_classes=C, dim=16, hidden=32, n_train=240, n_test=120,
                                                noise=0.8), config)
    with Session.open(path) as session:
        run_rankings(session)
    return path


@pytest.fixture
def path(tmp_path: Path, ranked_path: Path) -> Path:
    clear_input_cache()
    copy = tmp_path / "synth.h5"
    copy_session(ranked_path, copy)
    return copy


def stored_results(path: Path) -> tuple[dict, list]:
    with Session.open(path, read_only=True) as session:
        sweeps = {key: load_sweep(session, key) for key in list_sweeps(session)}
        crit = load_alpha_crit(session)
    return sweeps, crit


def assert_same_records(a: Path, b: Path) -> None:
    sweeps_a, crit_a = stored_results(a)
    sweeps_b, crit_b = stored_results(b)
    assert sorted(sweeps_a) == sorted(sweeps_b) and len(sweeps_a) == C
    for key, curve in sweeps_a.items():
        other = sweeps_b[key]
        assert curve.features == other.features and curve.target_class == other.target_class
        for name in ("alphas", "per_class_accuracy", "target_prediction"):
            np.testing.assert_array_equal(getattr(curve, name).numpy(), getattr(other, name).numpy())
    assert [(r.target_class, r.feature) for r in crit_a] == [(r.target_class, r.feature) for r in crit_b]
    assert len(crit_a) == C
    for r, other in zip(crit_a, crit_b, strict=True):
        for name in ("sample_index", "analytic", "numerical", "z", "S"):
            np.testing.assert_array_equal(getattr(r, name).numpy(), getattr(other, name).numpy())
        assert r.alpha50 == other.alpha50


def per_class_runs(path: Path) -> None:
    """What `salve sweep --class c` does, class after class."""
    with Session.open(path) as session:
        x = load_inputs(session)
        for c in range(C):
            curve = run_sweep(session, c, inputs=x)
            run_alpha_crit(session, c, curve.features[0], "suppress", "linear", curve=curve, inputs=x)


def test_the_job_records_exactly_what_per_class_runs_record(path: Path, tmp_path: Path) -> None:
    reference = tmp_path / "per_class.h5"
    copy_session(path, reference)
    per_class_runs(reference)
    updates = []
    with Session.open(path) as session:
        outcome = run_all_dominant(session, progress=updates.append, batch_classes=3)
    assert sorted(outcome.computed) == list(range(C)) and outcome.skipped == []
    assert outcome.commits == 3  # 3 + 3 + 2 classes: one transaction per batch
    assert updates[-1].done == updates[-1].total == C
    assert_same_records(path, reference)
    with Session.open(path, read_only=True) as session:
        x = load_inputs(session)
        summary = session.summary()["alpha_crit"]["suppress-linear"]
        assert sorted(summary) == sorted(x.class_names)
        assert [summary[n]["feature"] for n in x.class_names] == x.dominant.tolist()


def test_cancel_keeps_finished_classes_and_a_rerun_completes_the_rest(path: Path, tmp_path: Path) -> None:
    reference = tmp_path / "full.h5"
    copy_session(path, reference)
    with Session.open(reference) as session:
        run_all_dominant(session)
    token = CancelToken()

    def progress(update) -> None:
        if update.done >= 3:
            token.cancel()

    with Session.open(path) as session, pytest.raises(JobCancelled, match="3 of 8 classes are recorded"):
        run_all_dominant(session, progress=progress, cancel=token, batch_classes=2)
    with Session.open(path) as session:
        assert recorded_classes(session, load_inputs(session), "suppress", "linear") == {0, 1, 2}
        outcome = run_all_dominant(session)
    assert outcome.skipped == [0, 1, 2] and outcome.computed == list(range(3, C))
    assert_same_records(path, reference)


def test_records_older_than_the_rankings_are_recomputed(path: Path) -> None:
    with Session.open(path) as session:
        run_all_dominant(session)
        run_rankings(session)  # new rankings: the stored curves may belong to other features
        clear_input_cache()
        outcome = run_all_dominant(session)
    assert outcome.skipped == [] and len(outcome.computed) == C


def test_cli_sweep_all_dominant(path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sweep", str(path), "--all-dominant", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["computed"] == C and payload["skipped"] == 0 and payload["classes"] == C
    assert main(["sweep", str(path), "--all-dominant"]) == 0
    out = capsys.readouterr().out
    assert f"0 computed, {C} already recorded" in out
    assert main(["sweep", str(path), "--all-dominant", "--class", "1"]) == 2
    assert "--all-dominant" in capsys.readouterr().err


def test_under_a_small_budget_the_sweeps_run_in_row_chunks_with_the_same_records(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from core.config import MEMORY_BUDGET_ENV
    from core.workflow.sweeps import sweep_chunk_rows

    config = demo_config("big")
    config.sae = SAEConfig(hidden=32)
    spec = SyntheticSpec(n_classes=C, dim=16, hidden=32, n_train=240, n_test=600, noise=0.8)
    roomy = build_synthetic_session(tmp_path / "roomy.h5", spec, config)
    with Session.open(roomy) as session:
        run_rankings(session)
    tight = tmp_path / "tight.h5"
    copy_session(roomy, tight)
    with Session.open(roomy) as session:
        run_all_dominant(session)
    monkeypatch.setenv(MEMORY_BUDGET_ENV, "1M")
    assert sweep_chunk_rows(C, 200) < 150  # 600 test rows: five chunks or more
    clear_input_cache()
    with Session.open(tight) as session:
        run_all_dominant(session)
    assert_same_records(tight, roomy)
