"""Session faithfulness of Grad-FAM and Grad-CAM (deletion / insertion vs random order).

For every class's dominant feature k (or the features given), the test samples of that class
that drive ``s·u_k`` hardest (``s = sign μ_ck``, the sign the class uses) are scored: Grad-FAM of
k tracking ``s·u_k``, and Grad-CAM of the class tracking its logit. Works on any dataset: it
needs no ground truth, only the model, the SAE and the test images.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.jobs import CancelToken, ProgressFn, ProgressReporter, check_cancel
from core.store.session import Session
from core.validate.faithfulness import DEFAULT_RANDOM_ORDERS, DEFAULT_STEPS, sample_curves
from core.workflow.assets import FIGURES_DIR, MODEL_LOCK, head_input_and_logits, load_assets

DEFAULT_SAMPLES = 4


def _mean(rows: list[dict[str, float]], key: str) -> float:
    return float(np.mean([r[key] for r in rows]))


def run_faithfulness(
    session: Session,
    features: Sequence[int] | None = None,
    samples: int = DEFAULT_SAMPLES,
    steps: int = DEFAULT_STEPS,
    n_random: int = DEFAULT_RANDOM_ORDERS,
    layer: str | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
    figure: bool = True,
) -> dict[str, Any]:
    """Deletion/insertion AUCs per feature (Grad-FAM) and per class (Grad-CAM), vs random."""
    from core.validate.saliency import default_target_layer

    if samples < 1 or steps < 2 or n_random < 1:
        raise ValueError("samples ≥ 1, steps ≥ 2 and random orders ≥ 1 are needed")
    assets = load_assets(session)
    check_cancel(cancel)
    pairs = _pairs(session, assets, features)
    chosen = layer or default_target_layer(assets.model, assets.image_size)
    reporter = ProgressReporter("faithfulness", len(pairs.pairs), progress)
    per_feature, curves_fam, curves_cam = [], [], []
    for i, (c, k) in enumerate(pairs.pairs):
        check_cancel(cancel)
        entry, fam, cam = _score_pair(assets, pairs, c, k, samples, steps, n_random, chosen, cancel)
        curves_fam += fam
        curves_cam += cam
        per_feature.append(entry)
        reporter.report(i + 1, f"feature {k} ({assets.class_names[c]})")
    result = _result(session.name, chosen, steps, n_random, samples, per_feature)
    if figure and per_feature:
        check_cancel(cancel)
        result["figure"] = str(faithfulness_png(session, curves_fam, curves_cam, chosen))
    return result


@dataclass
class _Pairs:
    """The (class, feature) pairs to score, with what picks their samples: the class means
    (for the sign), the test labels and the test latents."""

    pairs: list[tuple[int, int]]
    means: np.ndarray
    labels: np.ndarray
    latents: torch.Tensor


def _pairs(session: Session, assets: Any, features: Sequence[int] | None) -> _Pairs:
    """Every class with test samples and its dominant feature, or each of ``features`` with the
    class whose mean it moves most."""
    from core.workflow.pipeline import load_activations

    M = np.asarray(session.read_array("rankings/class_means"), dtype=np.float64)
    dominant = [int(k) for k in session.read_array("rankings/dominant")]
    test = load_activations(session, "test")
    labels = np.asarray(test["labels"])
    with torch.no_grad():
        u = assets.sae.encode(torch.from_numpy(np.asarray(test["a"], dtype=np.float32)).to(assets.device)).cpu()
    pairs = ([(c, dominant[c]) for c in range(len(assets.class_names)) if (labels == c).any()]
             if features is None else [(int(np.abs(M[:, k]).argmax()), int(k)) for k in features])
    return _Pairs(pairs, M, labels, u)


def _score_pair(assets: Any, pairs: _Pairs, c: int, k: int, samples: int, steps: int, n_random: int,
                chosen: str, cancel: CancelToken | None = None) -> tuple[dict[str, Any], list, list]:
    """Deletion/insertion curves of feature ``k`` (Grad-FAM, tracking ``s·u_k``) and class ``c``
    (Grad-CAM, tracking its logit) on the class's ``samples`` test images that drive ``s·u_k``
    hardest; returns the feature's entry and both lists of curves."""
    from core.validate.saliency import grad_cam, grad_fam

    sign = 1.0 if pairs.means[c, k] >= 0 else -1.0
    rows = np.nonzero(pairs.labels == c)[0]
    top = rows[np.argsort(-(sign * pairs.latents[rows, k].numpy()))[:samples]]
    batch = assets.test.load_batch(top).to(assets.device)

    def fam_score(x: torch.Tensor) -> torch.Tensor:
        a, _ = head_input_and_logits(assets.model, x)
        return sign * assets.sae.encode(a)[:, k]

    def cam_score(x: torch.Tensor) -> torch.Tensor:
        return head_input_and_logits(assets.model, x)[1][:, c]

    with MODEL_LOCK:
        heat_fam = grad_fam(assets.model, assets.sae, batch, k, chosen).detach()
        heat_cam = grad_cam(assets.model, batch, c, chosen).detach()
        fam, cam = [], []
        for j in range(len(top)):  # a sample's curves take ~0.1–0.5 s: cancel is looked at each
            check_cancel(cancel)
            fam.append(sample_curves(fam_score, batch[j], heat_fam[j], steps, n_random, seed=j))
            cam.append(sample_curves(cam_score, batch[j], heat_cam[j], steps, n_random, seed=j))
    entry = {"class": c, "class_name": assets.class_names[c], "feature": k, "samples": [int(s) for s in top]}
    for label, curves in (("gradfam", fam), ("gradcam", cam)):
        aucs = [f.aucs() for f in curves]
        means = {key: _mean(aucs, key) for key in aucs[0]}
        means["deletion_below_random"] = means["deletion"] < means["deletion_random"]
        means["insertion_above_random"] = means["insertion"] > means["insertion_random"]
        entry[label] = means
    return entry, fam, cam


