"""Sweeps over row chunks (core.control.sweep.sweep_in_row_chunks) equal the one-pass sweep."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core.control.methods.base import CachedInputs, EditRequest
from core.control.sweep import sweep
from core.discover.rankings import class_means
from core.workflow.synthetic import SyntheticSpec, synthetic_model, synthetic_rows

SPEC = SyntheticSpec(n_classes=6, dim=16, hidden=32, noise=1.2, seed=4)


def inputs(n: int = 301) -> CachedInputs:
    model = synthetic_model(SPEC)
    a, labels = synthetic_rows(SPEC, model["D"], 0, n, 1)
    M = class_means(a.astype(np.float64) @ model["D"], labels, SPEC.n_classes)
    return CachedInputs(torch.from_numpy(a), torch.from_numpy(labels), torch.from_numpy(model["W"]),
                        torch.from_numpy(model["b"]), torch.from_numpy(model["D"]), torch.from_numpy(M))


@pytest.mark.parametrize(("method", "mode", "modulation"), [
    ("salve", "suppress", "linear"), ("salve", "suppress", "clamped"), ("salve", "enhance", "linear"),
    ("steer", "suppress", "linear"),
])
@pytest.mark.parametrize("chunk_rows", [7, 100])
def test_row_chunked_sweep_equals_the_one_pass_sweep(method, mode, modulation, chunk_rows) -> None:
    x = inputs()
    for target in (0, 3):
        request = EditRequest(target, None, None, mode, modulation, 50)
        whole = sweep(method, x, request)
        chunked = sweep(method, x, request, chunk_rows=chunk_rows)
        assert chunked.features == whole.features and chunked.class_counts == whole.class_counts
        torch.testing.assert_close(chunked.alphas, whole.alphas, rtol=0, atol=0)
        torch.testing.assert_close(chunked.per_class_accuracy, whole.per_class_accuracy, rtol=0, atol=0,
                                   equal_nan=True)
        torch.testing.assert_close(chunked.target_prediction, whole.target_prediction, rtol=0, atol=0,
                                   equal_nan=True)
        assert float(whole.per_class_accuracy[target, -1]) != float(whole.per_class_accuracy[target, 0])  # it moves


def test_chunks_report_progress_and_rome_runs_in_one_piece() -> None:
    x = inputs()
    seen = []
    sweep("salve", x, EditRequest(1, n_points=20), chunk_rows=50, progress=seen.append)
    assert [p.done for p in seen if p.stage == "sweep" and "rows" in p.message][-1] == 301
    whole = sweep("rome", x, EditRequest(1, n_points=20))
    chunked = sweep("rome", x, EditRequest(1, n_points=20), chunk_rows=50)
    torch.testing.assert_close(chunked.per_class_accuracy, whole.per_class_accuracy, equal_nan=True)
