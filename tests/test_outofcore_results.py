"""Out-of-core ground truth, sweeps and α_crit: chunked runs under a tiny budget equal the
in-memory ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from core.store.session import Session, copy_session
from core.validate.groundtruth import auroc_matrix
from core.workflow.outofcore import LatentColumns, latent_aurocs
from core.workflow.pipeline import load_activations, load_sae


@pytest.fixture
def tiny_copy(tmp_path: Path, built_session_path: Path) -> Path:
    path = tmp_path / "tiny.h5"
    copy_session(built_session_path, path)
    return path


def test_latent_column_blocks_give_the_one_pass_auroc_table_bit_for_bit(tiny_copy: Path) -> None:
    with Session.open(tiny_copy, read_only=True) as session:
        sae = load_sae(session)
        a = load_activations(session, "test")["a"]
        rows = np.arange(0, len(a), 3)  # a subset: rows spread over the split
        presence = np.random.default_rng(0).random((len(rows), 3)) < 0.4
        blocks = LatentColumns(session, sae, "activations/test/a", rows, budget=32 * len(rows) * 5)  # 5 columns a block
        assert blocks.block_columns == 5 and not blocks.in_memory
        table = latent_aurocs(blocks, presence)
        assert blocks.passes == 4  # 16 latents in blocks of 5: four encoding passes
        whole = LatentColumns(session, sae, "activations/test/a", rows)
        assert whole.in_memory
        np.testing.assert_array_equal(table, latent_aurocs(whole, presence))
        with torch.no_grad():
            direct = sae.encode(torch.from_numpy(a[rows])).numpy().astype(np.float64)
        np.testing.assert_array_equal(table, auroc_matrix(direct, presence))
        np.testing.assert_array_equal(blocks.columns([7, 2]), direct[:, [7, 2]])


def test_groundtruth_in_column_blocks_equals_the_in_memory_result(tiny_copy: Path) -> None:
    from core.workflow.ground_truth import run_groundtruth

    with Session.open(tiny_copy, read_only=True) as session:
        one_pass = run_groundtruth(session, record=False)
        chunked = run_groundtruth(session, record=False, budget=2048)  # 1–2 latent columns a block
    assert chunked == one_pass
    assert one_pass["shared_part"]["best_latent"]["selected_on"] == "train"


# --------------------------------------------------------------------------- sweeps and α_crit

C, DIM = 10, 32


@pytest.fixture(scope="module")
def big_test_split(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A test split of 5,000 × 32 float32 (640 kB): over half of a 1 MiB budget, so streamed."""
    from core.config import SAEConfig, demo_config
    from core.workflow.pipeline import run_rankings
    from core.workflow.synthetic import SyntheticSpec, build_synthetic_session

    path = tmp_path_factory.mktemp("streamed") / "s.h5"
    config = demo_config("s")
    config.sae = SAEConfig(hidden=64)
    build_synthetic_session(path, SyntheticSpec(n_classes=C, dim=DIM, hidden=64, n_train=400, n_test=5000,
                                                noise=1.0), config)
    with Session.open(path) as session:
        run_rankings(session)
    return path


def assert_same_sweep(a, b) -> None:
    assert a.features == b.features and a.class_counts == b.class_counts and a.target_class == b.target_class
    for name in ("alphas", "per_class_accuracy", "target_prediction"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), rtol=0, atol=0, equal_nan=True)


def assert_same_crit(a, b) -> None:
    assert (a.target_class, a.feature, a.alpha50, a.alpha_max) == (b.target_class, b.feature, b.alpha50, b.alpha_max)
    for name in ("sample_index", "prediction", "z", "S", "analytic", "numerical", "validity_below_zero"):
        torch.testing.assert_close(getattr(a, name), getattr(b, name), rtol=0, atol=0, equal_nan=True)
    assert a.validity_histogram == b.validity_histogram


@pytest.mark.parametrize(("method", "mode", "modulation"), [
    ("salve", "suppress", "linear"), ("salve", "suppress", "clamped"), ("salve", "enhance", "linear"),
    ("steer", "suppress", "linear"), ("rome", "suppress", "linear"),
])
def test_streamed_sweep_equals_the_in_memory_sweep_bit_for_bit(big_test_split: Path, monkeypatch,
                                                                method, mode, modulation) -> None:
    from core.config import MEMORY_BUDGET_ENV
    from core.workflow.inputs import clear_input_cache, load_inputs
    from core.workflow.sweeps import run_sweep

    clear_input_cache()
    monkeypatch.setenv(MEMORY_BUDGET_ENV, "90%")  # the split fits: in memory, one pass
    with Session.open(big_test_split, read_only=True) as session:
        one_pass = run_sweep(session, 3, None, mode, method, modulation, n_alphas=40, record=False)
        monkeypatch.setenv(MEMORY_BUDGET_ENV, "1M")
        in_memory = run_sweep(session, 3, None, mode, method, modulation, n_alphas=40, record=False,
                              inputs=load_inputs(session))  # same chunks, activations in memory
        seen = []
        streamed = run_sweep(session, 3, None, mode, method, modulation, n_alphas=40, record=False,
                             progress=seen.append)
    assert_same_sweep(streamed, in_memory)
    assert_same_sweep(streamed, one_pass)
    if method != "rome":  # ROME cannot run in row chunks: it loads the split
        assert any("from disk" in p.message for p in seen)
    assert float(streamed.per_class_accuracy[3, 0]) != float(streamed.per_class_accuracy[3, -1])


