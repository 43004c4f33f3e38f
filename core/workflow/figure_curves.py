"""Curve figures: suppression and selectivity curves, prediction shares along α, faithfulness
deletion/insertion curves and the per-class α_crit distributions."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from core.workflow.figure_base import (
    _check_names,
    _class_colours,
    _new_figure,
    _save,
    add_caption,
    wants_log_scale,
)


def save_suppression_curves(
    alphas: np.ndarray,
    accuracy: np.ndarray,
    class_names: Sequence[str],
    path: str | Path,
    *,
    target: int | None = None,
    std: np.ndarray | None = None,
    marker: float | None = None,
    marker_label: str = "",
    title: str = "",
    xlabel: str = "α",
    ylabel: str = "accuracy",
    figsize: tuple[float, float] = (6.4, 4.0),
    dpi: int = 100,
    caption: Sequence[str] = (),
) -> Path:
    """Per-class accuracy vs α ``(A, C)``; the target class drawn thick, others thin.

    ``std`` (same shape) adds a ±1 std band (curves averaged over SAE seeds); ``marker`` draws a
    vertical line, e.g. the current α or α50.
    """
    alphas = np.asarray(alphas, dtype=np.float64)
    accuracy = np.asarray(accuracy, dtype=np.float64)
    if accuracy.ndim != 2 or accuracy.shape[0] != alphas.shape[0]:
        raise ValueError(f"accuracy must be (len(alphas)={len(alphas)}, C), got {accuracy.shape}")
    _check_names(class_names, accuracy.shape[1], "class")
    if std is not None and np.shape(std) != accuracy.shape:
        raise ValueError(f"std shape {np.shape(std)} must equal accuracy shape {accuracy.shape}")
    figure = _new_figure(figsize, dpi)
    axes = figure.add_subplot()
    colours = _class_colours(accuracy.shape[1])
    for c, name in enumerate(class_names):
        is_target = c == target
        axes.plot(
            alphas,
            accuracy[:, c],
            color=colours[c],
            linewidth=2.6 if is_target else 1.0,
            alpha=1.0 if target is None or is_target else 0.6,
            label=f"{name} (target)" if is_target else name,
            zorder=3 if is_target else 2,
        )
        if std is not None:
            spread = np.asarray(std, dtype=np.float64)[:, c]
            low, high = accuracy[:, c] - spread, accuracy[:, c] + spread
            axes.fill_between(alphas, low, high, color=colours[c], alpha=0.15, linewidth=0)
    if marker is not None:
        axes.axvline(marker, color="black", linestyle="--", linewidth=1, label=marker_label or None)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.set_ylim(-0.02, 1.02)
    axes.grid(alpha=0.3)
    if title:
        axes.set_title(title, fontsize=10)
    axes.legend(fontsize=7, loc="best", ncols=2 if accuracy.shape[1] > 6 else 1)
    add_caption(figure, caption)
    return _save(figure, path)


def save_prediction_distribution(
    alphas: np.ndarray,
    fractions: np.ndarray,
    class_names: Sequence[str],
    path: str | Path,
    *,
    target: int | None = None,
    marker: float | None = None,
    title: str = "",
    figsize: tuple[float, float] = (6.4, 4.0),
    dpi: int = 100,
    caption: Sequence[str] = (),
) -> Path:
    """Stacked shares ``(A, C)`` of the target class's samples predicted as each class vs α."""
    alphas = np.asarray(alphas, dtype=np.float64)
    fractions = np.asarray(fractions, dtype=np.float64)
    if fractions.ndim != 2 or fractions.shape[0] != alphas.shape[0]:
        raise ValueError(f"fractions must be (len(alphas)={len(alphas)}, C), got {fractions.shape}")
    _check_names(class_names, fractions.shape[1], "class")
    figure = _new_figure(figsize, dpi)
    axes = figure.add_subplot()
    labels = [f"{n} (target)" if c == target else n for c, n in enumerate(class_names)]
    axes.stackplot(alphas, fractions.T, labels=labels, colors=_class_colours(len(class_names)))
    if marker is not None:
        axes.axvline(marker, color="black", linestyle="--", linewidth=1)
    axes.set_xlim(alphas.min(), alphas.max())
    axes.set_ylim(0, 1)
    axes.set_xlabel("α")
    axes.set_ylabel("share of predictions")
    if title:
        axes.set_title(title, fontsize=10)
    axes.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    add_caption(figure, caption)
    return _save(figure, path)


