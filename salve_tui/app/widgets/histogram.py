"""A histogram whose bars are stacked by class, drawn in terminal cells (feature cards).

Each bin is one column; its bar is the per-class counts stacked from the bottom, each cell
coloured by the class its centre falls in, so a feature that fires for one class shows that
class's colour at the high end. The axis row gives the range and marks zero (``┼``) and an
optional value (``▲``, e.g. the selected sample's latent).
"""

from __future__ import annotations

import numpy as np
from rich.text import Text
from textual.widget import Widget

# Matplotlib's tab10 (the exported figures use the same colours), then tab20's lighter halves.
CLASS_RGB = (
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
    (174, 199, 232), (255, 187, 120), (152, 223, 138), (255, 152, 150), (197, 176, 213),
    (196, 156, 148), (247, 182, 210), (199, 199, 199), (219, 219, 141), (158, 218, 229),
)
BAR = "█"


def class_colour(c: int) -> str:
    """The rich colour of class ``c`` (cycled past 20 classes)."""
    return "rgb({},{},{})".format(*CLASS_RGB[c % len(CLASS_RGB)])


def stacked_cells(counts: np.ndarray, rows: int, top: int) -> list[list[int | None]]:
    """(rows × bins) class index per cell, row 0 at the top; None where the bar is lower.

    A bin of total ``n`` fills ``round(rows · n / top)`` cells (at least one when ``n > 0``); cell
    ``r`` (from the bottom) takes the class whose cumulative share covers its centre.
    """
    C, B = counts.shape
    grid: list[list[int | None]] = [[None] * B for _ in range(rows)]
    for b in range(B):
        column = counts[:, b]
        total = int(column.sum())
        if total == 0 or top <= 0:
            continue
        filled = min(rows, max(1, round(rows * total / top)))
        bounds = np.cumsum(column) / total
        for r in range(filled):
            share = (r + 0.5) / filled
            c = int(np.searchsorted(bounds, share, side="right"))
            grid[rows - 1 - r][b] = min(c, C - 1)
    return grid


def resample_bins(counts: np.ndarray, edges: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Merge neighbouring bins until at most ``width`` remain (the card's bins may outnumber cells)."""
    B = counts.shape[1]
    if width >= B or width <= 0:
        return counts, edges
    groups = np.array_split(np.arange(B), width)
    merged = np.stack([counts[:, g].sum(axis=1) for g in groups], axis=1)
    new_edges = np.array([edges[g[0]] for g in groups] + [edges[-1]])
    return merged, new_edges


def histogram_text(counts: np.ndarray, edges: np.ndarray, width: int, height: int,
                   marker: float | None = None) -> Text:
    """The stacked histogram in ``width`` × ``height`` cells (bars + one axis row)."""
    counts = np.asarray(counts)
    if counts.size == 0 or width < 4 or height < 2:
        return Text("")
    counts, edges = resample_bins(counts, np.asarray(edges, dtype=float), width)
    B = counts.shape[1]
    rows = height - 1
    top = int(counts.sum(axis=0).max())
    text = Text()
    for row in stacked_cells(counts, rows, top):
        for c in row:
            text.append(" " if c is None else BAR, style="" if c is None else class_colour(c))
        text.append("\n")
    low, high = float(edges[0]), float(edges[-1])
    axis = ["─"] * B

    def column_of(value: float) -> int | None:
        if not low <= value <= high or high <= low:
            return None
        return min(B - 1, int((value - low) / (high - low) * B))

    zero = column_of(0.0)
    if zero is not None:
        axis[zero] = "┼"
    mark = None if marker is None else column_of(marker)
    if mark is not None:
        axis[mark] = "▲"
    left, right = f"{low:+.3g}", f"{high:+.3g}"
    line = Text("".join(axis))
    if mark is not None:
        line.stylize("bold yellow", mark, mark + 1)
    text.append_text(line)
    text.append("\n")
    gap = max(1, B - len(left) - len(right))
    text.append(left + " " * gap + right, style="dim")
    return text


class ClassHistogram(Widget):
    """The stacked histogram sized to the widget (bars fill all but two rows: axis, range).

    Given the raw values and labels it re-bins them to one bin per column (up to
    :data:`MAX_BINS`) with :func:`core.workflow.feature_card.class_histogram`, so a wide terminal
    shows a finer histogram; given only counts it draws those."""

    DEFAULT_CSS = """
    ClassHistogram { width: 1fr; height: 1fr; }
    """
    MAX_BINS = 80

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.counts = np.zeros((0, 0), dtype=np.int64)
        self.edges = np.zeros(0)
        self.marker: float | None = None
        self._raw: tuple[np.ndarray, np.ndarray, int] | None = None
        self._binned_for = 0

    def show(self, counts: np.ndarray, edges: np.ndarray, marker: float | None = None,
             values: np.ndarray | None = None, labels: np.ndarray | None = None) -> None:
        self.counts, self.edges, self.marker = np.asarray(counts), np.asarray(edges), marker
        self._raw = None if values is None or labels is None else (values, labels, len(self.counts))
        self._binned_for = 0
        self.refresh()

    def render(self) -> Text:
        width, height = self.content_size
        bins = min(self.MAX_BINS, width)
        if self._raw is not None and bins >= 4 and bins != self._binned_for:
            from core.workflow.feature_card import class_histogram

            values, labels, num_classes = self._raw
            self.edges, self.counts = class_histogram(values, labels, num_classes, bins)
            self._binned_for = bins
        return histogram_text(self.counts, self.edges, width, height - 1, self.marker)