def test_streamed_alpha_crit_equals_the_in_memory_result_bit_for_bit(big_test_split: Path, monkeypatch) -> None:
    from core.config import MEMORY_BUDGET_ENV
    from core.workflow.alpha_crit import run_alpha_crit
    from core.workflow.inputs import clear_input_cache, row_inputs_for

    clear_input_cache()
    monkeypatch.setenv(MEMORY_BUDGET_ENV, "90%")  # the split fits: in memory
    with Session.open(big_test_split, read_only=True) as session:
        in_memory = run_alpha_crit(session, None, record=False)
        assert not row_inputs_for(session, None, "test").streamed
        monkeypatch.setenv(MEMORY_BUDGET_ENV, "1M")
        x = row_inputs_for(session, None, "test")
        assert x.streamed and x.A.numel() == 0
        streamed = run_alpha_crit(session, None, record=False, inputs=x)
        assert x.rows.passes == 3  # 10 classes of ~500 rows: groups of 4, 4 and 2
        cross = run_alpha_crit(session, [1, 2], feature=5, mode="enhance", modulation="clamped", record=False)
        monkeypatch.setenv(MEMORY_BUDGET_ENV, "90%")
        cross_memory = run_alpha_crit(session, [1, 2], feature=5, mode="enhance", modulation="clamped",
                                      record=False)
    assert len(streamed) == len(in_memory) == C
    for a, b in zip(streamed, in_memory, strict=True):
        assert_same_crit(a, b)
    for a, b in zip(cross, cross_memory, strict=True):
        assert_same_crit(a, b)


def test_streamed_all_dominant_job_stores_the_in_memory_records(big_test_split: Path, tmp_path: Path,
                                                                monkeypatch) -> None:
    from core.config import MEMORY_BUDGET_ENV
    from core.workflow.all_dominant import run_all_dominant
    from core.workflow.alpha_crit import load_alpha_crit
    from core.workflow.inputs import clear_input_cache
    from core.workflow.sweeps import list_sweeps, load_sweep

    memory_path, streamed_path = tmp_path / "m.h5", tmp_path / "s.h5"
    copy_session(big_test_split, memory_path)
    copy_session(big_test_split, streamed_path)
    clear_input_cache()
    monkeypatch.setenv(MEMORY_BUDGET_ENV, "90%")
    with Session.open(memory_path) as session:
        run_all_dominant(session, n_alphas=30)
        memory_sweeps = {k: load_sweep(session, k) for k in list_sweeps(session)}
        memory_crit = load_alpha_crit(session)
    monkeypatch.setenv(MEMORY_BUDGET_ENV, "1M")
    with Session.open(streamed_path) as session:
        from core.workflow.inputs import row_inputs_for

        assert row_inputs_for(session, None, "test").streamed
        outcome = run_all_dominant(session, n_alphas=30)
        streamed_sweeps = {k: load_sweep(session, k) for k in list_sweeps(session)}
        streamed_crit = load_alpha_crit(session)
    assert len(outcome.computed) == C and sorted(streamed_sweeps) == sorted(memory_sweeps)
    for key, value in memory_sweeps.items():
        assert_same_sweep(streamed_sweeps[key], value)
    for a, b in zip(streamed_crit, memory_crit, strict=True):
        assert_same_crit(a, b)


@pytest.mark.parametrize(("mode", "modulation"), [("suppress", "linear"), ("suppress", "clamped"),
                                                  ("enhance", "linear")])
@pytest.mark.parametrize("row_chunk", [1, 37, 499])
def test_alpha_crit_in_sample_chunks_equals_the_one_pass_result(big_test_split: Path, mode, modulation,
                                                                row_chunk) -> None:
    from core.control.alpha_crit import class_alpha_crit
    from core.workflow.inputs import clear_input_cache, load_inputs

    clear_input_cache()
    with Session.open(big_test_split, read_only=True) as session:
        x = load_inputs(session)
    k = int(x.dominant[4])
    whole = class_alpha_crit(x.A, x.labels, x.W, x.b, x.D, 4, k, mode, modulation, row_chunk=None)
    chunked = class_alpha_crit(x.A, x.labels, x.W, x.b, x.D, 4, k, mode, modulation, row_chunk=row_chunk)
    assert int((x.labels == 4).sum()) > row_chunk
    # float64 row products may round differently in batches of other sizes: equal to 1e-12
    assert (chunked.alpha50, chunked.validity_histogram["counts"]) == (whole.alpha50, whole.validity_histogram["counts"])
    assert chunked.alpha_max == pytest.approx(whole.alpha_max, rel=1e-12)
    for name in ("sample_index", "prediction"):
        torch.testing.assert_close(getattr(chunked, name), getattr(whole, name), rtol=0, atol=0)
    for name in ("z", "S", "analytic", "numerical", "validity_below_zero"):
        torch.testing.assert_close(getattr(chunked, name), getattr(whole, name), rtol=1e-12, atol=1e-12,
                                   equal_nan=True)
    if mode == "suppress":
        assert whole.validity_histogram["total_count"] > 0


