"""Out-of-core SAE training (core.discover.sae_stream) against the in-memory trainer."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from core.config import SAEConfig
from core.discover.sae import PARAM_NAMES, normalization_scale
from core.discover.sae_stream import (
    ArrayRows,
    StreamPlan,
    block_order,
    in_memory_bytes,
    plan_stream,
    row_moments,
    train_sae_streamed,
)
from core.discover.sae_train import HISTORY_KEYS, SAETrainState, centred_energy_of, train_sae
from core.jobs import CancelToken, JobCancelled

N, D, H = 3000, 32, 16


def clustered_data(n: int = N, d: int = D, seed: int = 0) -> np.ndarray:
    """Sparse non-negative mixtures of 24 directions: an SAE has something to find."""
    g = np.random.default_rng(seed)
    atoms = np.abs(g.normal(size=(24, d)))
    codes = g.exponential(size=(n, 24)) * (g.random((n, 24)) < 0.15)
    return (codes @ atoms + 0.05 * g.random((n, d))).astype(np.float32)


def config(**overrides) -> SAEConfig:
    values = dict(kind="l1", hidden=H, l1_coeff=1e-2, lr=3e-3, epochs=8, batch_size=32,
                  lr_step_epochs=4, lr_gamma=0.5, seed=5, checkpoint_every=3)
    values.update(overrides)
    return SAEConfig(**values)


BIG_BUDGET = 1 << 30


@pytest.mark.parametrize(("kind", "native"), [("l1", None), ("l1", False), ("topk", None)])
def test_one_block_covering_all_rows_is_the_in_memory_trainer(kind, native) -> None:
    data = clustered_data()
    cfg = config(epochs=5, kind=kind, k=4)
    memory = train_sae(data, cfg, n_seeds=2, native=native)
    streamed = train_sae_streamed(ArrayRows(data), cfg, n_seeds=2, native=native, budget_bytes=BIG_BUDGET,
                                  plan=StreamPlan(block_rows=N, blocks_per_window=1))
    assert memory.engine == streamed.engine
    for name in PARAM_NAMES:
        assert np.array_equal(memory.weights[name], streamed.weights[name]), name
    for key in HISTORY_KEYS:  # sums taken window by window in float64: same to rounding
        np.testing.assert_allclose(streamed.history[key], memory.history[key], rtol=1e-6, atol=1e-9)


def test_streamed_loss_is_within_two_percent_of_in_memory() -> None:
    data = clustered_data()
    cfg = config(epochs=30, lr_step_epochs=10)
    plan = StreamPlan(block_rows=100, blocks_per_window=4)  # 8 windows of 400 rows an epoch
    memory = train_sae(data, cfg)
    streamed = train_sae_streamed(ArrayRows(data), cfg, budget_bytes=BIG_BUDGET, plan=plan)
    final_memory, final_streamed = memory.history["loss"][0, -1], streamed.history["loss"][0, -1]
    assert abs(final_streamed - final_memory) / final_memory < 0.02
    assert memory.history["loss"][0, -1] < 0.5 * memory.history["loss"][0, 0]  # it did learn
    assert not np.array_equal(memory.weights["encoder.weight"], streamed.weights["encoder.weight"])


def test_every_row_is_trained_once_per_epoch_with_full_batches_across_windows() -> None:
    """A batch of 32 over windows of 3·50 rows: 3000 rows = 93 full batches + one of 24,
    so the Adam step count says whether rows were dropped or batches cut at window ends."""
    data = clustered_data()
    result = train_sae_streamed(ArrayRows(data), config(epochs=2), budget_bytes=BIG_BUDGET,
                                plan=StreamPlan(block_rows=50, blocks_per_window=3))
    assert result.state.adam_step == 2 * 94


def test_streamed_resume_is_bit_for_bit_and_cancel_saves_progress() -> None:
    data = clustered_data()
    plan = StreamPlan(block_rows=128, blocks_per_window=5)
    source = ArrayRows(data)
    full = train_sae_streamed(source, config(epochs=6), budget_bytes=BIG_BUDGET, plan=plan)
    token, saved = CancelToken(), []

    def progress(update) -> None:
        if update.done >= 2:
            token.cancel()

    with pytest.raises(JobCancelled):
        train_sae_streamed(source, config(epochs=6, checkpoint_every=100), progress, token,
                           budget_bytes=BIG_BUDGET, plan=plan, on_checkpoint=saved.append)
    assert [s.epoch for s in saved] == [2]
    arrays, scalars = saved[0].to_arrays()
    state = SAETrainState.from_arrays(arrays, json.loads(json.dumps(scalars)))
    resumed = train_sae_streamed(source, config(epochs=6), budget_bytes=BIG_BUDGET, plan=plan, resume=state)
    for name in PARAM_NAMES:
        assert np.array_equal(full.weights[name], resumed.weights[name])
    for key in HISTORY_KEYS:
        np.testing.assert_array_equal(full.history[key], resumed.history[key])


def test_row_moments_match_the_in_memory_statistics() -> None:
    data = clustered_data() + 3.0  # an offset the centred energy must remove
    moments = row_moments(ArrayRows(data), block_rows=77)
    assert moments.n == N
    assert moments.normalization_scale(D) == pytest.approx(normalization_scale(data), rel=1e-12)
    assert moments.centred_energy == pytest.approx(centred_energy_of(torch.from_numpy(data)), rel=1e-10)


def test_row_moments_reject_non_finite_rows() -> None:
    data = clustered_data()
    data[1234, 3] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        row_moments(ArrayRows(data), block_rows=500)


def test_block_order_is_a_permutation_that_changes_each_epoch() -> None:
    first, second = block_order(40, 5, 0), block_order(40, 5, 1)
    assert sorted(first) == list(range(40)) and first != second
    assert block_order(40, 5, 0) == first  # a function of (seed, epoch): resumable


def test_plan_fits_the_budget_and_refuses_a_hopeless_one() -> None:
    n, d, h = 1_000_000, 768, 64
    budget = 1 << 30
    plan = plan_stream(n, d, h, 1, budget)
    assert plan.blocks_per_window == 16
    per_row = 2 * 4 * d + 4 * h + 4
    assert plan.window_rows * per_row <= budget
    assert plan.window_rows * per_row > 0.5 * budget  # and uses most of it
    assert in_memory_bytes(n, d, h) > budget  # so 1M × 768 streams under 1 GiB
    with pytest.raises(ValueError, match="too small"):
        plan_stream(n, d, h, 1, 1 << 20)
