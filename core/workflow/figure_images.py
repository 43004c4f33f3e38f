"""Image figures and the numpy colour maps of the terminal previews: jet colouring, overlays,
heatmap overlays, image grids and a feature's highest/lowest activating samples.

``colorize`` / ``overlay`` need numpy only (no torch, no matplotlib) for the TUI previews.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from core.workflow.figure_base import _check_names, _new_figure, _save, add_caption

# The classic "jet" colour map (matplotlib's segment definition), the usual Grad-CAM palette.
_JET_STOPS = np.array([0.0, 0.125, 0.375, 0.625, 0.875, 1.0])
_JET_COLOURS = np.array(
    [[0, 0, 0.5], [0, 0, 1], [0, 1, 1], [1, 1, 0], [1, 0, 0], [0.5, 0, 0]], dtype=np.float64
)
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
