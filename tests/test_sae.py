"""SAE model, loss, metrics and the fast trainer against autograd / torch.optim.Adam references."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from core.config import SAEConfig
from core.discover.sae import (
    PARAM_NAMES,
    SparseAutoencoder,
    encode,
    explained_variance,
    sae_from_arrays,
    sae_loss,
    sparsity_metrics,
)
from core.discover.sae_train import HISTORY_KEYS, FastSAETrainer, SAETrainState, train_sae
from core.jobs import CancelToken, JobCancelled, JobFailed

N, D, H, BATCH = 90, 12, 6, 8  # 90 = 11 full batches + one of 2: the ragged last batch is exercised


def low_rank_data(n: int = N, d: int = D, rank: int = 3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.relu(torch.randn(n, rank, generator=g) @ torch.randn(rank, d, generator=g)) + 0.05 * torch.rand(
        n, d, generator=g
    )


def small_config(**overrides) -> SAEConfig:
    values = dict(kind="l1", hidden=H, k=2, l1_coeff=1e-2, lr=1e-2, epochs=4, batch_size=BATCH,
                  lr_step_epochs=2, lr_gamma=0.5, seed=3, checkpoint_every=2)
    values.update(overrides)
    return SAEConfig(**values)


def hand_set_sae() -> SparseAutoencoder:
    sae = SparseAutoencoder(2, 2)
    with torch.no_grad():
        sae.encoder.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
        sae.encoder.bias.copy_(torch.tensor([0.0, -1.0]))
        sae.decoder.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 0.5]]))
        sae.decoder.bias.copy_(torch.tensor([0.5, 0.0]))
    return sae


# --------------------------------------------------------------------------- model, loss, metrics


def test_loss_known_answer_on_paper() -> None:
    # a1=(1,1): u=(1, 2·1−1)=(1,1), â=(1+0.5, 0.5·1)=(1.5,0.5); a2=(2,0): u=(2,−1), â=(2.5,−0.5).
    # Every error is ±0.5 → recon 0.25; |u| = 1,1,2,1 → mean 1.25; λ=0.1 → sparsity 0.125.
    a = torch.tensor([[1.0, 1.0], [2.0, 0.0]])
    u, a_hat = hand_set_sae()(a)
    assert torch.equal(u, torch.tensor([[1.0, 1.0], [2.0, -1.0]]))
    assert torch.equal(a_hat, torch.tensor([[1.5, 0.5], [2.5, -0.5]]))
    total, recon, sparsity = sae_loss(u, a_hat, a, l1_coeff=0.1)
    assert recon.item() == pytest.approx(0.25)
    assert sparsity.item() == pytest.approx(0.125)
    assert total.item() == pytest.approx(0.375)


def test_topk_keeps_the_k_largest_magnitudes_with_their_signs() -> None:
    sae = SparseAutoencoder(3, 4, kind="topk", k=2)
    with torch.no_grad():
        sae.encoder.weight.copy_(torch.tensor([[1.0, 0, 0], [0, -3.0, 0], [0, 0, 2.0], [0.5, 0, 0]]))
        sae.encoder.bias.zero_()
    u, _ = sae(torch.tensor([[1.0, 1.0, 1.0]]))  # pre = (1, −3, 2, 0.5) → keep −3 and 2
    assert torch.equal(u, torch.tensor([[0.0, -3.0, 2.0, 0.0]]))


def test_initialisation_is_seeded_xavier_with_linear_default_biases() -> None:
    a = SparseAutoencoder(40, 10, generator=torch.Generator().manual_seed(7))
    b = SparseAutoencoder(40, 10, generator=torch.Generator().manual_seed(7))
    c = SparseAutoencoder(40, 10, generator=torch.Generator().manual_seed(8))
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    assert not torch.equal(a.encoder.weight, c.encoder.weight)
    xavier = math.sqrt(6 / (40 + 10))
    for w in (a.encoder.weight, a.decoder.weight):
        assert w.abs().max() <= xavier and w.abs().max() > 0.8 * xavier
    assert a.encoder.bias.abs().max() <= 1 / math.sqrt(40)
    assert a.decoder.bias.abs().max() <= 1 / math.sqrt(10)
    assert a.decoder_directions.shape == (40, 10)


def test_sparsity_metrics_known_answer() -> None:
    u = torch.tensor([[6.0, 5.0, 4.0, 3.0, 2.0, 1.0], [-100.0, 0.5, 0.0, 0.0, 0.0, 0.5]])
    m = sparsity_metrics(u)
    # row 1: every |u| > 1% of 6 → 6 active; row 2: only 100 is > 1 → 1 active
    assert m["l0"] == pytest.approx(3.5)
    assert m["top5_share"] == pytest.approx((20 / 21 + 1.0) / 2)
    assert m["dead"] == 0
    assert m["mean_abs"] == pytest.approx((21 + 101) / 12)
    m2 = sparsity_metrics(torch.tensor([[1.0, 0.0], [2.0, 0.0]]), exact_zero=True)
    assert m2["l0"] == 1.0 and m2["dead"] == 1.0


def test_explained_variance_known_answer() -> None:
    # total SS around the mean 1: 1 + 1 = 2; residual SS 0.25 → 1 − 0.125
    assert explained_variance(np.array([[0.0], [2.0]]), np.array([[0.5], [2.0]])) == pytest.approx(0.875)


# --------------------------------------------------------------------------- fast path vs references


@pytest.mark.parametrize("kind", ["l1", "topk"])
def test_fast_gradients_equal_autograd(kind: str) -> None:
    saes = [SparseAutoencoder(D, H, kind, k=2, generator=torch.Generator().manual_seed(s)) for s in (0, 1)]
    params = {name: torch.stack([s.state_dict()[name] for s in saes]) for name in PARAM_NAMES}
    trainer = FastSAETrainer(params, kind=kind, k=2, l1_coeff=0.3)
    batches = torch.stack([low_rank_data(BATCH, seed=1), low_rank_data(BATCH, seed=2)])
    trainer.forward_backward(batches)
    fast = trainer.gradients_standard()
    for i, sae in enumerate(saes):
        u, a_hat = sae(batches[i])
        sae_loss(u, a_hat, batches[i], 0.3)[0].backward()
        for name, param in sae.named_parameters():
            torch.testing.assert_close(fast[name][i], param.grad, rtol=1e-5, atol=1e-7)


def reference_epochs(data: torch.Tensor, cfg: SAEConfig, epochs: int, *, seed: int | None = None):
    """Plain autograd + torch.optim.Adam + StepLR loop fed the trainer's batch order.

    The order comes from the documented contract: one generator per seed draws the initial
    weights, then one ``randperm`` per epoch. Returns the model and per-epoch sample-weighted
    mean (recon, sparsity) of the batch losses.
    """
    generator = torch.Generator().manual_seed(cfg.seed if seed is None else seed)
    sae = SparseAutoencoder(data.shape[1], cfg.hidden, cfg.kind, cfg.k, generator=generator)
    optimizer = torch.optim.Adam(sae.parameters(), lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, cfg.lr_step_epochs, cfg.lr_gamma)
    logged = []
    for _ in range(epochs):
        order = torch.randperm(len(data), generator=generator)
        recon_sum = sparsity_sum = 0.0
        for start in range(0, len(data), cfg.batch_size):
            batch = data[order[start : start + cfg.batch_size]]
            u, a_hat = sae(batch)
            loss, recon, sparsity = sae_loss(u, a_hat, batch, cfg.l1_coeff)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            recon_sum += recon.item() * len(batch)
            sparsity_sum += sparsity.item() * len(batch)
        scheduler.step()
        logged.append((recon_sum / len(data), sparsity_sum / len(data)))
    return sae, logged


@pytest.mark.parametrize("kind", ["l1", "topk"])
def test_fast_epochs_equal_torch_adam_loop(kind: str) -> None:
    data = low_rank_data()
    cfg = small_config(kind=kind, epochs=3, lr_step_epochs=1)  # the lr changes between epochs
    result = train_sae(data, cfg)
    reference, logged = reference_epochs(data, cfg, 3)
    for name, value in reference.state_dict().items():
        np.testing.assert_allclose(result.weights[name][0], value.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(result.history["recon"][0], [r for r, _ in logged], rtol=1e-4)
    np.testing.assert_allclose(result.history["sparsity"][0], [s for _, s in logged], rtol=1e-4)
    np.testing.assert_allclose(result.history["lr"][0], [1e-2, 5e-3, 2.5e-3])


def test_hand_written_adam_equals_torch_adam() -> None:
    sae = SparseAutoencoder(D, H, generator=torch.Generator().manual_seed(0))
    params = {name: value[None].clone() for name, value in sae.state_dict().items()}
    trainer = FastSAETrainer(params, l1_coeff=0.1, fused_adam=False)
    optimizer = torch.optim.Adam(sae.parameters(), lr=1e-2)
    for step in range(5):
        batch = low_rank_data(BATCH, seed=10 + step)
        trainer.forward_backward(batch[None])
        trainer.adam_step(1e-2)
        u, a_hat = sae(batch)
        optimizer.zero_grad()
        sae_loss(u, a_hat, batch, 0.1)[0].backward()
        optimizer.step()
    for name, value in sae.state_dict().items():
        np.testing.assert_allclose(trainer.parameters_standard()[name][0], value.numpy(), rtol=1e-5, atol=1e-7)
    assert trainer.step == optimizer.state[sae.encoder.weight]["step"].item() == 5


@pytest.mark.parametrize("kind", ["l1", "topk"])
def test_batched_seeds_equal_single_seed_runs(kind: str) -> None:
    data = low_rank_data()
    cfg = small_config(kind=kind, seed=5)
    batched = train_sae(data, cfg, n_seeds=2)
    assert batched.seeds == [5, 6]
    for i, seed in enumerate((5, 6)):
        alone = train_sae(data, small_config(kind=kind, seed=seed))
        for name in PARAM_NAMES:
            np.testing.assert_allclose(batched.weights[name][i], alone.weights[name][0], rtol=1e-5, atol=1e-7)
        for key in HISTORY_KEYS:
            np.testing.assert_allclose(batched.history[key][i], alone.history[key][0], rtol=1e-5, atol=1e-7)
    assert not np.allclose(batched.weights["encoder.weight"][0], batched.weights["encoder.weight"][1])


# --------------------------------------------------------------------------- checkpoint, cancel, failure


def store_and_load(state: SAETrainState) -> SAETrainState:
    """What the session store does: copy the arrays, JSON the scalars, rebuild."""
    arrays, scalars = state.to_arrays()
    assert all(isinstance(v, np.ndarray) for v in arrays.values())
    return SAETrainState.from_arrays({k: np.array(v) for k, v in arrays.items()}, json.loads(json.dumps(scalars)))


def test_resume_from_stored_checkpoint_is_bit_for_bit() -> None:
    data = low_rank_data()
    full = train_sae(data, small_config(epochs=20, lr_step_epochs=3))
    half = train_sae(data, small_config(epochs=10, lr_step_epochs=3))
    resumed = train_sae(data, small_config(epochs=20, lr_step_epochs=3), resume=store_and_load(half.state))
    for name in PARAM_NAMES:
        assert np.array_equal(full.weights[name], resumed.weights[name])
    for key in HISTORY_KEYS:
        assert np.array_equal(full.history[key], resumed.history[key])
    assert resumed.history["loss"].shape == (1, 20)
    assert resumed.state.adam_step == full.state.adam_step == 20 * math.ceil(N / BATCH)


def test_checkpoints_follow_checkpoint_every_and_end() -> None:
    seen: list[int] = []
    train_sae(low_rank_data(), small_config(epochs=5, checkpoint_every=2), on_checkpoint=lambda s: seen.append(s.epoch))
    assert seen == [2, 4, 5]


def test_cancel_checkpoints_last_epoch_then_resume_matches() -> None:
    data = low_rank_data()
    token, saved = CancelToken(), []

    def progress(p) -> None:
        if p.done == 3:
            token.cancel()

    with pytest.raises(JobCancelled):
        train_sae(data, small_config(epochs=6, checkpoint_every=100), progress, token, on_checkpoint=saved.append)
    assert [s.epoch for s in saved] == [3]
    resumed = train_sae(data, small_config(epochs=6), resume=store_and_load(saved[0]))
    straight = train_sae(data, small_config(epochs=6))
    for name in PARAM_NAMES:
        assert np.array_equal(resumed.weights[name], straight.weights[name])


def test_divergence_raises_and_never_checkpoints_a_bad_state() -> None:
    saved: list[SAETrainState] = []
    with pytest.raises(JobFailed) as failure:
        train_sae(low_rank_data(), small_config(lr=1e30, epochs=50, checkpoint_every=1), on_checkpoint=saved.append)
    message = str(failure.value)
    failed_epoch = int(message.split("at epoch ")[1].split()[0])
    assert failed_epoch == len(saved) + 1  # every completed epoch before it was checkpointed
    assert "learning rate" in message and "L1 coefficient" in message
    assert ("last good checkpoint" in message) == bool(saved)
    for state in saved:
        assert all(np.isfinite(v).all() for v in state.params.values())


def test_progress_reports_every_epoch_with_metrics() -> None:
    reports = []
    train_sae(low_rank_data(), small_config(epochs=3), progress=reports.append)
    assert [(p.stage, p.done, p.total) for p in reports] == [("sae", 1, 3), ("sae", 2, 3), ("sae", 3, 3)]
    assert {"loss", "l0", "ev", "dead", "lr"} <= set(reports[-1].metrics)


# --------------------------------------------------------------------------- training quality and helpers


def test_training_learns_a_good_reconstruction_and_metrics_agree() -> None:
    data = low_rank_data(n=200, seed=4)
    result = train_sae(data, small_config(epochs=40, lr=1e-2, lr_step_epochs=20, l1_coeff=1e-3))
    history = result.history
    assert history["loss"][0, -1] < 0.2 * history["loss"][0, 0]
    sae = result.sae(0)
    u = encode(sae, data)
    ev = explained_variance(data, sae.decoder(u).detach())
    assert ev > 0.95
    assert history["ev"][0, -1] == pytest.approx(ev, abs=0.02)  # in-epoch estimate vs end-of-training value
    assert history["l0"][0, -1] == pytest.approx(sparsity_metrics(u)["l0"], abs=0.5)


def test_weights_round_trip_into_modules() -> None:
    data = low_rank_data()
    result = train_sae(data, small_config(kind="topk"), n_seeds=2)
    sae = sae_from_arrays(result.weights, 1, kind="topk", k=2)
    assert torch.equal(sae.encoder.weight, torch.from_numpy(result.weights["encoder.weight"][1]))
    u = encode(sae, data, batch_size=7)
    torch.testing.assert_close(u, sae(data)[0])
    assert int((u != 0).sum(1).max()) == 2
    np.testing.assert_array_equal(result.decoder_directions(1), sae.decoder.weight.detach().numpy())


@pytest.mark.parametrize(
    "activations, match",
    [(torch.ones(5), "samples × features"), (torch.full((4, 3), float("nan")), "NaN"),
     (torch.ones(4, 3, dtype=torch.long), "floating point")],
)
def test_bad_activations_are_rejected_clearly(activations: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        train_sae(activations, small_config())


def test_bad_settings_and_mismatched_resume_are_rejected() -> None:
    with pytest.raises(ValueError, match="TopK k"):
        train_sae(low_rank_data(), small_config(kind="topk", k=99))
    state = train_sae(low_rank_data(), small_config(epochs=1)).state
    with pytest.raises(ValueError, match="cannot resume"):
        train_sae(low_rank_data(d=D + 1), small_config(), resume=state)
    with pytest.raises(ValueError, match="seed index"):
        sae_from_arrays(state.params, seed_index=3)


# --------------------------------------------------------------------------- the compiled (native) engine

ND, NH = 32, 16  # multiples of 16, the shapes the compiled kernel covers; N = 90 keeps a ragged batch


def native_data() -> torch.Tensor:
    return low_rank_data(d=ND, rank=4, seed=7)


def native_config(**overrides) -> SAEConfig:
    return small_config(**{"hidden": NH, **overrides})


@pytest.mark.native
@pytest.mark.parametrize("n_seeds", [1, 2])
def test_native_engine_equals_torch_engine(n_seeds: int) -> None:
    data, cfg = native_data(), native_config(epochs=3, lr_step_epochs=1)
    compiled = train_sae(data, cfg, n_seeds=n_seeds, native=True)
    reference = train_sae(data, cfg, n_seeds=n_seeds, native=False)
    assert (compiled.engine, reference.engine) == ("native", "torch")
    assert compiled.state.adam_step == reference.state.adam_step == 3 * 12
    for name in PARAM_NAMES:
        np.testing.assert_allclose(compiled.weights[name], reference.weights[name], rtol=1e-4, atol=1e-6)
    for key in ("loss", "recon", "sparsity", "ev", "top5_share"):
        np.testing.assert_allclose(compiled.history[key], reference.history[key], rtol=1e-4, atol=1e-7)
    np.testing.assert_array_equal(compiled.history["dead"], reference.history["dead"])
    np.testing.assert_allclose(compiled.history["l0"], reference.history["l0"], atol=0.05)
    for name in PARAM_NAMES:  # Adam moments continue the same way on resume
        np.testing.assert_allclose(compiled.state.exp_avg_sq[name], reference.state.exp_avg_sq[name], rtol=1e-3, atol=1e-12)


@pytest.mark.native
def test_native_engine_equals_autograd_and_torch_adam_loop() -> None:
    data, cfg = native_data(), native_config(epochs=3, lr_step_epochs=1)
    result = train_sae(data, cfg, native=True)
    reference, logged = reference_epochs(data, cfg, 3)
    for name, value in reference.state_dict().items():
        np.testing.assert_allclose(result.weights[name][0], value.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(result.history["recon"][0], [r for r, _ in logged], rtol=1e-4)
    np.testing.assert_allclose(result.history["sparsity"][0], [s for _, s in logged], rtol=1e-4)


@pytest.mark.native
def test_native_one_step_gradients_follow_the_loss() -> None:
    """One batch with Adam's first step: every parameter moves by −lr·sign(gradient) (|m̂/√v̂| = 1)."""
    data = native_data()[:BATCH]
    sae = SparseAutoencoder(ND, NH, generator=torch.Generator().manual_seed(1))
    params = {name: value[None].clone() for name, value in sae.state_dict().items()}
    trainer = FastSAETrainer(params, l1_coeff=0.3, use_native=True)
    latents, norms = torch.empty(1, BATCH, NH), torch.empty(1, BATCH)
    trainer.train_epoch(data, torch.arange(BATCH)[None], BATCH, 1e-3, latents, norms)
    u, a_hat = sae(data)
    sae_loss(u, a_hat, data, 0.3)[0].backward()
    torch.testing.assert_close(latents[0], u.detach(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(norms[0], (a_hat - data).norm(dim=1).detach(), rtol=1e-5, atol=1e-6)
    after = trainer.parameters_standard()
    for name, param in sae.named_parameters():
        moved = torch.from_numpy(after[name][0]) - param.detach()
        expected = -1e-3 * torch.sign(param.grad)
        big = param.grad.abs() > 1e-6  # Adam's eps only matters for near-zero gradients
        torch.testing.assert_close(moved[big], expected[big], rtol=1e-3, atol=1e-8)
    assert trainer.step == 1


@pytest.mark.native
def test_native_resume_and_divergence_behave_like_the_torch_engine() -> None:
    data = native_data()
    straight = train_sae(data, native_config(epochs=4), native=True)
    saved: list[SAETrainState] = []
    train_sae(data, native_config(epochs=2), native=True, on_checkpoint=saved.append)
    resumed = train_sae(data, native_config(epochs=4), native=True, resume=store_and_load(saved[-1]))
    for name in PARAM_NAMES:
        assert np.array_equal(resumed.weights[name], straight.weights[name])
    with pytest.raises(JobFailed, match="NaN/inf"):
        train_sae(data, native_config(lr=1e30, epochs=20), native=True)


@pytest.mark.native
def test_native_engine_is_refused_where_it_cannot_run() -> None:
    sae = SparseAutoencoder(ND, NH, "topk", k=2)
    params = {name: value[None].clone() for name, value in sae.state_dict().items()}
    with pytest.raises(RuntimeError, match="L1 SAE on the CPU only"):
        FastSAETrainer(params, kind="topk", use_native=True)
    odd = SparseAutoencoder(D, H)
    trainer = FastSAETrainer({name: value[None].clone() for name, value in odd.state_dict().items()})
    assert trainer.engine == "torch" and "multiples of 16" in trainer.native_status


def test_without_a_compiler_training_falls_back_to_torch(tmp_path) -> None:
    script = (
        "import torch; from core.discover.sae_train import train_sae; from core.config import SAEConfig; from core.discover import native\n"
        "r = train_sae(torch.rand(40, 32), SAEConfig(hidden=16, epochs=2, batch_size=8, lr_step_epochs=1))\n"
        "print(r.engine, '|', native.status())\n"
    )
    env = {**os.environ, "CC": str(tmp_path / "no-such-cc"), "SALVE_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("SALVE_NATIVE", None)  # the kernel is wanted: only the compiler is missing
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).resolve().parent.parent)
    assert done.returncode == 0, done.stderr
    engine, status = done.stdout.strip().split(" | ")
    assert engine == "torch" and "no-such-cc" in status and "torch path" in status
    assert not (tmp_path / "cache" / "native").exists() or not list((tmp_path / "cache" / "native").glob("*.so"))


@pytest.mark.native
def test_kernel_is_built_once_into_the_cache() -> None:
    from core.discover import native

    assert native.sae_kernels() is not None, native.status()
    built = list((native.cache_dir() / "native").glob("sae_l1_epoch-*.so"))
    assert len(built) == 1 and built[0].name in native.status()


@pytest.mark.native
def test_native_epoch_checks_the_buffers_it_hands_to_c() -> None:
    sae = SparseAutoencoder(ND, NH)
    trainer = FastSAETrainer({name: value[None].clone() for name, value in sae.state_dict().items()}, use_native=True)
    data = native_data()
    good = (torch.empty(1, N, NH), torch.empty(1, N))
    with pytest.raises(ValueError, match="index the rows"):
        trainer.train_epoch(data, torch.arange(N)[None] + 1, BATCH, 1e-3, *good)
    with pytest.raises(ValueError, match="latents_buf"):
        trainer.train_epoch(data, torch.arange(N)[None], BATCH, 1e-3, torch.empty(1, N - 1, NH), good[1])
    assert trainer.step == 0  # nothing ran


@pytest.mark.native
def test_native_kernel_results_do_not_depend_on_the_instruction_set(tmp_path) -> None:
    """The portable SSE4.2 build, the default (widest level this CPU runs) and a -march=native
    build give bit-identical weights (no FMA contraction, no reassociation), so a result does not
    depend on the CPU it ran on."""

    script = (
        "import hashlib, sys; sys.path[:0] = ['tests', '.']\n"
        "from test_sae import native_config, native_data\n"
        "from core.discover.sae_train import train_sae\n"
        "r = train_sae(native_data(), native_config(hidden=32, epochs=3, lr_step_epochs=1), native=True)\n"
        "assert r.engine == 'native', r.engine\n"
        "w = r.weights['decoder.weight'].tobytes()\n"
        "print(hashlib.sha256(w).hexdigest())\n"
    )
    digests = []
    for arch in ("x86-64-v2", "", "native"):
        env = {**os.environ, "SALVE_CACHE_DIR": str(tmp_path), "SALVE_NATIVE_ARCH": arch}
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              env=env, timeout=600, cwd=Path(__file__).resolve().parents[1])
        assert done.returncode == 0, done.stderr
        digests.append(done.stdout.strip())
    assert len(list((tmp_path / "native").glob("*.so"))) == 3  # three different builds
    assert digests[0] == digests[1] == digests[2]
