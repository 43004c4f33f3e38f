"""Sweeps: hand-worked curve, fast paths vs the naive per-α loop, auto range, robustness."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from core.control.curves import SweepResult, per_class_accuracy
from core.control.edit import edited_linear
from core.control.methods.base import CachedInputs, EditRequest
from core.control.methods.salve import auto_alpha_max, salve_logit_chunks, salve_sweep
from core.control.robustness import seed_robustness
from core.control.spec import EditSpec
from core.control.sweep import edit_effect, sweep

# Hand-worked model (same as tests/test_alpha_crit.py): logits = W a, b = 0, feature 0 touches
# only coordinate 0 (|D_00| = .5), which only class 0 uses (weight 2). So under suppression
# logit_0(α) = 2a1 + a2 − α·a1 while logits 1 and 2 (a3, −a3) do not move.
W = torch.tensor([[2.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, -1.0]])
b = torch.zeros(3)
D = torch.tensor([[-0.5, 0.0], [0.0, 1.0], [0.0, 0.5]])
A = torch.tensor(
    [
        [1.0, 0.0, 1.0],  # s1: logits (2 − α, 1, −1): wrong once α > 1
        [1.0, 1.0, 1.0],  # s2: (3 − α, 1, −1): wrong once α > 2
        [2.0, 0.0, 1.0],  # s3: (4 − 2α, 1, −1): wrong once α > 1.5
        [1.0, 2.0, 0.0],  # s4: (4 − α, 0, 0): wrong once α > 4
        [0.0, -1.0, 0.0],  # s5: (−1, 0, 0): always wrong (predicted 1, first of the tie)
        [0.0, 1.0, 0.0],  # s6: (1, 0, 0): always right
        [0.0, 0.0, 2.0],  # class 1: (0, 2, −2)
        [0.0, 0.0, -1.0],  # class 2: (0, −1, 1)
    ]
)
labels = torch.tensor([0, 0, 0, 0, 0, 0, 1, 2])


def test_hand_worked_suppression_curve() -> None:
    result = salve_sweep(A, labels, W, b, D, 0, target_class=0, alphas=[0, 0.5, 1.25, 2.5, 5])
    # class 0 correct: α=0, .5 → s1 s2 s3 s4 s6 = 5/6; 1.25 → s1 gone = 4/6;
    # 2.5 → s1 s2 s3 gone = 2/6; 5 → only s6 = 1/6.
    expected = torch.tensor([5, 5, 4, 2, 1], dtype=torch.float64) / 6
    assert torch.allclose(result.per_class_accuracy[0], expected)
    assert torch.equal(result.per_class_accuracy[1:], torch.ones(2, 5, dtype=torch.float64))
    # At α=5 every class-0 sample but s6 is predicted as class 1 (ties 1/2 go to 1).
    assert torch.allclose(
        result.target_prediction[-1], torch.tensor([1 / 6, 5 / 6, 0.0], dtype=torch.float64)
    )
    assert torch.allclose(result.others_mean_accuracy, torch.ones(5, dtype=torch.float64))


def test_hand_worked_edit_effect() -> None:
    effect = edit_effect(A, labels, W, b, D, EditSpec(features=(0,), alpha=2.5))
    # before: s5 → class 1; after α=2.5: s1, s2, s3, s5 → class 1 (see the comments on A).
    assert effect.confusion_before.tolist() == [[5, 1, 0], [0, 1, 0], [0, 0, 1]]
    assert effect.confusion_after.tolist() == [[2, 4, 0], [0, 1, 0], [0, 0, 1]]
    assert torch.allclose(
        effect.accuracy_delta, torch.tensor([-0.5, 0.0, 0.0], dtype=torch.float64)
    )
    json.dumps(effect.to_dict(), allow_nan=False)


def _random_problem(seed: int, n: int = 240, C: int = 5, d: int = 24, h: int = 6):
    g = torch.Generator().manual_seed(seed)
    Dr = torch.randn(d, h, generator=g) / d**0.5
    y = torch.arange(n) % C
    u = 0.3 * torch.randn(n, h, generator=g)
    u[torch.arange(n), y] += 2.0  # latent c carries class c
    Ar = torch.relu(u @ Dr.T * 4 + 0.2 * torch.randn(n, d, generator=g))
    means = torch.stack([Ar[y == c].mean(0) for c in range(C)])
    Wr = 3 * (means - means.mean(0)) + 0.05 * torch.randn(C, d, generator=g)
    br = 0.1 * torch.randn(C, generator=g)
    M = torch.stack([u[y == c].mean(0) for c in range(C)])
    return Ar, y, Wr, br, Dr, M


def _naive_curve(Ar, y, Wr, br, Dr, features, alphas, mode, modulation, target):
    """The obvious loop: build the edited nn.Linear and recompute logits for each α."""
    layer = nn.Linear(Wr.shape[1], Wr.shape[0])
    with torch.no_grad():
        layer.weight.copy_(Wr)
        layer.bias.copy_(br)
    accs, dists, all_logits = [], [], []
    for alpha in alphas.tolist():
        spec = EditSpec(features=features, mode=mode, alpha=alpha, modulation=modulation)
        with torch.no_grad():
            out = edited_linear(layer, spec, Dr)(Ar)
        preds = out.argmax(1)
        accs.append(per_class_accuracy(y, preds, Wr.shape[0]))
        dists.append(
            torch.bincount(preds[y == target], minlength=Wr.shape[0]).double()
            / int((y == target).sum())
        )
        all_logits.append(out)
    return torch.stack(accs, 1), torch.stack(dists), torch.stack(all_logits)


@pytest.mark.parametrize(
    ("features", "mode", "modulation"),
    [
        ((1,), "suppress", "linear"),  # affine fast path (interval counting)
        ((1,), "suppress", "clamped"),  # cumulative switched-off coordinates
        ((1,), "enhance", "clamped"),  # enhancement is never clamped: affine path
        ((1, 3), "suppress", "linear"),  # general batched path
        ((1, 3), "enhance", "clamped"),
    ],
)
def test_vectorised_sweep_equals_naive_loop(features, mode, modulation) -> None:
    Ar, y, Wr, br, Dr, _ = _random_problem(seed=len(features) + len(mode))
    alpha_max = 1.5 * auto_alpha_max(Ar, y, Wr, br, Dr, features, 1, modulation)
    alphas = torch.linspace(0.0, alpha_max, 41, dtype=torch.float64)
    result = salve_sweep(
        Ar,
        y,
        Wr,
        br,
        Dr,
        features,
        target_class=1,
        alphas=alphas,
        mode=mode,
        modulation=modulation,
        chunk_elements=7 * Ar.shape[0] * Wr.shape[0],  # several chunks
    )
    acc, dist, naive_logits = _naive_curve(Ar, y, Wr, br, Dr, features, alphas, mode, modulation, 1)
    assert torch.equal(result.per_class_accuracy, acc)
    assert torch.allclose(result.target_prediction, dist)
    fast_logits = torch.cat(
        list(salve_logit_chunks(Ar, Wr, br, Dr, features, alphas, mode, modulation, 9000))
    )
    assert torch.allclose(fast_logits, naive_logits, rtol=1e-5, atol=1e-4)
    # not vacuous: the edit really moves the logits (and, for suppression, the accuracies)
    assert float((naive_logits[-1] - naive_logits[0]).abs().max()) > 1.0
    if mode == "suppress":
        assert float(acc.max() - acc.min()) > 0.2


@pytest.mark.parametrize("modulation", ["linear", "clamped"])
def test_auto_range_suppresses_the_target(modulation: str) -> None:
    Ar, y, Wr, br, Dr, M = _random_problem(seed=11)
    result = salve_sweep(Ar, y, Wr, br, Dr, 2, M=M, modulation=modulation, n_alphas=50)
    assert result.target_class == 2  # chosen from M: latent 2 belongs to class 2
    assert result.alphas[0] == 0 and result.alphas.numel() == 50
    assert float(result.target_accuracy[0]) > 0.9
    assert float(result.target_accuracy[-1]) <= 0.05
    alpha_max = auto_alpha_max(Ar, y, Wr, br, Dr, [2], 2, modulation)
    assert float(result.alphas[-1]) == pytest.approx(alpha_max)


def test_sweep_result_json_round_trip_with_an_empty_class() -> None:
    Ar, y, Wr, br, Dr, M = _random_problem(seed=5)
    keep = y != 4  # class 4 has no samples: its accuracy is NaN → null in JSON
    result = salve_sweep(Ar[keep], y[keep], Wr, br, Dr, 0, target_class=0, n_alphas=20)
    text = json.dumps(result.to_dict(), allow_nan=False)
    back = SweepResult.from_dict(json.loads(text))
    assert back.to_dict() == result.to_dict()
    assert torch.isnan(back.per_class_accuracy[4]).all()


def test_a_class_sweep_uses_its_dominant_feature() -> None:
    Ar, y, Wr, br, Dr, M = _random_problem(seed=7)
    x = CachedInputs(Ar, y, Wr, br, Dr, M)
    results = [sweep("salve", x, EditRequest(c, n_points=30)) for c in range(5)]
    assert [r.features for r in results] == [[c] for c in range(5)]
    assert all(float(r.target_accuracy[-1]) <= 0.05 for r in results)


def test_seed_robustness_mean_and_std() -> None:
    Ar, y, Wr, br, Dr, M = _random_problem(seed=9)
    perm = torch.tensor([3, 0, 5, 1, 2, 4])  # a relabelled copy of the same SAE basis
    same = seed_robustness(
        Ar, y, Wr, br, [Dr, Dr[:, perm]], [M, M[:, perm]], target_class=1, n_alphas=25
    )
    assert same.features_per_seed == [1, int((perm == 1).nonzero())]  # re-identified per seed
    assert torch.equal(same.accuracy_std, torch.zeros_like(same.accuracy_std))
    assert torch.allclose(same.accuracy_mean, same.sweeps[0].per_class_accuracy)

    g = torch.Generator().manual_seed(1)
    D2 = Dr + 0.3 * torch.randn(Dr.shape, generator=g) / Dr.shape[0] ** 0.5
    mixed = seed_robustness(Ar, y, Wr, br, [Dr, D2], [M, M], target_class=1, alphas=same.alphas)
    a, c = mixed.sweeps[0].per_class_accuracy, mixed.sweeps[1].per_class_accuracy
    assert torch.allclose(mixed.accuracy_mean, (a + c) / 2)
    assert torch.allclose(mixed.accuracy_std, (a - c).abs() / 2**0.5)  # sample std of two values
    assert float(mixed.accuracy_std.max()) > 0
    json.dumps(mixed.to_dict(), allow_nan=False)
