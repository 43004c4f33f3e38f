"""The width search's batched scorer gives the plain scorer's numbers (issue 19 item 3's cost).

The batched path (``core.discover.sae_search_score``) must not be "nearly" the plain one: the
automatic α ranges, every sweep's per-class accuracy and the final scores are compared for
equality with the method's own functions and with a plain per-strength loop.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from core.control.curves import (
    auto_range_from_flips,
    linear_flip_points,
    logits,
    per_class_accuracy,
)
from core.control.methods.salve import apply_salve_edit, auto_alpha_max, salve_sweep
from core.control.methods.spec import EditSpec
from core.control.selectivity import selectivity
from core.discover.sae_search import HeldOut, score_candidate
from core.discover.sae_search_score import (
    ONE_THREAD_ELEMENTS,
    auto_ranges,
    interval_counts,
    one_thread_when_small,
    score_candidates,
    selective_any,
    shared_inputs,
    suppression_slopes,
    sweep_accuracy,
)
from core.workflow.synthetic import SyntheticSpec, synthetic_model, synthetic_rows

SPEC = SyntheticSpec(n_classes=6, dim=24, hidden=12, n_train=240, n_test=180, noise=0.4, seed=3)


def synthetic_held_out() -> tuple[HeldOut, np.ndarray]:
    model = synthetic_model(SPEC)
    train = synthetic_rows(SPEC, model["D"], 0, SPEC.n_train, 1)
    test = synthetic_rows(SPEC, model["D"], 0, SPEC.n_test, 2)
    t = torch.from_numpy
    data = HeldOut(t(train[0]), t(train[1]), t(test[0]), t(test[1]), t(model["W"]), t(model["b"]),
                   [f"c{i}" for i in range(SPEC.n_classes)])
    return data, model["D"]


def sae(D: np.ndarray) -> dict[str, np.ndarray]:
    """An SAE that encodes with Dᵀ and decodes with D (no biases)."""
    D = D.astype(np.float32)
    return {"encoder.weight": D.T.copy(), "encoder.bias": np.zeros(D.shape[1], np.float32),
            "decoder.weight": D, "decoder.bias": np.zeros(D.shape[0], np.float32)}


def test_interval_counts_by_hand() -> None:
    points = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    low = torch.tensor([[-1.0, 0.0, 2.0, -math.inf]])
    high = torch.tensor([[1.5, 3.0, 2.0, math.inf]])
    labels = torch.tensor([0, 1, 0, 1])
    # (-1, 1.5) covers 0 and 1; (0, 3) is open: 1 and 2; (2, 2) is empty; (-inf, inf) all four
    counts = interval_counts(low, high, points, labels, 2)[0]
    assert counts.T.tolist() == [[1, 1, 0, 0], [1, 2, 2, 1]]
    brute = ((low.unsqueeze(1) < points.unsqueeze(2)) & (points.unsqueeze(2) < high.unsqueeze(1))).float()
    assert torch.equal(counts.float(), brute[0] @ torch.nn.functional.one_hot(labels, 2).float())


def two_class_margins() -> HeldOut:
    """Class 0's sample flips (suppressing coordinate 0) at α = 1 − a₁/a₀: most early, a tail
    late and two never, so the range doubles; class 1 has 15% that never flip: a plateau."""
    rng = np.random.default_rng(0)
    flips0 = np.concatenate([rng.uniform(0.1, 0.3, 92), [0.9, 1.6, 2.2, 3.0, 4.0, 5.0]])
    a0 = [[1.0, 1.0 - f] for f in flips0] + [[-1.0, -2.0]] * 2
    a1 = [[1.0 - f, 1.0] for f in rng.uniform(0.2, 0.4, 85)] + [[-2.0, -1.0]] * 15
    A = torch.tensor(a0 + a1, dtype=torch.float32)
    labels = torch.tensor([0] * 100 + [1] * 100)
    W, b = torch.eye(2), torch.zeros(2)
    return HeldOut(A, labels, A, labels, W, b, ["a", "b"])


def test_auto_ranges_equal_the_methods_automatic_range_doubling_and_plateau() -> None:
    data = two_class_margins()
    shared = shared_inputs(data)
    D = torch.tensor([[1.0, 0.0, 0.5], [0.0, 1.0, 0.5]])
    for c, k in ((0, 0), (1, 1)):
        fast = auto_ranges(shared, c, D.abs().T)
        for j in range(D.shape[1]):
            assert float(fast[j]) == auto_alpha_max(data.test_a, data.test_labels, data.W, data.b, D, (j,), c)
        mask = data.test_labels == c
        slope = -(data.test_a[mask] @ (data.W * D[:, k].abs()).T)
        flips = linear_flip_points(logits(data.test_a[mask], data.W, data.b), slope, data.test_labels[mask])
        first = auto_range_from_flips(flips, 2.0)
        if c == 0:  # the tail: 7% still right at the first-order range (1.51), 4% after one doubling
            assert float(fast[k]) == 2 * first
        else:  # a plateau: doubling flips nobody new, the first-order range stays
            assert float(fast[k]) == first
    with pytest.raises(ValueError, match="all-zero decoder direction"):
        auto_ranges(shared, 0, torch.zeros(1, 2))


def test_sweep_accuracy_equals_the_method_sweep_and_a_per_strength_loop() -> None:
    data, D_np = synthetic_held_out()
    D = torch.from_numpy(D_np)
    shared = shared_inputs(data)
    targets = torch.arange(SPEC.n_classes)
    features = torch.from_numpy(SPEC.owners())
    directions = D[:, features].abs().T
    tops = torch.cat([auto_ranges(shared, c, directions[c:c + 1]) for c in range(SPEC.n_classes)])
    alphas = torch.stack([torch.linspace(0.0, float(t), 48, dtype=torch.float64) for t in tops])
    fast = sweep_accuracy(shared, directions, alphas)
    windows = selective_any(fast, targets, shared)
    C = SPEC.n_classes
    for j, (c, k) in enumerate(zip(targets.tolist(), features.tolist(), strict=True)):
        plain = salve_sweep(data.test_a, data.test_labels, data.W, data.b, D, [k], c, n_alphas=48)
        assert torch.equal(plain.alphas, alphas[j]) and torch.equal(plain.per_class_accuracy, fast[j].T)
        assert bool(windows[j]) == bool(selectivity(plain, shared.baseline).selective.any())
        for i in (0, 7, 23, 47):  # the obvious way: edit the head, take the argmax
            spec = EditSpec((k,), "suppress", float(alphas[j, i]), "linear", "salve")
            pred = logits(data.test_a, apply_salve_edit(data.W, D, spec), data.b).argmax(1)
            assert torch.equal(per_class_accuracy(data.test_labels, pred, C), fast[j, i])
    assert 0 < int(windows.sum()) < C  # the case decides both ways


def test_batched_scores_equal_the_plain_scorer() -> None:
    data, D = synthetic_held_out()
    rng = np.random.default_rng(0)
    twin = sae(np.concatenate([D, 2 * D[:, SPEC.owners()[:1]]], 1))
    twin["encoder.weight"][-1] = 0  # no class association, class 0's direction: a failing control
    candidates = [sae(D), sae(D + 0.3 * rng.standard_normal(D.shape)), sae(rng.standard_normal((24, 8)) / 5),
                  sae(D * rng.uniform(0.2, 2, D.shape[1])), twin]
    plain = [score_candidate(w, data) for w in candidates]
    fast = score_candidates(candidates, data)
    assert fast == plain
    windows = [r["selective_windows"] for r in plain]
    assert windows[2] == 0 and max(windows) > 0  # candidates with and without windows
    assert plain[4]["controls_ok"] < plain[4]["selective_windows"]  # a control that fails
    assert score_candidates(candidates[1:3], data, shared_inputs(data)) == plain[1:3]
    # a memory budget of one sweep per batch gives the same scores
    assert score_candidates(candidates, data, shared_inputs(data, chunk_elements=1)) == plain


def test_small_scoring_runs_on_one_thread_and_restores_the_count() -> None:
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with one_thread_when_small(ONE_THREAD_ELEMENTS):
            assert torch.get_num_threads() == 1
        assert torch.get_num_threads() == 2
        with one_thread_when_small(ONE_THREAD_ELEMENTS + 1):  # large blocks keep their threads
            assert torch.get_num_threads() == 2
        with pytest.raises(ValueError), one_thread_when_small(10):
            raise ValueError("a failing score")
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_a_cancelled_scoring_stops_and_restores_the_threads() -> None:
    from core.jobs import CancelToken, JobCancelled

    data, D = synthetic_held_out()
    cancel = CancelToken()
    cancel.cancel()
    before = torch.get_num_threads()
    with pytest.raises(JobCancelled):
        score_candidates([sae(D)], data, cancel=cancel)
    assert torch.get_num_threads() == before


def test_slopes_are_the_methods_product_bit_for_bit() -> None:
    """On this shape a batched ``bmm`` rounds differently from the sweep's ``A @ (W ∘ v)ᵀ``."""
    g = torch.Generator().manual_seed(0)
    A, W = torch.randn(60, 24, generator=g), torch.randn(5, 24, generator=g)
    V = torch.rand(24, 12, generator=g).T  # directions as decoder columns: a transposed view
    slopes = suppression_slopes(A, W, V)
    assert all(torch.equal(slopes[k], -(A @ (W * V[k]).T)) for k in range(12))