def test_cli_sweep_and_alpha_crit_stream_past_the_budget(big_test_split: Path, tmp_path: Path, monkeypatch,
                                                         capsys) -> None:
    import json

    from core.config import MEMORY_BUDGET_ENV
    from salve_tui.cli.main import main

    monkeypatch.setenv(MEMORY_BUDGET_ENV, "90%")  # main sets it too: monkeypatch removes it afterwards
    path = tmp_path / "cli.h5"
    copy_session(big_test_split, path)
    outputs = {}
    for budget in ("1M", "90%"):
        assert main(["sweep", str(path), "--class", "2", "--n-alphas", "30", "--no-record", "--json",
                     "--memory-budget", budget]) == 0
        sweep = json.loads(capsys.readouterr().out)
        assert main(["alpha-crit", str(path), "--class", "2", "--no-record", "--json",
                     "--memory-budget", budget]) == 0
        outputs[budget] = (sweep, json.loads(capsys.readouterr().out))
    (streamed, crit_streamed), (memory, crit_memory) = outputs["1M"], outputs["90%"]
    assert streamed["selectivity"] is None and memory["selectivity"] is not None  # needs both splits in memory
    assert streamed["per_class_accuracy"] == memory["per_class_accuracy"] and streamed["alphas"] == memory["alphas"]
    assert streamed["alpha_crit"] == memory["alpha_crit"]
    assert crit_streamed["summaries"] == crit_memory["summaries"]


@pytest.mark.parametrize(("method", "modulation"), [("salve", "linear"), ("salve", "clamped"), ("steer", "linear")])
def test_curve_batches_sized_from_a_tiny_budget_give_the_same_sweep(big_test_split: Path, monkeypatch,
                                                                     method, modulation) -> None:
    """The curve's batches follow the budget (three α values a batch at 1 MiB here) and the
    curve is the default-batch curve bit for bit."""
    from core.config import MEMORY_BUDGET_ENV
    from core.control.curves import DEFAULT_CHUNK_ELEMENTS, curve_chunk_elements
    from core.control.methods.base import EditRequest
    from core.control.sweep import sweep
    from core.workflow.inputs import clear_input_cache, load_inputs

    assert curve_chunk_elements(1 << 20) == 16384 < curve_chunk_elements(256 << 20) == 1 << 22
    assert curve_chunk_elements(1 << 40) == DEFAULT_CHUNK_ELEMENTS
    clear_input_cache()
    monkeypatch.setenv(MEMORY_BUDGET_ENV, "90%")
    with Session.open(big_test_split, read_only=True) as session:
        x = load_inputs(session).cached()
        default = sweep(method, x, EditRequest(3, None, None, "suppress", modulation, 40))
        monkeypatch.setenv(MEMORY_BUDGET_ENV, "1M")
        seen = []
        tiny = sweep(method, x, EditRequest(3, None, None, "suppress", modulation, 40), progress=seen.append)
    assert_same_sweep(tiny, default)
    assert len({p.done for p in seen}) >= 14  # ≥ ⌈40 / 3⌉ batches (16,384 // 5,000 values each)


def test_split_rows_read_blocks_and_class_rows_through_one_buffer(big_test_split: Path) -> None:
    """Row blocks come from one reused buffer (a block is valid until the next) and equal the
    stored rows; class rows equal ``A[labels == c]``; a class past the budget is warned about."""
    from core.workflow.outofcore import MemoryBudgetWarning, SplitRows

    with Session.open(big_test_split, read_only=True) as session:
        A = session.read_array("activations/test/a")
        labels = session.read_array("activations/test/labels")
        rows = SplitRows(session, "activations/test/a", labels, budget=4 * DIM * 4 * 700)  # 700-row blocks
        pointers, starts = set(), []
        for start, block in rows.blocks(1200):
            np.testing.assert_array_equal(block.numpy(), A[start : start + 1200])
            pointers.add(block.data_ptr())
            starts.append(start)
        assert starts == [0, 1200, 2400, 3600, 4800] and len(pointers) == 1
        picked = rows.class_rows([2, 7])
        for c in (2, 7):
            np.testing.assert_array_equal(picked[c].numpy(), A[labels == c])
        with pytest.warns(MemoryBudgetWarning, match=r"class 2: its activations \(0 MiB\) .* budget \(0 MiB\)"):
            SplitRows(session, "activations/test/a", labels, budget=1024).class_rows([2])
