"""Shared plumbing of the PNG figures: safe file names, a matplotlib figure on the Agg canvas
(never ``pyplot``: no global state, so worker threads can render), an atomic save that keeps the
caption in the PNG's ``Description``, captions, log-scale choice and class colours.

matplotlib is imported only inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

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
