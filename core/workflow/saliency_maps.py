"""Session saliency: Grad-FAM of a feature / Grad-CAM of a class on one sample, as arrays and PNGs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from core.store.session import Session
from core.workflow.assets import (
    HEATMAPS_DIR,
    MODEL_LOCK,
    VisualAssets,
    check_feature,
    check_sample,
    head_input_and_logits,
    load_assets,
    resolve_class,
    target_path,
)


@dataclass
class SaliencyResult:
    """One test sample's Grad-FAM (feature) or Grad-CAM (class) map, ready to draw."""

    sample: int
    method: str  # "Grad-FAM" or "Grad-CAM"
    target: int  # feature index (Grad-FAM) or class index (Grad-CAM)
    layer: str
    label: int
    prediction: int
    score: float  # u_k (Grad-FAM) or the class logit (Grad-CAM) on this sample
    image: np.ndarray  # (H, W, 3) uint8
    heat: np.ndarray  # (H, W) in [0, 1]

    @property
    def feature(self) -> int | None:
        """The SAE feature of a Grad-FAM map (None for Grad-CAM), so callers need not check
        ``method`` before reading ``target``."""
        return self.target if self.method == "Grad-FAM" else None

    @property
    def latent(self) -> float | None:
        """``u_k`` of the sample for a Grad-FAM map (None for Grad-CAM)."""
        return self.score if self.method == "Grad-FAM" else None

    def title(self, class_names: Sequence[str]) -> str:
        what = (
            f"feature {self.target} (u = {self.score:+.3g})"
            if self.method == "Grad-FAM"
            else f"class {class_names[self.target]} (logit {self.score:+.3g})"
        )
        return (
            f"{self.method} · {what} · layer {self.layer}\n"
            f"test sample {self.sample}: {class_names[self.label]}, "
            f"predicted {class_names[self.prediction]}"
        )

def saliency_map(
    session: Session,
    sample: int,
    feature: int | None = None,
    class_: str | int | None = None,
    layer: str | None = None,
    assets: VisualAssets | None = None,
) -> SaliencyResult:
    """Grad-FAM of SAE ``feature`` or Grad-CAM of class ``class_`` for test sample ``sample``.

    ``layer`` defaults to SPEC §6's choice for the model and image size
    (:func:`core.validate.saliency.default_target_layer`).
    """
    from core.validate.saliency import default_target_layer, grad_cam, grad_fam

    if (feature is None) == (class_ is None):
        raise ValueError("give exactly one of a feature (Grad-FAM) or a class (Grad-CAM)")
    assets = assets or load_assets(session)
    sample = check_sample(assets, sample)
    classes = assets.class_names
    if feature is not None:
        target, method = check_feature(assets, feature), "Grad-FAM"
    else:
        target, method = resolve_class(classes, class_), "Grad-CAM"
    index = np.array([sample])
    batch = assets.test.load_batch(index).to(assets.device)
    with MODEL_LOCK:
        chosen = layer or default_target_layer(assets.model, assets.image_size)
        a, logits = head_input_and_logits(assets.model, batch)
        if method == "Grad-FAM":
            with torch.no_grad():
                score = float(assets.sae.encode(a)[0, target])
            heat = grad_fam(assets.model, assets.sae, batch, target, chosen)
        else:
            score = float(logits[0, target])
            heat = grad_cam(assets.model, batch, target, chosen)
    return SaliencyResult(
        sample=sample,
        method=method,
        target=target,
        layer=chosen,
        label=int(assets.test.labels[sample]),
        prediction=int(logits[0].argmax()),
        score=score,
        image=assets.test.raw_images(index)[0],
        heat=heat[0].detach().cpu().numpy(),
    )

def saliency_filename(result: SaliencyResult, class_names: Sequence[str]) -> str:
    from core.workflow.figures import safe_filename

    if result.method == "Grad-FAM":
        what = f"feature {result.target}"
        prefix = "gradfam"
    else:
        what = f"class {class_names[result.target]}"
        prefix = "gradcam"
    return safe_filename(prefix, f"sample {result.sample}", what, result.layer, ext=".png")

def save_saliency(
    session: Session,
    result: SaliencyResult,
    class_names: Sequence[str],
    out: str | Path | None = None,
) -> Path:
    """Draw ``result`` as an overlay PNG with a colour bar; default folder ``<exports>/heatmaps``.
    The caption carries the session's quality warnings."""
    from core.workflow.figures import save_heatmap_overlay
    from core.workflow.quality import figure_warning_lines

    default = session.exports_dir / HEATMAPS_DIR / saliency_filename(result, class_names)
    return save_heatmap_overlay(
        result.image,
        result.heat,
        target_path(out, default),
        title=result.title(class_names),
        colorbar_label=f"{result.method} relevance (normalised)",
        caption=figure_warning_lines(session, width=70),
    )

def saliency_png(
    session: Session,
    sample: int,
    feature: int | None = None,
    class_: str | int | None = None,
    layer: str | None = None,
    out: str | Path | None = None,
) -> Path:
    """Write the Grad-FAM/Grad-CAM overlay (image + jet map + colour bar) of one test sample.

    Default location: ``<exports>/heatmaps/gradfam_sample-I_feature-K_<layer>.png`` (or
    ``gradcam_..._class-NAME_...``); ``out`` overrides it.
    """
    assets = load_assets(session)
    result = saliency_map(session, sample, feature, class_, layer, assets)
    return save_saliency(session, result, assets.class_names, out)

def class_gradfam_png(
    session: Session, class_index: int, assets: VisualAssets | None = None,
    caption: list[str] | None = None,
) -> Path | None:
    """Grad-FAM of class ``class_index``'s dominant feature on the test sample that drives it
    most (highest ``u_k``, or lowest when the class mean is negative), into
    ``<exports>/heatmaps``; None when the class has no dominant feature. ``caption``: lines
    under the figure (default: the session's quality warnings)."""
    from core.workflow.figures import safe_filename, save_heatmap_overlay
    from core.workflow.quality import figure_warning_lines

    k = int(session.read_array("rankings/dominant")[class_index])
    if k < 0:
        return None
    mean = float(session.read_array("rankings/class_means")[class_index, k])
    top = session.read_array("rankings/top_neg" if mean < 0 else "rankings/top_pos")
    sample = int(top[k][0])
    assets = assets or load_assets(session)
    names = assets.class_names
    result = saliency_map(session, sample, feature=k, assets=assets)
    path = session.exports_dir / HEATMAPS_DIR / safe_filename(
        "gradfam", f"class {names[class_index]}", f"feature {k}", f"sample {sample}",
        result.layer, ext=".png",
    )
    if caption is None:
        caption = figure_warning_lines(session, width=70)
    return save_heatmap_overlay(result.image, result.heat, path, title=result.title(names),
                                caption=caption)
