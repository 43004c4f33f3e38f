"""α_crit: a hand-worked 3-class model, analytic = numerical under linear modulation, CSV."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch

from core.control.alpha_crit import alpha50, class_alpha_crit, numerical_alpha_crit
from core.control.alpha_crit_csv import sample_rows, summary_rows, write_csv
from core.control.curves import dominant_features
from core.control.methods.salve import salve_sweep


def alpha_crit_all_classes(A, labels, W, b, D, M, classes=None, features=None, **kwargs):  # noqa: ANN001, ANN201
    """class_alpha_crit of each class with samples, on its dominant feature (or features[c])."""
    present = set(labels.unique().tolist())
    classes = [c for c in (range(W.shape[0]) if classes is None else classes) if c in present]
    dominant = dominant_features(M)
    return [class_alpha_crit(A, labels, W, b, D, c, int((features or {}).get(c, dominant[c])), **kwargs)
            for c in classes]

# Hand-worked model: d = 3, classes 0..2, bias 0.
#   W_0 = (2, 1, 0), W_1 = (0, 0, 1), W_2 = (0, 0, −1);  feature 0: D[:,0] = (−.5, 0, 0).
# For a class-0 sample a = (a1, a2, a3):
#   z = 2a1 + a2,  S = Σ_j W_0j |D_j0| a_j = 2·.5·a1 = a1,  z(α) = z − α·a1 (linear).
W = torch.tensor([[2.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, -1.0]])
b = torch.zeros(3)
D = torch.tensor([[-0.5, 0.0], [0.0, 1.0], [0.0, 0.5]])
A = torch.tensor(
    [
        [1.0, 0.0, 1.0],  # s1: z = 2, S = 1 → α_crit = 2
        [1.0, 1.0, 1.0],  # s2: z = 3, S = 1 → 3
        [2.0, 0.0, 1.0],  # s3: z = 4, S = 2 → 2
        [1.0, 2.0, 0.0],  # s4: z = 4, S = 1 → 4
        [0.0, -1.0, 0.0],  # s5: z = −1 → excluded (z ≤ 0)
        [0.0, 1.0, 0.0],  # s6: z = 1, S = 0 → excluded (S ≤ 0 / no crossing)
        [0.0, 0.0, 2.0],  # class 1
        [0.0, 0.0, -1.0],  # class 2
    ]
)
labels = torch.tensor([0, 0, 0, 0, 0, 0, 1, 2])
nan = math.nan


def _same(values: torch.Tensor, expected: list[float]) -> bool:
    return torch.allclose(values, torch.tensor(expected, dtype=torch.float64), equal_nan=True)


def test_hand_worked_linear() -> None:
    curve = salve_sweep(A, labels, W, b, D, 0, target_class=0, alphas=[0, 0.5, 1.25, 2.5, 5])
    r = class_alpha_crit(A, labels, W, b, D, target_class=0, feature=0, curve=curve)
    assert _same(r.z, [2, 3, 4, 4, -1, 1])
    assert _same(r.S, [1, 1, 2, 1, 0, 0])
    assert _same(r.analytic, [2, 3, 2, 4, nan, nan])
    assert torch.allclose(r.numerical, r.analytic, rtol=1e-12, equal_nan=True)
    assert r.prediction.tolist() == [0, 0, 0, 0, 1, 0]  # s5: logits (−1, 0, 0) → class 1
    assert r.exclusions == {
        "analytic_z_nonpositive": 1,
        "analytic_s_nonpositive": 1,
        "numerical_z_nonpositive": 1,
        "numerical_no_crossing": 1,
        "numerical_total_ablation": 0,
    }
    s = r.summary()
    assert s["n_qualifying_analytic"] == 4 and s["n_qualifying_numerical"] == 4
    # sorted values 2, 2, 3, 4: median 2.5, q1 = 2, q3 = 3 + .25·(4 − 3) = 3.25
    assert s["analytic"]["median"] == pytest.approx(2.5)
    assert s["numerical"]["q1"] == pytest.approx(2.0) and s["numerical"]["q3"] == pytest.approx(
        3.25
    )
    # Curve (see tests/test_sweep.py): class-0 accuracy 5/6, 5/6, 4/6, 2/6, 1/6 at α = 0, .5,
    # 1.25, 2.5, 5. It falls to ½ between 1.25 and 2.5: 1.25 + (4/6 − 1/2)/(4/6 − 2/6)·1.25 = 1.875.
    assert r.alpha50 == pytest.approx(1.875)
    # Validity: 1 − α_crit·|D_j0| = (1 − α/2, 1, 1): s1, s3 (α = 2) → (0, 1, 1), none < 0;
    # s2 (α = 3) → (−.5, 1, 1) and s4 (α = 4) → (−1, 1, 1): 1/3 below zero; pooled 2/12.
    assert _same(r.validity_below_zero, [0, 1 / 3, 0, 1 / 3, nan, nan])
    assert r.pooled_below_zero == pytest.approx(1 / 6)


def test_hand_worked_clamped() -> None:
    # Clamped: z(α) = 2a1·max(0, 1 − α/2) + a2. s1 (a2 = 0) and s3 (a2 = 0) reach 0 only at
    # α = 2 = 1/|D_00|, where the feature's one coordinate is switched off entirely: total
    # ablation, not a crossing. s2 (a2 = 1) and s4 (a2 = 2) never get below a2 > 0.
    r = class_alpha_crit(A, labels, W, b, D, target_class=0, feature=0, modulation="clamped")
    assert _same(r.numerical, [nan] * 6)
    assert r.total_ablation_mask.tolist() == [True, False, True, False, False, False]
    assert r.exclusions["numerical_no_crossing"] == 3  # s2, s4, s6
    assert r.exclusions["numerical_total_ablation"] == 2  # s1, s3
    assert r.summary()["total_ablation"] == 2 and r.summary()["n_qualifying_numerical"] == 0
    assert r.alpha_max == pytest.approx(1.001 / 0.5)  # every factor is 0 beyond 1/|D_00|
    assert _same(r.analytic, [2, 3, 2, 4, nan, nan])  # the linear estimate does not change
    assert not r.first_order_exact and "first-order" in r.summary()["note"]
    linear = class_alpha_crit(A, labels, W, b, D, target_class=0, feature=0)
    assert linear.first_order_exact and linear.summary()["note"] is None
    assert linear.exclusions["numerical_total_ablation"] == 0


def test_clamped_crossing_before_total_ablation_is_kept() -> None:
    # d = 2, W_0 = (2, 1), D[:,0] = (−.5, −.25): total ablation at α = 1/.25 = 4.
    # a = (1, −1): z(α) = 2·max(0, 1 − α/2) − max(0, 1 − α/4); for α ≤ 2: 1 − 3α/4 → root 4/3.
    # a = (1, 1): z(α) = 2·max(0, 1 − α/2) + max(0, 1 − α/4) > 0 until α = 4: total ablation.
    Wt = torch.tensor([[2.0, 1.0], [0.0, 0.0]])
    Dt = torch.tensor([[-0.5], [-0.25]])
    At = torch.tensor([[1.0, -1.0], [1.0, 1.0]])
    r = class_alpha_crit(At, torch.tensor([0, 0]), Wt, None, Dt, 0, 0, modulation="clamped")
    assert r.numerical[0] == pytest.approx(4 / 3, rel=1e-9)
    assert math.isnan(float(r.numerical[1]))
    assert r.total_ablation_mask.tolist() == [False, True]
    assert r.exclusions["numerical_no_crossing"] == 0


def test_alpha50_interpolation_and_undefined_cases() -> None:
    alphas = torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0])
    assert alpha50(alphas, torch.tensor([1.0, 1.0, 0.75, 0.25, 0.0])) == pytest.approx(2.5)
    assert alpha50(alphas, torch.tensor([1.0, 0.5, 0.2, 0.1, 0.0])) == pytest.approx(1.0)
    assert alpha50(alphas, torch.tensor([1.0, 0.9, 0.8, 0.7, 0.6])) is None  # never reaches ½
    assert alpha50(alphas, torch.tensor([0.4, 0.3, 0.2, 0.1, 0.0])) is None  # below ½ unedited


def _random_problem(seed: int, n: int = 300, C: int = 4, d: int = 40, h: int = 8):
    g = torch.Generator().manual_seed(seed)
    Dr = torch.randn(d, h, generator=g) / d**0.5
    y = torch.arange(n) % C
    u = 0.5 * torch.randn(n, h, generator=g)
    u[torch.arange(n), y] += 2.0
    Ar = torch.relu(4 * u @ Dr.T + 0.3 * torch.randn(n, d, generator=g))
    means = torch.stack([Ar[y == c].mean(0) for c in range(C)])
    Wr = 3 * (means - means.mean(0)) + 0.2 * torch.randn(C, d, generator=g)
    M = torch.stack([u[y == c].mean(0) for c in range(C)])
    return Ar, y, Wr, 0.1 * torch.randn(C, generator=g), Dr, M


@pytest.mark.parametrize("mode", ["suppress", "enhance"])
def test_analytic_equals_numerical_under_linear_modulation(mode: str) -> None:
    Ar, y, Wr, br, Dr, M = _random_problem(seed=3)
    if mode == "enhance":  # enhancement needs z < 0: score samples against other classes' rows
        y = y[torch.randperm(y.numel(), generator=torch.Generator().manual_seed(0))]
    results = alpha_crit_all_classes(Ar, y, Wr, br, Dr, M, mode=mode)
    compared = 0
    for r in results:
        ok = torch.isfinite(r.analytic)
        assert torch.equal(ok, torch.isfinite(r.numerical))  # same qualifying set
        if not bool(ok.any()):
            continue
        rel = ((r.numerical[ok] - r.analytic[ok]) / r.analytic[ok]).abs()
        assert float(rel.max()) < 1e-4
        compared += int(ok.sum())
    assert compared > 40  # many samples qualify: the check is not vacuous


def test_numerical_clamped_finds_the_first_root() -> None:
    Ar, y, Wr, br, Dr, M = _random_problem(seed=4)
    A0, w0, k = Ar[y == 0].double(), Wr[0].double(), 0
    roots, crossed, alpha_max = numerical_alpha_crit(A0, w0, Dr, k, modulation="clamped")
    assert int(crossed.sum()) > 20
    d_abs = Dr[:, k].double().abs()

    def z(alpha: torch.Tensor) -> torch.Tensor:  # exact clamped logit, per sample and α
        f = (1 - alpha.unsqueeze(-1) * d_abs).clamp_min(0)
        return (A0[crossed].unsqueeze(1) * w0 * f).sum(-1)

    found = roots[crossed]
    scale = (A0[crossed] * w0).abs().sum(1)
    assert float((z(found.unsqueeze(1)).squeeze(1) / scale).abs().max()) < 1e-7  # a root
    before = found.unsqueeze(1) * torch.linspace(0, 0.999, 400, dtype=torch.float64)
    assert bool((z(before) > 0).all())  # and the first one


def test_tables_json_and_csv(tmp_path) -> None:
    Ar, y, Wr, br, Dr, M = _random_problem(seed=5)
    results = alpha_crit_all_classes(Ar, y, Wr, br, Dr, M, modulation="clamped")
    json.dumps([r.to_dict() for r in results], allow_nan=False)
    write_csv(tmp_path / "summary.csv", summary_rows(results))
    write_csv(tmp_path / "samples.csv", sample_rows(results))
    with open(tmp_path / "samples.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == Ar.shape[0]
    first = results[0].sample_rows()[0]
    assert int(rows[0]["index"]) == first["index"] and float(rows[0]["z"]) == pytest.approx(
        first["z"]
    )
    excluded = [row for row in rows if row["alpha_crit_numerical"] == ""]
    assert len(excluded) == sum(int((~torch.isfinite(r.numerical)).sum()) for r in results)
    with open(tmp_path / "summary.csv", newline="") as handle:
        summary = list(csv.DictReader(handle))
    assert [int(row["class"]) for row in summary] == [0, 1, 2, 3]
    assert float(summary[0]["analytic_median"]) == pytest.approx(
        results[0].summary()["analytic"]["median"]
    )
    with pytest.raises(ValueError, match="empty"):
        write_csv(tmp_path / "none.csv", [])


def test_one_result_per_class_for_figures() -> None:
    from core.workflow.alpha_crit import current_per_class
    from core.workflow.figures import wants_log_scale

    Ar, y, Wr, br, Dr, M = _random_problem(seed=6)
    dominant = [0, 1, 2, 3]
    cross = alpha_crit_all_classes(Ar, y, Wr, br, Dr, M, features={c: 5 for c in range(4)})
    own = alpha_crit_all_classes(Ar, y, Wr, br, Dr, M, classes=[0, 2])
    picked = current_per_class(cross + own, dominant, {(1, 5): 1.0, (3, 5): 2.0})
    # one per class: the dominant feature's where stored, else the cross-class one
    assert [(r.target_class, r.feature) for r in picked] == [(0, 0), (1, 5), (2, 2), (3, 5)]
    assert wants_log_scale([torch.tensor([1.0, 2.0]).numpy(), torch.tensor([5e3]).numpy()])
    assert not wants_log_scale([torch.tensor([1.0, 2.0, 9.0]).numpy()])
