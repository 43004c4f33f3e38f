"""Session-level control API (core.workflow: inputs, edits, sweeps, alpha_crit, robustness) and the control CLI commands, on a real tiny session."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from core.control.curves import per_class_accuracy
from core.control.edit import replay
from core.control.spec import EditSpec
from core.control.sweep import edit_effect
from core.store.session import Session, SessionError, copy_session
from core.workflow.alpha_crit import load_alpha_crit, run_alpha_crit
from core.workflow.edits import (
    build_spec,
    clear_edits,
    edited_head,
    list_edits,
    preview_edit,
    record_edit,
)
from core.workflow.inputs import load_inputs, resolve_class
from core.workflow.robustness import load_robustness, run_seed_robustness
from core.workflow.sweeps import list_sweeps, load_sweep, run_sweep, sweep_id
from salve_tui.cli.main import main


@pytest.fixture
def session_path(tmp_path: Path, built_session_path: Path) -> Path:
    path = tmp_path / "tiny.h5"
    copy_session(built_session_path, path)
    return path


@pytest.fixture
def session(session_path: Path):
    with Session.open(session_path) as s:
        yield s


def test_inputs_match_the_session_model(session: Session) -> None:
    x = load_inputs(session)
    stored = session.read_arrays("activations/test")
    # The head read without torch reproduces the logits cached while extracting activations.
    logits = (x.A @ x.W.T + x.b).numpy()
    np.testing.assert_allclose(logits, stored["logits"], rtol=1e-4, atol=1e-4)
    assert x.D.shape == (x.A.shape[1], session.config.sae.hidden)
    assert x.dominant.tolist() == session.read_array("rankings/dominant").tolist()
    assert x.class_names == session.read_json("class_names")
    assert load_inputs(session) is x  # cached: the TUI preview reloads nothing


def test_resolve_class_by_name_or_index() -> None:
    names = ["circle", "Square", "star"]
    assert resolve_class(names, "square") == 1
    assert resolve_class(names, "2") == 2
    assert resolve_class(names, 0) == 0
    with pytest.raises(ValueError, match="valid classes: 0=circle, 1=Square, 2=star"):
        resolve_class(names, "hexagon")
    with pytest.raises(ValueError, match="out of range"):
        resolve_class(names, "3")


def test_sweep_is_recorded_and_reloads_exactly(session: Session, session_path: Path) -> None:
    x = load_inputs(session)
    result = run_sweep(session, target_class=2)
    assert result.features == [x.dominant_feature(2)]
    # α = 0 is the unedited classifier.
    base = per_class_accuracy(x.labels, x.base_predictions, x.num_classes)
    torch.testing.assert_close(result.per_class_accuracy[:, 0], base, equal_nan=True)
    key = sweep_id(result)
    assert key == f"salve-f{result.features[0]}-suppress-linear-c2"
    with Session.open(session_path, read_only=True) as reader:
        assert key in list_sweeps(reader)
        loaded = load_sweep(reader, key)
    assert torch.equal(loaded.alphas, result.alphas)
    torch.testing.assert_close(
        loaded.per_class_accuracy, result.per_class_accuracy.double(), equal_nan=True
    )
    torch.testing.assert_close(
        loaded.target_prediction, result.target_prediction.double(), equal_nan=True
    )
    assert loaded.class_counts == result.class_counts


def test_baseline_sweeps_are_stored_side_by_side(session: Session) -> None:
    feature = load_inputs(session).dominant_feature(1)
    rome = run_sweep(session, target_class=1, method="rome")
    steer = run_sweep(session, target_class=1, method="steer", alphas=[0.0, 1.0, 2.0])
    salve = run_sweep(session, feature=feature, alphas=[0.0, 0.5])
    assert salve.target_class == load_inputs(session).feature_class(feature)
    ids = set(list_sweeps(session))
    assert {sweep_id(rome), sweep_id(steer), sweep_id(salve)} <= ids
    assert len(ids) == 3
    assert load_sweep(session, sweep_id(steer)).alphas.tolist() == [0, 1, 2]
    with pytest.raises(ValueError, match="only suppresses"):
        run_sweep(session, target_class=1, method="rome", mode="enhance")


def test_alpha_crit_recorded_with_summary(session: Session, session_path: Path) -> None:
    x = load_inputs(session)
    results = run_alpha_crit(session)
    assert [r.target_class for r in results] == sorted(set(x.labels.tolist()))
    for r in results:
        ok = torch.isfinite(r.analytic) & torch.isfinite(r.numerical)
        assert torch.equal(torch.isfinite(r.analytic), torch.isfinite(r.numerical))
        rel = (r.numerical[ok] - r.analytic[ok]).abs() / r.analytic[ok]
        assert rel.numel() == 0 or float(rel.max()) < 1e-4
    with Session.open(session_path, read_only=True) as reader:
        table = reader.summary()["alpha_crit"]["suppress-linear"]
        loaded = load_alpha_crit(reader)
    for r in results:
        row = table[x.class_names[r.target_class]]
        assert row["feature"] == int(x.dominant[r.target_class])
        assert row["qualifying"] == int(torch.isfinite(r.analytic).sum())
        assert row["n_samples"] == int((x.labels == r.target_class).sum())
    assert len(loaded) == len(results)
    for a, b in zip(loaded, results, strict=True):
        assert (a.target_class, a.feature, a.alpha50) == (b.target_class, b.feature, b.alpha50)
        torch.testing.assert_close(a.numerical, b.numerical, equal_nan=True)
        assert a.summary() == b.summary()


def test_recorded_edits_replay_exactly(session: Session, session_path: Path) -> None:
    x = load_inputs(session)
    first = build_spec(x, features=[3, 5], alpha=0.7, modulation="clamped")
    second = build_spec(x, "rome", target_class=4, alpha=-3.0)
    assert record_edit(session, first) == 0
    assert record_edit(session, second, note="baseline") == 1
    with Session.open(session_path, read_only=True) as reader:
        recorded = list_edits(reader)
        assert reader.summary()["edits"] == 2
    assert recorded == [first, second]
    W_replayed = replay(x.W, x.D, recorded)
    W_direct, b_direct = edited_head(x, [first, second])
    assert torch.equal(W_replayed, W_direct)
    assert torch.equal(b_direct, x.b)  # neither SALVE nor ROME touches the bias
    # ROME edits only its target row.
    W_first, _ = edited_head(x, first)
    changed = (W_direct != W_first).any(1)
    assert changed.tolist() == [c == 4 for c in range(x.num_classes)]
    clear_edits(session)
    assert list_edits(session) == []


def test_preview_matches_reference_and_writes_nothing(session_path: Path) -> None:
    before = session_path.read_bytes()
    with Session.open(session_path, read_only=True) as reader:
        x = load_inputs(reader)
        specs = [
            build_spec(x, target_class=0, alpha=3.0),
            build_spec(x, features=[1, 2], mode="enhance", alpha=2.0),
            build_spec(x, "steer", target_class=2, alpha=5.0),
        ]
        for spec in specs:
            fast = preview_edit(reader, spec)
            ref = edit_effect(x.A, x.labels, x.W, x.b, x.D, spec)
            torch.testing.assert_close(fast.accuracy_after, ref.accuracy_after, equal_nan=True)
            assert torch.equal(fast.confusion_after, ref.confusion_after)
            assert torch.equal(fast.confusion_before, ref.confusion_before)
        with pytest.raises(SessionError, match="read-only"):
            run_sweep(reader, target_class=0)
        run_sweep(reader, target_class=0, record=False)
    assert session_path.read_bytes() == before


def test_seed_robustness_reuses_the_session_seed(session: Session) -> None:
    x = load_inputs(session)
    results = run_seed_robustness(session, k=2, target_class=3, n_alphas=20)
    (r,) = results
    # Seed 0 with the session's SAE settings is the session's own SAE: same dominant feature.
    assert r.features_per_seed[0] == int(x.dominant[3])
    stored_decoders = session.read_array("control/robustness_sae/decoder.weight")
    assert stored_decoders.shape[0] == 2
    np.testing.assert_allclose(stored_decoders[0], x.D.numpy(), atol=1e-6)
    stack = torch.stack([s.per_class_accuracy for s in r.sweeps])
    torch.testing.assert_close(r.accuracy_mean, stack.mean(0), equal_nan=True)
    loaded = load_robustness(session)[3]
    torch.testing.assert_close(loaded["accuracy_std"], r.accuracy_std.double(), equal_nan=True)
    assert loaded["n_seeds"] == 2
    assert session.summary()["robustness"]["suppress-linear"]["n_seeds"] == 2


# ----------------------------------------------------------------------------- CLI


def test_cli_sweep_json(session_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with Session.open(session_path, read_only=True) as reader:
        names = reader.read_json("class_names")
    rc = main(["sweep", str(session_path), "--class", names[1], "--alphas", "0:4:9", "--json"])
    assert rc == 0
    payload = json.loads(capsys.readouterr().out)
    for key in ("alphas", "per_class_accuracy", "alpha_crit", "target_class", "class_names"):
        assert key in payload
    assert payload["alphas"] == pytest.approx([0.5 * i for i in range(9)])
    assert payload["target_class"] == 1
    assert set(payload["per_class_accuracy"]) == set(names)
    assert all(len(v) == 9 for v in payload["per_class_accuracy"].values())
    # α_crit of the swept class only: a sweep does not re-record it for every class.
    (brief,) = payload["alpha_crit"]
    assert brief["class"] == 1
    for key in ("analytic_median", "numerical_median", "alpha50", "qualifying", "total_ablation"):
        assert key in brief
    with Session.open(session_path, read_only=True) as reader:
        assert payload["recorded"] in list_sweeps(reader)
        stored = reader.read_json("control/alpha_crit_index")["suppress-linear"]
        assert list(stored) == [f"c1-f{brief['feature']}"]
    sel = payload["selectivity"]
    target_row = payload["per_class_accuracy"][names[1]]
    assert [p["target_accuracy"] for p in sel["per_strength"]] == pytest.approx(target_row)
    for point in sel["per_strength"]:  # the worst other class is named and is the lowest share
        worst = point["worst_other_class_name"]
        assert worst != names[1]
        i = payload["alphas"].index(point["alpha"])
        kept = [payload["per_class_accuracy"][n][i] / sel["baseline"][n]
                for n in names if n != names[1] and sel["baseline"][n]]
        assert point["worst_other_kept"] == pytest.approx(min(kept))
    assert sel["generalisation"] is not None  # the tiny session has a train split
    assert set(sel["controls"]) == {"low_association", "random"}
    assert sel["controls"]["low_association"]["feature"] != payload["features"][0]


@pytest.mark.parametrize("method", ["rome", "steer"])
def test_selectivity_report_for_baselines(session: Session, method: str) -> None:
    from core.workflow.selectivity import selectivity_lines, selectivity_report

    result = run_sweep(session, target_class=0, method=method, record=False)
    report = selectivity_report(session, result)
    assert len(report["per_strength"]) == result.alphas.numel()
    assert report["generalisation"]["train_efficacy"][0] is not None
    assert report["controls"]["random"]["target_accuracy"]
    assert any("selective window" in line for line in selectivity_lines(report))


def test_cli_bad_class_exits_2(session_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sweep", str(session_path), "--class", "dodecahedron", "--json"]) == 2
    err = capsys.readouterr().err
    assert "unknown class 'dodecahedron'" in err and "0=" in err
    assert main(["sweep", str(session_path), "--class", "0", "--alphas", "1:2"]) == 2
    assert "START:STOP:N" in capsys.readouterr().err


def test_cli_alpha_crit_csv(session_path: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "crit.csv"
    assert main(["alpha-crit", str(session_path), "--class", "2", "--csv", str(out), "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    (row,) = payload["classes"]
    assert row["class"] == 2 and row["qualifying"] <= row["n_samples"]
    header = out.read_text().splitlines()[0].split(",")
    assert header[:3] == ["class", "class_name", "feature"] and "alpha50" in header
    samples = (tmp_path / "crit.samples.csv").read_text().splitlines()
    assert len(samples) == 1 + row["n_samples"]


def test_cli_edit_and_robustness(session_path: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "edited.pt"
    rc = main(["edit", str(session_path), "--feature", "2", "--feature", "4", "--alpha", "1.5",
               "--out", str(out), "--json"])
    assert rc == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["edit"]["features"] == [2, 4] and payload["edit_index"] == 1
    assert out.exists() and (tmp_path / "edited.pt.json").exists()
    with Session.open(session_path, read_only=True) as reader:
        assert list_edits(reader) == [EditSpec((2, 4), "suppress", 1.5)]
    rc = main(["robustness", str(session_path), "--seeds", "2", "--epochs", "2", "--class", "0",
               "--n-alphas", "10", "--json"])
    assert rc == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["n_seeds"] == 2
    (c,) = payload["classes"]
    assert len(c["alphas"]) == 10 and len(c["target_accuracy_std"]) == 10


def test_cli_control_module_does_not_import_torch() -> None:
    code = "import sys, salve_tui.cli.main; salve_tui.cli.main.build_parser(); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "False"
