"""Activation normalisation before SAE training: the scale is folded back into the stored
weights, so encode/decode, edits and α_crit are exactly those of the SAE in raw units."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from core.control.alpha_crit import class_alpha_crit
from core.control.methods.salve import apply_salve_edit
from core.control.spec import EditSpec
from core.discover.sae import explained_variance, fold_scale, normalization_scale, sae_from_arrays


def _weights(d: int = 12, h: int = 24, seed: int = 0) -> dict[str, np.ndarray]:
    g = np.random.default_rng(seed)
    return {"encoder.weight": g.normal(size=(h, d)), "encoder.bias": g.normal(size=h),
            "decoder.weight": g.normal(size=(d, h)), "decoder.bias": g.normal(size=d)}


def test_scale_gives_unit_mean_square_per_coordinate() -> None:
    a = torch.randn(500, 12, dtype=torch.float64) * 7.0 + 3.0
    s = normalization_scale(a)
    assert float((s * a).pow(2).sum(1).mean()) == pytest.approx(12.0)
    with pytest.raises(ValueError, match="all zero"):
        normalization_scale(torch.zeros(3, 4))


def test_folded_sae_is_the_trained_one_in_raw_units() -> None:
    w, s = _weights(), 0.37
    trained, folded = sae_from_arrays(w).double(), sae_from_arrays(fold_scale(w, s)).double()
    a = torch.randn(50, 12, dtype=torch.float64)
    u_trained, rec_trained = trained(s * a)
    u_folded, rec_folded = folded(a)
    torch.testing.assert_close(u_folded, u_trained, rtol=1e-5, atol=1e-5)  # float32 weights
    torch.testing.assert_close(rec_folded, rec_trained / s, rtol=1e-5, atol=1e-5)


def test_edits_and_alpha_crit_are_exact_in_raw_units() -> None:
    # Folding divides D by s: 1 − α|D_jk|/s, so the edit at α on the folded decoder is the edit
    # at α/s on the normalised one, factor for factor, and α_crit scales by exactly s.
    g = torch.Generator().manual_seed(1)
    d, h, C, s = 12, 6, 3, 0.25
    D = torch.randn(d, h, generator=g, dtype=torch.float64)
    W = torch.randn(C, d, generator=g, dtype=torch.float64)
    A = torch.relu(torch.randn(60, d, generator=g, dtype=torch.float64)) + 0.1
    labels = torch.arange(60) % C
    folded = D / s
    for modulation in ("linear", "clamped"):
        spec = EditSpec(method="salve", features=(2,), alpha=1.5, mode="suppress", modulation=modulation)
        spec_norm = EditSpec(method="salve", features=(2,), alpha=1.5 / s, mode="suppress",
                             modulation=modulation)
        torch.testing.assert_close(apply_salve_edit(W, folded, spec), apply_salve_edit(W, D, spec_norm))
        raw = class_alpha_crit(A, labels, W, None, folded, 0, 2, modulation=modulation)
        norm = class_alpha_crit(A, labels, W, None, D, 0, 2, modulation=modulation)
        torch.testing.assert_close(raw.analytic, s * norm.analytic, equal_nan=True)
        torch.testing.assert_close(raw.numerical, s * norm.numerical, equal_nan=True, rtol=1e-9, atol=0)


def test_pipeline_stores_raw_unit_weights(tmp_path: Path) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from conftest import tiny_config

    from core.store.session import Session
    from core.workflow.pipeline import load_activations, load_sae_arrays, run_pipeline

    config = tiny_config()
    config.sae.normalize = True
    with Session.create(tmp_path / "n.h5", config) as session:
        run_pipeline(session, ["data", "backbone", "activations", "sae"])
        summary = session.summary()["sae"]
        train = load_activations(session, "train")["a"]
        load_weights = load_sae_arrays(session)
        sae = sae_from_arrays(load_weights)
    assert summary["normalized"] and summary["activation_scale"] == pytest.approx(
        normalization_scale(torch.from_numpy(train)), rel=1e-9)
    scale = summary["activation_scale"]
    raw = torch.from_numpy(train)
    training_space = sae_from_arrays(fold_scale(load_weights, 1.0 / scale))
    with torch.no_grad():
        _, rec_raw = sae(raw)
        _, rec_trained = training_space(raw * scale)
    # The stored raw-unit SAE is the trained one: same explained variance, reconstructions 1/s.
    assert explained_variance(raw, rec_raw) == pytest.approx(
        explained_variance(raw * scale, rec_trained), abs=1e-4)
    torch.testing.assert_close(rec_raw, rec_trained / scale, rtol=1e-4, atol=1e-4)
