"""Issue 19 item 4: per-seed λ, the plateau rule, the measured engine choice, and the fast path
against the plain paper loop (same initial weights, same batches) at a width the kernel covers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_sae import native_config, native_data, reference_epochs, small_config

from core.config import SAEConfig
from core.discover import native, sae_engine
from core.discover.sae import PARAM_NAMES, sae_from_arrays, sae_loss
from core.discover.sae_schedule import PlateauRule, plateau_reached, relative_improvement
from core.discover.sae_train import SAETrainState, _initial_state, train_sae

#: The compiled kernel may be off (``SALVE_NATIVE=0``: the variant suite) or have no compiler.
needs_kernel = pytest.mark.skipif(native.sae_kernels() is None, reason=f"no compiled kernel: {native.status()}")


@pytest.mark.parametrize("use_native", [pytest.param(True, marks=needs_kernel), False])
def test_per_seed_lambdas_equal_single_runs(use_native: bool) -> None:
    """Seeds trained together with one λ each give what each λ gives alone (same initial weights)."""
    data, cfg = native_data(), native_config(epochs=2, lr_step_epochs=1)
    lambdas = [0.003, 0.03, 0.3]
    start = _initial_state(cfg, [cfg.seed] * 3, *data.shape)
    together = train_sae(data, cfg, n_seeds=3, resume=start, l1_coeffs=lambdas, native=use_native)
    for i, lam in enumerate(lambdas):
        alone = train_sae(data, SAEConfig(**{**cfg.__dict__, "l1_coeff": lam}), native=use_native)
        for name in PARAM_NAMES:
            np.testing.assert_allclose(together.weights[name][i], alone.weights[name][0], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(together.history["sparsity"][i], alone.history["sparsity"][0], rtol=1e-6)
    assert not np.allclose(together.weights["encoder.weight"][0], together.weights["encoder.weight"][2])


def test_plateau_rule_by_hand() -> None:
    rule = PlateauRule(patience=2, min_improvement=0.01)
    # best before the last 2 epochs: 1.0; best within them: 0.995 → 0.5% < 1%: plateau
    assert plateau_reached(np.array([[1.2, 1.0, 0.999, 0.995]]), rule)
    # 0.98 is 2% below 1.0: still improving
    assert not plateau_reached(np.array([[1.2, 1.0, 1.01, 0.98]]), rule)
    # every seed must have reached it
    assert not plateau_reached(np.array([[1.2, 1.0, 0.999, 0.995], [1.2, 1.0, 1.01, 0.98]]), rule)
    assert not plateau_reached(np.array([[1.0, 1.0, 1.0]]), rule)  # needs 2·patience epochs
    assert not plateau_reached(np.ones((1, 10)), PlateauRule(0))  # off
    np.testing.assert_allclose(relative_improvement(np.array([2.0, 1.0, 0.9]), 1), [0.1])


def test_early_stop_ends_training_records_it_and_resume_stays_stopped() -> None:
    data = native_data()
    cfg = small_config(epochs=60, lr=1e-2, lr_step_epochs=1000, early_stop_patience=3,
                       early_stop_min_improvement=0.05, checkpoint_every=1000)
    saved: list[SAETrainState] = []
    result = train_sae(data[:, :12], cfg, on_checkpoint=saved.append)
    run = result.schedule["epochs_run"]
    assert result.schedule["stopped_early"] and 6 <= run < 60
    assert result.history["loss"].shape == (1, run)
    assert plateau_reached(result.history["loss"], PlateauRule(3, 0.05))
    assert not plateau_reached(result.history["loss"][:, :-1], PlateauRule(3, 0.05))  # first epoch it held
    assert "0.05" in result.schedule["early_stop"]["rule"] or "5.00%" in result.schedule["early_stop"]["rule"]
    assert saved[-1].epoch == run and saved[-1].stopped_early  # checkpointed where it stopped
    again = train_sae(data[:, :12], cfg, resume=saved[-1])  # a resumed stopped run trains no more
    assert again.schedule["epochs_run"] == run
    np.testing.assert_array_equal(again.weights["decoder.weight"], result.weights["decoder.weight"])
    fixed = train_sae(data[:, :12], SAEConfig(**{**cfg.__dict__, "early_stop_patience": 0, "epochs": run + 2}))
    assert fixed.schedule["epochs_run"] == run + 2 and not fixed.schedule["stopped_early"]


def test_bad_early_stop_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="patience"):
        train_sae(native_data(), small_config(early_stop_patience=-1))
    with pytest.raises(ValueError, match="minimum improvement"):
        train_sae(native_data(), small_config(early_stop_min_improvement=float("nan")))


@needs_kernel
def test_engine_choice_is_measured_above_the_small_size_and_overridable(monkeypatch) -> None:
    monkeypatch.setattr(sae_engine, "NATIVE_AUTO_MAX_WEIGHTS", 16 * 16)  # make 32×32 "large"
    monkeypatch.setattr(sae_engine, "_engine_choices", {})
    data, cfg = native_data(), native_config(epochs=1, hidden=32)
    result = train_sae(data, cfg)
    assert "measured for d=32, h=32" in result.engine_note and "ms/step" in result.engine_note
    threads, _ = sae_engine._engine_choices[("l1", 32, 32, 1, cfg.batch_size, torch.get_num_threads())]
    assert result.engine == ("native" if threads else "torch")
    for wanted in ("native", "torch"):
        monkeypatch.setenv("SALVE_SAE_ENGINE", wanted)
        assert train_sae(data, cfg).engine == wanted


def test_fast_path_final_loss_equals_the_plain_paper_loop() -> None:
    """The default path (engine picked automatically) and the plain autograd + Adam + StepLR loop
    from the same initial weights and batches end at the same full-data loss (0.01%)."""
    data, cfg = native_data(), native_config(epochs=4, lr_step_epochs=1, l1_coeff=1e-2)
    fast = train_sae(data, cfg)
    plain, _ = reference_epochs(data, cfg, 4)
    with torch.no_grad():
        loss_plain = float(sae_loss(*plain(data), data, cfg.l1_coeff)[0])
        loss_fast = float(sae_loss(*sae_from_arrays(fast.weights)(data), data, cfg.l1_coeff)[0])
        start = sae_from_arrays(_initial_state(cfg, [cfg.seed], *data.shape).params)
        loss_start = float(sae_loss(*start(data), data, cfg.l1_coeff)[0])
    assert loss_fast == pytest.approx(loss_plain, rel=1e-4)
    assert loss_plain < 0.9 * loss_start  # it did train


async def test_tui_sae_screen_says_where_training_stopped_early(tmp_path) -> None:
    from test_tui_helpers import add_sae_history, make_session, wait_for

    from core.discover.sae_schedule import PlateauRule
    from core.store.session import Session
    from salve_tui.app.app import SalveApp
    from salve_tui.app.screens.dashboard import DashboardScreen
    from salve_tui.app.screens.sae_training import SAETrainingScreen

    path = make_session(tmp_path, "s", stages={"data": ("done", "ok")})
    add_sae_history(path, epochs=12)
    schedule = {"epochs_planned": 300, "epochs_run": 12, "stopped_early": True,
                "early_stop": PlateauRule(5, 1e-3).to_dict()}
    with Session.open(path) as session, session.transaction() as tx:
        tx.update_json("summary", sae={"kind": "l1", "schedule": schedule})
    app = SalveApp(sessions_folder=tmp_path, start_session="s")
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), 10)
        await pilot.press("t")
        await wait_for(pilot, lambda: isinstance(app.screen, SAETrainingScreen) and app.screen.loaded)
        panel = app.screen.query_one("#sae-search")
        text = str(panel.render())
        assert panel.display and "stopped early after 12 of 300 epochs" in text
        assert "last 5 epochs is less than 0.10% below" in text


@pytest.mark.native
def test_two_thread_kernel_equals_one_thread_bit_for_bit_and_the_plain_paper_loop(monkeypatch) -> None:
    """At h = 64 the kernel splits the latents into two fixed halves (one per thread, their two
    partial reconstructions summed in a fixed order): one thread running both halves gives the
    same bits as two threads, and the result ends at the plain autograd + Adam loop's loss."""
    data, cfg = native_data(), native_config(hidden=64, epochs=3, lr_step_epochs=1, l1_coeff=1e-2)
    params = _initial_state(cfg, [cfg.seed], *data.shape).params
    orders = torch.stack([torch.randperm(len(data), generator=torch.Generator().manual_seed(5))])
    weights = {}
    for threads in (1, 2):
        trainer = sae_engine.FastSAETrainer({k: torch.from_numpy(v) for k, v in params.items()}, l1_coeff=1e-2,
                                            use_native=True, native_threads=threads)
        latents, norms = torch.empty(1, len(data), 64), torch.empty(1, len(data))
        for _ in range(3):
            trainer.train_epoch(data, orders, cfg.batch_size, 1e-2, latents, norms)
        weights[threads] = trainer.parameters_standard()
    for name in PARAM_NAMES:
        np.testing.assert_array_equal(weights[1][name], weights[2][name])
    monkeypatch.setattr(sae_engine, "default_native_threads", lambda: 2)
    fast = train_sae(data, cfg, native=True)
    assert fast.engine == "native"
    plain, _ = reference_epochs(data, cfg, 3)
    with torch.no_grad():
        loss_plain = float(sae_loss(*plain(data), data, cfg.l1_coeff)[0])
        loss_fast = float(sae_loss(*sae_from_arrays(fast.weights)(data), data, cfg.l1_coeff)[0])
    assert loss_fast == pytest.approx(loss_plain, rel=1e-4)
    for name, value in plain.state_dict().items():
        np.testing.assert_allclose(fast.weights[name][0], value.numpy(), rtol=1e-3, atol=1e-5)


@pytest.mark.native
def test_small_sae_measures_one_against_two_kernel_threads(monkeypatch) -> None:
    """Below the measured size the kernel is always used, on the thread count that measured faster
    (when torch may use 2 threads and the width splits in halves); the note says so."""
    monkeypatch.setattr(sae_engine, "_engine_choices", {})
    monkeypatch.setattr(sae_engine, "default_native_threads", lambda: 2)
    data, cfg = native_data(), native_config(epochs=1, hidden=32)
    result = train_sae(data, cfg)
    threads, why = sae_engine._engine_choices[("l1-kernel", 32, 32, 1, cfg.batch_size, torch.get_num_threads())]
    assert result.engine == "native" and threads in (1, 2)
    assert "on 1 thread(s)" in why and "on 2 thread(s)" in why and "torch" not in why and why in result.engine_note
    monkeypatch.setattr(sae_engine, "default_native_threads", lambda: 1)  # one thread: nothing to measure
    assert "measured" not in train_sae(data, native_config(epochs=1, hidden=64)).engine_note
