"""ROME and SAE steering baselines: known answers, identities, fast sweeps vs naive loops."""

from __future__ import annotations

import json

import pytest
import torch
import torchvision

from core.control.curves import per_class_accuracy
from core.control.edit import apply_edit, replay
from core.control.methods.rome import rome_edit, rome_key, rome_spec, rome_sweep
from core.control.methods.steering import (
    steer_activations,
    steer_spec,
    steer_sweep,
    steering,
    steering_coefficients,
    steering_vector,
    steering_vector_for,
)
from core.control.spec import EditSpec


def _problem(seed: int, n: int = 200, C: int = 4, d: int = 20, h: int = 6):
    g = torch.Generator().manual_seed(seed)
    D = torch.randn(d, h, generator=g) / d**0.5
    y = torch.arange(n) % C
    u = 0.3 * torch.randn(n, h, generator=g)
    u[torch.arange(n), y] += 2.0 * (1 - 2 * (y % 2))  # odd classes have a negative mean latent
    A = torch.relu(4 * u @ D.T + 0.5 + 0.2 * torch.randn(n, d, generator=g))
    means = torch.stack([A[y == c].mean(0) for c in range(C)])
    W = 3 * (means - means.mean(0)) + 0.1 * torch.randn(C, d, generator=g)
    M = torch.stack([u[y == c].mean(0) for c in range(C)])
    return A, y, W, 0.1 * torch.randn(C, generator=g), D, M


def test_rome_by_hand() -> None:
    W = torch.tensor([[1.0, 2.0], [3.0, -1.0]])
    key = torch.tensor([1.0, 1.0])  # kᵀk = 2, W_0·k = 3
    # v_0 = −10: row 0 += (−10 − 3)·kᵀ/2 = (−6.5, −6.5) → (−5.5, −4.5); row 1 unchanged.
    W_new = rome_edit(W, key, target_class=0, target_value=-10.0)
    assert torch.equal(W_new, torch.tensor([[-5.5, -4.5], [3.0, -1.0]]))
    assert torch.equal(W, torch.tensor([[1.0, 2.0], [3.0, -1.0]]))  # input untouched


def test_rome_changes_only_the_target_row_and_hits_the_target() -> None:
    A, y, W, b, D, M = _problem(seed=1)
    key = rome_key(A, y, target_class=2)
    assert torch.allclose(key, A[y == 2].mean(0))
    W_new = rome_edit(W, key, 2, -10.0)
    changed = (W_new != W).any(1)
    assert changed.tolist() == [False, False, True, False]
    assert float(W_new[2] @ key) == pytest.approx(-10.0, abs=1e-4)
    # Directions orthogonal to the key are untouched: the row moves along k only.
    delta = W_new[2] - W[2]
    assert torch.allclose(delta, (delta @ key) / (key @ key) * key, atol=1e-6)
    with pytest.raises(ValueError, match="zero vector"):
        rome_edit(W, torch.zeros(W.shape[1]), 0)


def test_rome_spec_replays_exactly_after_json() -> None:
    A, y, W, b, D, M = _problem(seed=2)
    spec = rome_spec(A, y, target_class=1, sample_index=5)
    assert spec.extra["key_source"] == "sample:5"
    back = EditSpec.from_json(spec.to_json())
    assert torch.equal(replay(W, D, [back]), rome_edit(W, A[5], 1, -10.0))


def _naive(A, y, W, b, specs, D, target):
    accs, dists = [], []
    for spec in specs:
        W_new, b_new = apply_edit(W, b, D, spec)
        preds = (A @ W_new.T + b_new).argmax(1)
        accs.append(per_class_accuracy(y, preds, W.shape[0]))
        dists.append(
            torch.bincount(preds[y == target], minlength=W.shape[0]).double()
            / int((y == target).sum())
        )
    return torch.stack(accs, 1), torch.stack(dists)


def test_rome_sweep_equals_naive_loop() -> None:
    A, y, W, b, D, M = _problem(seed=3)
    result = rome_sweep(A, y, W, b, target_class=0, n_points=40)
    assert result.param_name == "target_value"
    assert float(result.alphas[0]) == pytest.approx(result.extra["unedited_key_logit"])
    specs = [rome_spec(A, y, 0, float(t)) for t in result.alphas]
    acc, dist = _naive(A, y, W, b, specs, D, 0)
    assert torch.equal(result.per_class_accuracy, acc)
    assert torch.allclose(result.target_prediction, dist)
    assert float(result.target_accuracy[0]) > 0.9 and float(result.target_accuracy[-1]) <= 0.05
    json.dumps(result.to_dict(), allow_nan=False)


def test_steering_coefficients_follow_the_sign_of_the_class_mean() -> None:
    signs = [1.0, -1.0]
    assert steering_coefficients(signs, 2.0, "suppress").tolist() == [-2.0, 2.0]
    assert steering_coefficients(signs, 2.0, "enhance").tolist() == [2.0, -2.0]
    D = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    assert torch.equal(
        steering_vector(D, [0, 1], torch.tensor([-2.0, 2.0])), torch.tensor([-2.0, 4.0])
    )
    M = torch.tensor([[0.5, -3.0]])  # class 0: dominant latent 1 with a negative mean
    spec = steer_spec(M, 0, beta=1.5)
    # β_1 = −β·sign(μ_01) = +1.5 → v = 1.5·D[:,1] = (0, 3)
    assert torch.equal(steering_vector_for(D, spec), torch.tensor([0.0, 3.0]))


def test_steering_with_zero_beta_is_the_identity() -> None:
    A, y, W, b, D, M = _problem(seed=4)
    spec = steer_spec(M, 1, beta=0.0)
    vector = steering_vector_for(D, spec)
    assert torch.equal(steer_activations(A, vector), A)
    W_new, b_new = apply_edit(W, b, D, spec)
    assert torch.equal(W_new, W) and torch.equal(b_new, b)
    model = torchvision.models.resnet18(num_classes=3).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        before = model(x)
        with steering(model, torch.zeros(512)):
            during = model(x)
    assert torch.equal(before, during)


def test_steering_hook_equals_cached_activation_steering() -> None:
    torch.manual_seed(6)
    model = torchvision.models.resnet18(num_classes=3).eval()
    x = torch.randn(2, 3, 32, 32)
    captured = {}
    handle = model.fc.register_forward_pre_hook(lambda m, args: captured.setdefault("a", args[0]))
    with torch.no_grad():
        model(x)
    handle.remove()
    vector = torch.randn(512)
    with torch.no_grad(), steering(model, vector):
        hooked = model(x)
    cached = model.fc(steer_activations(captured["a"], vector))
    assert torch.allclose(hooked, cached, atol=1e-5)


def test_steer_sweep_equals_naive_loop() -> None:
    A, y, W, b, D, M = _problem(seed=7)
    for target in (0, 1):  # positive and negative class-mean latent
        result = steer_sweep(A, y, W, b, D, M, target_class=target, n_points=40)
        assert result.features == [target] and result.param_name == "beta"
        specs = [steer_spec(M, target, float(beta)) for beta in result.alphas]
        acc, dist = _naive(A, y, W, b, specs, D, target)
        assert torch.equal(result.per_class_accuracy, acc)
        assert torch.allclose(result.target_prediction, dist)
        assert float(result.target_accuracy[0]) > 0.8 and float(result.target_accuracy[-1]) <= 0.05
