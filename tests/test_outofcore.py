"""Out-of-core compute under a memory budget: chunked passes equal the in-memory ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from core.config import MEMORY_BUDGET_ENV, SAEConfig, demo_config, memory_budget, parse_memory_size
from core.discover.rankings import ClassMeans, TopActivating, class_means, top_activating
from core.discover.sae import encode
from core.store.session import Session, copy_session
from core.workflow.pipeline import load_sae, run_rankings, run_sae
from core.workflow.synthetic import SyntheticSpec, build_synthetic_session


def tied_latents(n: int = 500, h: int = 12, seed: int = 0) -> np.ndarray:
    """ReLU-like latents on a coarse grid: many exact ties (zeros and repeated values)."""
    rng = np.random.default_rng(seed)
    return np.maximum(0, np.round(rng.normal(size=(n, h)) * 2) / 2).astype(np.float32) * rng.choice([1, -1], h)


@pytest.mark.parametrize("chunk", [1, 7, 64, 499, 500])
def test_chunked_class_means_and_top_samples_equal_in_memory_bit_for_bit(chunk: int) -> None:
    u = tied_latents()
    labels = np.random.default_rng(1).integers(0, 6, len(u))
    labels[labels == 4] = 5  # class 4 has no samples: a NaN row either way
    means, top = ClassMeans(6), TopActivating(k=16)
    for start in range(0, len(u), chunk):
        means.add(u[start : start + chunk], labels[start : start + chunk])
        top.add(u[start : start + chunk])
    np.testing.assert_array_equal(means.result(), class_means(u, labels, 6))
    for key, value in top.result().items():
        np.testing.assert_array_equal(value, top_activating(u, 16)[key])


def test_top_samples_break_ties_by_the_lower_index_across_chunks() -> None:
    u = np.zeros((10, 1), dtype=np.float32)
    u[[2, 5, 8], 0] = 1.0  # three equal maxima in three different chunks
    top = TopActivating(k=2)
    for start in range(0, 10, 3):
        top.add(u[start : start + 3])
    assert top.result()["pos"].tolist() == [[2, 5]]
    assert top.result()["neg"].tolist() == [[0, 1]]


def test_memory_budget_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(MEMORY_BUDGET_ENV, "1.5G")
    assert memory_budget() == int(1.5 * 2**30)
    assert memory_budget("256M") == 256 * 2**20  # a flag beats the variable
    monkeypatch.setenv(MEMORY_BUDGET_ENV, "lots")
    with pytest.raises(ValueError, match=MEMORY_BUDGET_ENV):
        memory_budget()
    monkeypatch.delenv(MEMORY_BUDGET_ENV)
    assert 0 < memory_budget() < parse_memory_size("100%")
    assert parse_memory_size("2048K") == 2 * 2**20 and parse_memory_size("1GiB") == 2**30


def synthetic(path: Path, n_train: int = 600, epochs: int = 12) -> Path:
    config = demo_config(path.stem)
    config.sae = SAEConfig(hidden=64, epochs=epochs, batch_size=32, lr=3e-3, l1_coeff=1e-2,
                           lr_step_epochs=6, checkpoint_every=4)
    return build_synthetic_session(path, SyntheticSpec(n_classes=10, dim=32, hidden=64, n_train=n_train,
                                                       n_test=300), config)


def test_rankings_stage_in_chunks_equals_the_in_memory_ranking(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv(MEMORY_BUDGET_ENV, "1M")  # chunks of 128 rows: 5 train and 3 test chunks
    path = synthetic(tmp_path / "s.h5")
    seen = []
    with Session.open(path) as session:
        run_rankings(session, progress=lambda p: seen.append(p.message))
        sae = load_sae(session)
        train, test = session.read_arrays("activations/train"), session.read_arrays("activations/test")
        stored = {k: session.read_array(f"rankings/{k}") for k in ("class_means", "dominant", "top_pos", "top_neg")}
    assert sum("encoding" in m for m in seen) == 8
    u_train = encode(sae, torch.from_numpy(train["a"])).numpy()
    u_test = encode(sae, torch.from_numpy(test["a"])).numpy()
    np.testing.assert_array_equal(stored["class_means"], class_means(u_train, train["labels"], 10))
    top = top_activating(u_test, 16)
    np.testing.assert_array_equal(stored["top_pos"], top["pos"])
    np.testing.assert_array_equal(stored["top_neg"], top["neg"])
    assert stored["dominant"].tolist() == SyntheticSpec(n_classes=10, hidden=64).owners().tolist()


def test_sae_stage_streams_over_budget_with_the_in_memory_loss(tmp_path: Path, monkeypatch) -> None:
    """4,000 × 32 rows need ~2.8 MB in memory: a 1 MiB budget streams them in windows."""
    memory_path = synthetic(tmp_path / "memory.h5", n_train=4000)
    streamed_path = tmp_path / "streamed.h5"
    copy_session(memory_path, streamed_path)
    with Session.open(memory_path) as session:
        run_sae(session)
        memory = session.read_arrays("sae/history")
        assert session.summary()["sae"]["streamed"] is False
    monkeypatch.setenv(MEMORY_BUDGET_ENV, "1M")
    messages = []
    with Session.open(streamed_path) as session:
        run_sae(session, progress=lambda p: messages.append(p.message))
        streamed = session.read_arrays("sae/history")
        assert session.summary()["sae"]["streamed"] is True
        assert session.stage_done("sae")
    assert any("streaming 4,000 × 32 activations" in m for m in messages)
    assert abs(streamed["loss"][-1] - memory["loss"][-1]) / memory["loss"][-1] < 0.02
    assert memory["loss"][-1] < 0.5 * memory["loss"][0]


def test_data_parallel_sae_over_budget_streams_like_one_process(tmp_path: Path, monkeypatch) -> None:
    """Over the budget a data-parallel rank streams too (it used to load every activation on
    each rank); with one rank it is the single-process streamed training."""
    from core.discover.sae_train import DataParallel

    class WorldOfOne(DataParallel):  # one rank: the all-reduce of one share is that share
        def all_reduce(self, tensor: torch.Tensor) -> None:
            return None

    one = synthetic(tmp_path / "one.h5", n_train=4000)
    ddp = synthetic(tmp_path / "ddp.h5", n_train=4000)
    monkeypatch.setenv(MEMORY_BUDGET_ENV, "1M")
    from core.discover import native

    # the reference on the torch engine, as data-parallel runs (the library is looked up once
    # a process: SALVE_NATIVE=0 would not reach an earlier test's choice)
    monkeypatch.setattr(native, "_attempted", True)
    monkeypatch.setattr(native, "_loaded", None)
    messages: list[str] = []
    with Session.open(one) as session:
        run_sae(session)
        assert session.summary()["sae"]["streamed"] is True
        assert session.summary()["sae"]["engine"] == "torch"
        ref = session.read_arrays("sae/weights")
    with Session.open(ddp) as session:
        run_sae(session, progress=lambda p: messages.append(p.message), data_parallel=WorldOfOne(0, 1))
        assert session.summary()["sae"]["streamed"] is True
        assert session.summary()["sae"]["engine"] == "torch"
        got = session.read_arrays("sae/weights")
    assert any("streaming 4,000 × 32 activations" in m for m in messages)
    assert not any(m.startswith("warning") for m in messages)
    for name, value in ref.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-6, atol=1e-7, err_msg=name)


def test_cli_memory_budget_flag_streams_the_sae_stage(tmp_path: Path, monkeypatch, capsys) -> None:
    from salve_tui.cli.main import main

    # main sets the variable itself: setenv (not delenv of an absent name) makes monkeypatch
    # remove it again after the test
    monkeypatch.setenv(MEMORY_BUDGET_ENV, "90%")
    path = synthetic(tmp_path / "flag.h5", n_train=4000, epochs=2)
    assert main(["run", str(path), "sae", "--force", "--memory-budget", "1M"]) == 0
    with Session.open(path, read_only=True) as session:
        assert session.summary()["sae"]["streamed"] is True
    assert main(["run", str(path), "sae", "--memory-budget", "1k"]) == 2
    assert "too small" in capsys.readouterr().err
