"""PNG figures for validation and control results, plus numpy colour maps for terminal previews.

Every ``save_*`` function takes plain numpy arrays and names, writes one PNG to ``path``
(creating its folder) and returns the path. Figures are built with matplotlib's object API on
the Agg canvas, never ``pyplot``: no global state, so jobs in worker threads can render safely,
and matplotlib is imported only inside the functions so ``import core.workflow.figures`` stays cheap.
Figures have a fixed size in inches (``figsize``) and ``dpi``, so the PNG is exactly
``figsize × dpi`` pixels (no tight bounding box that would make the size data-dependent).

``colorize`` / ``overlay`` need numpy only (no torch, no matplotlib) for the TUI previews.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

# The classic "jet" colour map (matplotlib's segment definition), the usual Grad-CAM palette.
_JET_STOPS = np.array([0.0, 0.125, 0.375, 0.625, 0.875, 1.0])
_JET_COLOURS = np.array(
    [[0, 0, 0.5], [0, 0, 1], [0, 1, 1], [1, 1, 0], [1, 0, 0], [0.5, 0, 0]], dtype=np.float64
)
_GREEK = {"α": "alpha", "β": "beta", "λ": "lambda", "μ": "mu", "σ": "sigma", "Δ": "delta"}
_MAX_NAME = 150


def safe_filename(*parts: object, ext: str = "") -> str:
    """Join ``parts`` into a descriptive, filesystem-safe name, e.g.
    ``safe_filename("gradfam", "sample", 12, "feature 3", ext=".png")`` →
    ``gradfam_sample_12_feature-3.png``.

    Greek letters are spelled out, other non-ASCII is transliterated or dropped, anything but
    letters, digits, ``.``, ``-`` and ``+`` becomes ``-``; parts are joined with ``_``.
    """
    cleaned = []
    for part in parts:
        text = "".join(_GREEK.get(ch, ch) for ch in str(part))
        text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
        text = re.sub(r"[^A-Za-z0-9.+-]+", "-", text).strip("-.")
        if text:
            cleaned.append(text)
    stem = "_".join(cleaned)[:_MAX_NAME] or "figure"
    if ext and not ext.startswith("."):
        ext = "." + ext
    return stem + ext


def colorize(map01: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] (clipped; NaN → 0) to ``uint8`` RGB with the jet colour map."""
    values = np.nan_to_num(np.asarray(map01, dtype=np.float64), nan=0.0).clip(0.0, 1.0)
    channels = [np.interp(values, _JET_STOPS, _JET_COLOURS[:, c]) for c in range(3)]
    return np.round(np.stack(channels, axis=-1) * 255).astype(np.uint8)


def overlay(image_uint8: np.ndarray, map01: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend ``(1 − alpha)·image + alpha·colorize(map)``, returned as ``uint8`` RGB."""
    image = np.asarray(image_uint8)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3) RGB, got shape {image.shape}")
    if np.shape(map01) != image.shape[:2]:
        raise ValueError(f"map shape {np.shape(map01)} does not match image {image.shape[:2]}")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    blended = (1.0 - alpha) * image.astype(np.float64) + alpha * colorize(map01)
    return np.round(blended).clip(0, 255).astype(np.uint8)


def to_uint8_image(image: np.ndarray) -> np.ndarray:
    """Accept ``(H, W, 3)`` or ``(3, H, W)`` images as uint8 or floats in [0, 1]."""
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[0] == 3 and array.shape[2] != 3:
        array = array.transpose(1, 2, 0)
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"image must be (H, W, 3) or (3, H, W), got shape {np.shape(image)}")
    if array.dtype == np.uint8:
        return array
    return np.round(np.clip(array.astype(np.float64), 0.0, 1.0) * 255).astype(np.uint8)


def top_activating_indices(
    latents: np.ndarray, feature: int, k: int = 8
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the ``k`` samples with the highest and with the lowest ``u_feature``.

    Latents are signed, so both ends are meaningful (SPEC §6: both signs). Highest first in the
    first array, lowest first in the second.
    """
    values = np.asarray(latents)[:, feature]
    order = np.argsort(values, kind="stable")
    k = min(k, len(values))
    return order[::-1][:k].copy(), order[:k].copy()


# --------------------------------------------------------------------------- matplotlib helpers


def _new_figure(figsize: tuple[float, float], dpi: int) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize, dpi=dpi, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Any, path: str | Path) -> Path:
    """Write the PNG atomically; its caption (warnings, notes) also goes into the file's
    ``Description`` text chunk, so tools and tests can read what the figure says under it."""
    from core.atomic import atomic_write

    target = Path(path)
    caption = figure.get_supxlabel()
    metadata = {"Description": caption} if caption else None
    with atomic_write(target) as handle:  # a kill never leaves a 0-byte PNG in place of a good one
        figure.savefig(handle, dpi=figure.dpi, format="png", metadata=metadata)
    return target


def add_caption(figure: Any, lines: Sequence[str]) -> None:
    """Small left-aligned text under the axes (warnings, notes); constrained layout keeps room."""
    text = "\n".join(line for line in lines if line)
    if text:
        figure.supxlabel(text, x=0.01, ha="left", fontsize=6, color="dimgray")


def wants_log_scale(values: Sequence[np.ndarray], decades: float = 2.0) -> bool:
    """True when the positive values span more than ``decades`` orders of magnitude."""
    finite = [np.asarray(v, dtype=np.float64) for v in values]
    pooled = np.concatenate([v[np.isfinite(v) & (v > 0)] for v in finite] or [np.empty(0)])
    if pooled.size < 2:
        return False
    lo, hi = np.percentile(pooled, [5, 95])
    return bool(lo > 0 and np.log10(hi / lo) > decades)


