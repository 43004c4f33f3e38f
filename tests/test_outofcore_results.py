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
        blocks = LatentColumns(session, sae, "test", rows, budget=32 * len(rows) * 5)  # 5 columns a block
        assert blocks.block_columns == 5 and not blocks.in_memory
        table = latent_aurocs(blocks, presence)
        assert blocks.passes == 4  # 16 latents in blocks of 5: four encoding passes
        whole = LatentColumns(session, sae, "test", rows)
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