def save_selectivity_curves(
    strengths: np.ndarray,
    target: np.ndarray,
    worst_kept: np.ndarray,
    controls: Mapping[str, np.ndarray],
    path: str | Path,
    *,
    window: Sequence[Sequence[float]] = (),
    target_below: float = 0.10,
    keep_share: float = 0.80,
    title: str = "",
    xlabel: str = "α",
    caption: Sequence[str] = (),
    figsize: tuple[float, float] = (6.4, 4.0),
    dpi: int = 100,
) -> Path:
    """Target accuracy, the worst other class's kept share of its baseline, and the controls'
    target accuracy against strength; the selective window shaded, both thresholds dashed."""
    x = np.asarray(strengths, dtype=np.float64)
    figure = _new_figure(figsize, dpi)
    axes = figure.add_subplot()
    for lo, hi in window:
        axes.axvspan(lo, hi, color="tab:green", alpha=0.15, linewidth=0)
    axes.plot(x, np.asarray(target, dtype=np.float64), color="tab:red", linewidth=2.2,
              label="target accuracy")
    axes.plot(x, np.asarray(worst_kept, dtype=np.float64), color="tab:blue", linewidth=1.5,
              label="worst other class: share of baseline kept")
    for (name, values), style in zip(controls.items(), ("--", ":", "-."), strict=False):
        axes.plot(x, np.asarray(values, dtype=np.float64), color="tab:gray", linestyle=style,
                  linewidth=1.2, label=f"control target ({name})")
    axes.axhline(target_below, color="tab:red", linestyle=(0, (2, 3)), linewidth=0.8)
    axes.axhline(keep_share, color="tab:blue", linestyle=(0, (2, 3)), linewidth=0.8)
    axes.set_ylim(-0.02, 1.05)
    axes.set_xlabel(xlabel)
    axes.set_ylabel("accuracy / share")
    axes.legend(fontsize=6, loc="center right")
    if title:
        axes.set_title(title, fontsize=10)
    add_caption(figure, list(caption) + ["shaded: selective window (target < 10%, every other "
                                         "class keeps ≥ 80% of its baseline)"])
    return _save(figure, path)


def save_faithfulness_curves(
    fractions: np.ndarray,
    panels: Mapping[str, Mapping[str, np.ndarray]],
    path: str | Path,
    *,
    title: str = "",
    caption: Sequence[str] = (),
    panel_inches: float = 3.4,
    dpi: int = 100,
) -> Path:
    """One panel per saliency method: deletion and insertion curves of the map's pixel order
    (solid) against a random order (dashed), on the fraction of pixels changed."""
    figure = _new_figure((panel_inches * len(panels), 3.4), dpi)
    x = np.asarray(fractions, dtype=np.float64)
    for axes, (method, c) in zip(figure.subplots(1, len(panels), squeeze=False).flat,
                                 panels.items(), strict=True):
        for kind, colour in (("deletion", "tab:red"), ("insertion", "tab:blue")):
            axes.plot(x, c[kind], color=colour, linewidth=1.8, label=f"{kind} (map order)")
            axes.plot(x, c[f"{kind}_random"], color=colour, linestyle="--", linewidth=1.2,
                      label=f"{kind} (random)")
        axes.set_title(method, fontsize=9)
        axes.set_xlabel("fraction of pixels changed")
        axes.set_ylabel("score / intact score")
        axes.legend(fontsize=6)
    if title:
        figure.suptitle(title, fontsize=9)
    add_caption(figure, caption)
    return _save(figure, path)