def _result(name: str, chosen: str, steps: int, n_random: int, samples: int,
            per_feature: list[dict[str, Any]]) -> dict[str, Any]:
    """The JSON result: settings, one entry per feature and the counts that beat random."""
    return {
        "session": name,
        "layer": chosen,
        "steps": steps,
        "random_orders": n_random,
        "samples_per_feature": samples,
        "baseline": "per-channel mean of the image",
        "score": {"gradfam": "s·u_k with s = sign(μ_ck)", "gradcam": "class logit"},
        "normalised_by": "the intact image's score",
        "features": per_feature,
        "summary": {
            method: {
                "deletion_below_random": sum(e[method]["deletion_below_random"] for e in per_feature),
                "insertion_above_random": sum(e[method]["insertion_above_random"] for e in per_feature),
                "n": len(per_feature),
            }
            for method in ("gradfam", "gradcam")
        },
        "figure": None,
    }


def faithfulness_png(session: Session, fam: list, cam: list, layer: str) -> Path:
    """Mean deletion and insertion curves (map order vs random) for Grad-FAM and Grad-CAM,
    captioned with the session's quality warnings."""
    from core.workflow.figures import safe_filename, save_faithfulness_curves
    from core.workflow.quality import figure_warning_lines

    def mean(curves: list, attr: str) -> np.ndarray:
        return torch.stack([getattr(c, attr) for c in curves]).mean(0).numpy()

    panels = {
        method: {attr: mean(curves, attr) for attr in
                 ("deletion", "deletion_random", "insertion", "insertion_random")}
        for method, curves in (("Grad-FAM", fam), ("Grad-CAM", cam))
    }
    return save_faithfulness_curves(
        fam[0].fractions.numpy(), panels,
        session.exports_dir / FIGURES_DIR / safe_filename("faithfulness", layer, ext=".png"),
        title=f"deletion / insertion vs random order (layer {layer}, {len(fam)} samples)",
        caption=figure_warning_lines(session),
    )