def _class_colours(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _check_names(names: Sequence[str], count: int, what: str) -> None:
    if len(names) != count:
        raise ValueError(f"got {len(names)} {what} name(s) but the data has {count}")


# --------------------------------------------------------------------------- figures


def save_heatmap_overlay(
    image: np.ndarray,
    map01: np.ndarray,
    path: str | Path,
    *,
    title: str = "",
    alpha: float = 0.5,
    colorbar_label: str = "relevance (normalised)",
    figsize: tuple[float, float] = (4.8, 4.0),
    dpi: int = 100,
    caption: Sequence[str] = (),
) -> Path:
    """Image with a jet heatmap on top and a colour bar (a Grad-FAM / Grad-CAM figure)."""
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    picture = to_uint8_image(image)
    heat = np.asarray(map01, dtype=np.float64)
    if heat.shape != picture.shape[:2]:
        raise ValueError(f"map shape {heat.shape} does not match image {picture.shape[:2]}")
    figure = _new_figure(figsize, dpi)
    axes = figure.add_subplot()
    axes.imshow(picture)
    shown = axes.imshow(heat, cmap=colormaps["jet"], alpha=alpha, vmin=0.0, vmax=1.0)
    axes.set_axis_off()
    if title:
        axes.set_title(title, fontsize=9)
    # An opaque colour bar: the blended one would show colours mixed with nothing.
    opaque = ScalarMappable(norm=Normalize(0.0, 1.0), cmap=shown.get_cmap())
    figure.colorbar(opaque, ax=axes, label=colorbar_label, shrink=0.8)
    add_caption(figure, caption)
    return _save(figure, path)


def save_image_grid(
    images: Sequence[np.ndarray] | np.ndarray,
    labels: Sequence[str],
    path: str | Path,
    *,
    ncols: int = 8,
    title: str = "",
    cell_inches: float = 1.3,
    dpi: int = 100,
    caption: Sequence[str] = (),
) -> Path:
    """Images in a grid with one label under each (figure size = cells × ``cell_inches``)."""
    pictures = [to_uint8_image(img) for img in images]
    if not pictures:
        raise ValueError("no images to put in the grid")
    _check_names(labels, len(pictures), "label")
    ncols = max(1, min(ncols, len(pictures)))
    nrows = -(-len(pictures) // ncols)
    figure = _new_figure((ncols * cell_inches, nrows * cell_inches + 0.3), dpi)
    if title:
        figure.suptitle(title, fontsize=9)
    for i, axes in enumerate(figure.subplots(nrows, ncols, squeeze=False).flat):
        axes.set_axis_off()
        if i < len(pictures):
            axes.imshow(pictures[i])
            axes.set_title(labels[i], fontsize=7)
    add_caption(figure, caption)
    return _save(figure, path)


def save_top_activating_grid(
    highest: Sequence[np.ndarray],
    highest_labels: Sequence[str],
    lowest: Sequence[np.ndarray],
    lowest_labels: Sequence[str],
    path: str | Path,
    *,
    feature_name: str = "feature",
    cell_inches: float = 1.3,
    dpi: int = 100,
    caption: Sequence[str] = (),
) -> Path:
    """Two rows: the samples that drive the latent most positive, then most negative."""
    if not highest and not lowest:
        raise ValueError("no samples to show")
    _check_names(highest_labels, len(highest), "label")
    _check_names(lowest_labels, len(lowest), "label")
    ncols = max(len(highest), len(lowest))
    figure = _new_figure((ncols * cell_inches, 2 * cell_inches + 0.6), dpi)
    figure.suptitle(f"{feature_name}: top row highest, bottom row lowest activation", fontsize=9)
    grid = figure.subplots(2, ncols, squeeze=False)
    for row, (pictures, labels) in enumerate(((highest, highest_labels), (lowest, lowest_labels))):
        for col in range(ncols):
            axes = grid[row, col]
            axes.set_axis_off()
            if col < len(pictures):
                axes.imshow(to_uint8_image(pictures[col]))
                axes.set_title(labels[col], fontsize=7)
    add_caption(figure, caption)
    return _save(figure, path)


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
    colours = ("tab:blue", "tab:orange")
    figure = _new_figure(figsize, dpi)
    if kind == "box":
        axes = figure.add_subplot()
        positions = np.arange(len(class_names), dtype=np.float64)
        for offset, values, colour, name in zip(
            (-0.2, 0.2), series, colours, ("analytic", "numerical"), strict=True
        ):
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
    else:
        ncols = min(4, len(class_names))
        nrows = -(-len(class_names) // ncols)
        grid = figure.subplots(nrows, ncols, squeeze=False)
        for c, axes in enumerate(grid.flat):
            if c >= len(class_names):
                axes.set_axis_off()
                continue
            for values, colour, name in zip(
                series, colours, ("analytic", "numerical"), strict=True
            ):
                if values[c].size:
                    axes.hist(values[c], bins=20, color=colour, alpha=0.55, label=name)
            if alpha50 is not None and np.isfinite(alpha50[c]):
                axes.axvline(alpha50[c], color="black", linestyle="--", linewidth=1, label="α50")
            axes.set_title(class_names[c], fontsize=8)
            axes.tick_params(labelsize=6)
        grid.flat[0].legend(fontsize=6)
        if title:
            figure.suptitle(title, fontsize=10)
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
