"""Matrix figures: the feature–class matrix (dominant features boxed) and confusion matrices."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from core.workflow.figure_base import _check_names, _new_figure, _save, add_caption


def save_feature_class_matrix(
    matrix: np.ndarray,
    class_names: Sequence[str],
    path: str | Path,
    *,
    dominant: Sequence[int] | None = None,
    title: str = "class-conditional mean latent μ",
    figsize: tuple[float, float] = (8.0, 4.0),
    dpi: int = 100,
    caption: Sequence[str] = (),
) -> Path:
    """Signed heatmap of ``M (C, h)`` on a symmetric diverging scale; ``dominant[c]`` boxed."""
    from matplotlib.patches import Rectangle

    values = np.asarray(matrix, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"matrix must be (classes, features), got shape {values.shape}")
    _check_names(class_names, values.shape[0], "class")
    limit = float(np.nanmax(np.abs(values))) or 1.0
    figure = _new_figure(figsize, dpi)
    axes = figure.add_subplot()
    shown = axes.imshow(values, cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
    axes.set_yticks(range(len(class_names)), labels=class_names, fontsize=7)
    axes.set_xlabel("SAE feature")
    if dominant is not None:
        if len(dominant) != values.shape[0]:
            raise ValueError("dominant needs one feature index per class")
        for c, k in enumerate(dominant):
            axes.add_patch(
                Rectangle((k - 0.5, c - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=1.5)
            )
    if title:
        axes.set_title(title, fontsize=10)
    figure.colorbar(shown, ax=axes, label="μ", shrink=0.9)
    add_caption(figure, caption)
    return _save(figure, path)


def save_confusion_matrices(
    matrices: Mapping[str, np.ndarray],
    class_names: Sequence[str],
    path: str | Path,
    *,
    normalize: bool = True,
    title: str = "",
    panel_inches: float = 4.0,
    dpi: int = 100,
    caption: Sequence[str] = (),
) -> Path:
    """One panel per matrix (e.g. ``{"before": M0, "after": M1}``), rows = true class.

    ``normalize`` divides each row by its count (empty rows stay 0) and prints percentages.
    """
    if not matrices:
        raise ValueError("no confusion matrix given")
    figure = _new_figure((panel_inches * len(matrices), panel_inches), dpi)
    if title:
        figure.suptitle(title, fontsize=10)
    for axes, (name, matrix) in zip(
        figure.subplots(1, len(matrices), squeeze=False).flat, matrices.items(), strict=True
    ):
        counts = np.asarray(matrix, dtype=np.float64)
        if counts.shape != (len(class_names), len(class_names)):
            raise ValueError(
                f"confusion matrix '{name}' has shape {counts.shape}, expected "
                f"({len(class_names)}, {len(class_names)})"
            )
        totals = counts.sum(axis=1, keepdims=True)
        shown = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
        shown = shown if normalize else counts
        axes.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalize else None)
        ticks = range(len(class_names))
        axes.set_xticks(ticks, labels=class_names, rotation=45, ha="right", fontsize=6)
        axes.set_yticks(ticks, labels=class_names, fontsize=6)
        axes.set_xlabel("predicted")
        axes.set_ylabel("true")
        axes.set_title(name, fontsize=9)
        if len(class_names) <= 12:
            high = shown.max() or 1.0
            for (row, col), value in np.ndenumerate(shown):
                text = f"{100 * value:.0f}" if normalize else f"{value:.0f}"
                colour = "white" if value > 0.6 * high else "black"
                axes.text(col, row, text, ha="center", va="center", fontsize=6, color=colour)
    add_caption(figure, caption)
    return _save(figure, path)