def save_alpha_crit_distributions(
    analytic: Sequence[np.ndarray],
    numerical: Sequence[np.ndarray],
    class_names: Sequence[str],
    path: str | Path,
    *,
    alpha50: Sequence[float] | None = None,
    kind: str = "box",
    title: str = "critical suppression threshold α_crit",
    figsize: tuple[float, float] = (7.2, 4.0),
    dpi: int = 100,
    log_scale: bool | None = None,
    caption: Sequence[str] = (),
) -> Path:
    """Per-class α_crit distributions, analytic beside numerical, α50 as a marker.

    ``kind='box'``: paired box plots on one axis; ``'hist'``: one small histogram per class.
    Each class entry is a 1-D array of per-sample values (qualifying samples only; may be empty).
    ``log_scale`` None: a log α axis when the values span more than two decades. ``caption``:
    lines printed under the plot (excluded counts, an inexact analytic estimate, warnings).
    """
    if kind not in ("box", "hist"):
        raise ValueError(f"kind must be 'box' or 'hist', got '{kind}'")
    _check_names(class_names, len(analytic), "class")
    _check_names(class_names, len(numerical), "class")
    if alpha50 is not None:
        _check_names(class_names, len(alpha50), "class")
    series = [
        [np.asarray(v, dtype=np.float64)[np.isfinite(v)] for v in group]
        for group in (analytic, numerical)
    ]
    figure = _new_figure(figsize, dpi)
    if kind == "box":
        _alpha_crit_boxes(figure, series, class_names, alpha50, log_scale, title)
    else:
        _alpha_crit_histograms(figure, series, class_names, alpha50, title)
    add_caption(figure, caption)
    return _save(figure, path)


_SERIES = (("analytic", "tab:blue"), ("numerical", "tab:orange"))


def _alpha_crit_boxes(figure: Any, series: list[list[np.ndarray]], class_names: Sequence[str],
                      alpha50: Sequence[float] | None, log_scale: bool | None, title: str) -> None:
    """Paired box plots (analytic left, numerical right of each class) on one axis, α50 as a
    diamond; a log α axis when asked, or by default when the values span two decades."""
    axes = figure.add_subplot()
    positions = np.arange(len(class_names), dtype=np.float64)
    for offset, values, (name, colour) in zip((-0.2, 0.2), series, _SERIES, strict=True):
        box = axes.boxplot(
            [v if v.size else [np.nan] for v in values],
            positions=positions + offset,
            widths=0.35,
            patch_artist=True,
            showfliers=False,
            medianprops={"color": "black"},
        )
        for patch in box["boxes"]:
            patch.set_facecolor(colour)
            patch.set_alpha(0.6)
        axes.plot([], [], color=colour, linewidth=6, alpha=0.6, label=name)
    if alpha50 is not None:
        axes.scatter(positions, alpha50, marker="D", color="black", zorder=4, label="α50")
    axes.set_xticks(positions, labels=class_names, rotation=30, ha="right", fontsize=7)
    axes.set_ylabel("α")
    if log_scale if log_scale is not None else wants_log_scale(series[0] + series[1]):
        axes.set_yscale("log")
        axes.set_ylabel("α (log scale)")
    axes.legend(fontsize=7)
    if title:
        axes.set_title(title, fontsize=10)


def _alpha_crit_histograms(figure: Any, series: list[list[np.ndarray]], class_names: Sequence[str],
                           alpha50: Sequence[float] | None, title: str) -> None:
    """One small histogram per class (analytic and numerical overlaid, α50 dashed), 4 a row."""
    ncols = min(4, len(class_names))
    nrows = -(-len(class_names) // ncols)
    grid = figure.subplots(nrows, ncols, squeeze=False)
    for c, axes in enumerate(grid.flat):
        if c >= len(class_names):
            axes.set_axis_off()
            continue
        for values, (name, colour) in zip(series, _SERIES, strict=True):
            if values[c].size:
                axes.hist(values[c], bins=20, color=colour, alpha=0.55, label=name)
        if alpha50 is not None and np.isfinite(alpha50[c]):
            axes.axvline(alpha50[c], color="black", linestyle="--", linewidth=1, label="α50")
        axes.set_title(class_names[c], fontsize=8)
        axes.tick_params(labelsize=6)
    grid.flat[0].legend(fontsize=6)
    if title:
        figure.suptitle(title, fontsize=10)
