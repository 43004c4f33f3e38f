"""A navigable signed heatmap (rows × columns of numbers) drawn with coloured terminal cells.

Built for the feature–class matrix: classes are rows, SAE features are columns, colour is the
signed value (blue negative, red positive, white zero) so both signs of a latent stay visible.
Each cell is ``cell_width`` characters wide (1 at 80 columns with h=64); when the columns still
do not fit, the view scrolls horizontally to keep the cursor visible. Marked cells (dominant
features) carry a ``◆``; the cursor cell is drawn as a bright ``█`` and its row label and column
number are shown in reverse, so it stays visible on any colour.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.strip import Strip
from textual.widget import Widget

NEGATIVE_RGB = (33, 102, 172)  # blue end of the diverging scale
POSITIVE_RGB = (178, 24, 43)  # red end
ZERO_RGB = (247, 247, 247)  # near-white middle
MISSING_RGB = (60, 60, 60)  # NaN (class without samples)
MARK = "◆"
CURSOR = "█"
PAGE_COLUMNS = 10


def signed_colour(value: float, scale: float) -> tuple[int, int, int]:
    """Diverging colour of ``value`` on ``[-scale, scale]``: blue → white → red (NaN: grey)."""
    if not np.isfinite(value):
        return MISSING_RGB
    t = 0.0 if scale <= 0 else float(np.clip(value / scale, -1.0, 1.0))
    end = POSITIVE_RGB if t >= 0 else NEGATIVE_RGB
    w = abs(t)
    return tuple(round((1 - w) * z + w * e) for z, e in zip(ZERO_RGB, end, strict=True))  # type: ignore[return-value]


def contrast_colour(rgb: tuple[int, int, int]) -> str:
    """Black on light cells, white on dark ones (for marks drawn on a coloured cell)."""
    r, g, b = rgb
    return "black" if 0.299 * r + 0.587 * g + 0.114 * b > 140 else "white"


def scale_legend(scale: float, width: int = 9) -> list[Segment]:
    """``-0.52 ▇▇▇▇▇▇▇▇▇ +0.52`` as segments, the colour ramp of the current scale."""
    segments = [Segment(f"{-scale:+.2g} ")]
    for i in range(width):
        value = scale * (2 * i / max(1, width - 1) - 1)
        segments.append(Segment(" ", Style(bgcolor="rgb({},{},{})".format(*signed_colour(value, scale)))))
    segments.append(Segment(f" {scale:+.2g}"))
    return segments


class Heatmap(Widget, can_focus=True):
    """Rows × columns of signed values with a keyboard cursor.

    ``values`` are what the status line reports; ``colours`` (same shape) what is drawn — e.g.
    ``values`` is the raw μ and ``colours`` the row-normalised μ. ``marks`` is a set of
    ``(row, column)`` cells to flag.
    """

    DEFAULT_CSS = """
    Heatmap { height: auto; width: 1fr; }
    Heatmap:focus { background-tint: $foreground 0%; }
    """
    BINDINGS: ClassVar[list[Binding]] = [
        Binding("left", "move(0, -1)", "Feature ←", show=False),
        Binding("right", "move(0, 1)", "Feature →", show=False),
        Binding("up", "move(-1, 0)", "Class ↑", show=False),
        Binding("down", "move(1, 0)", "Class ↓", show=False),
        Binding("pageup", f"move(0, -{PAGE_COLUMNS})", "10 features ←", show=False),
        Binding("pagedown", f"move(0, {PAGE_COLUMNS})", "10 features →", show=False),
        Binding("home", "jump_column(0)", "First feature", show=False),
        Binding("end", "jump_column(-1)", "Last feature", show=False),
        Binding("enter", "select", "Open feature"),
    ]

    cursor: reactive[tuple[int, int]] = reactive((0, 0), layout=False)

    class CursorMoved(Message):
        """The cursor is on a new cell."""

        def __init__(self, heatmap: Heatmap, row: int, column: int) -> None:
            super().__init__()
            self.heatmap = heatmap
            self.row = row
            self.column = column

    class Selected(Message):
        """Enter was pressed on a cell."""

        def __init__(self, heatmap: Heatmap, row: int, column: int) -> None:
            super().__init__()
            self.heatmap = heatmap
            self.row = row
            self.column = column

    def __init__(self, *, label_width: int = 10, max_cell_width: int = 3, **kwargs) -> None:
        super().__init__(**kwargs)
        self.values = np.zeros((0, 0))
        self.colours = np.zeros((0, 0))
        self.row_labels: list[str] = []
        self.marks: set[tuple[int, int]] = set()
        self.label_width = label_width
        self.max_cell_width = max_cell_width
        self.first_column = 0  # leftmost visible column (horizontal scroll)

    # ----- data

    def set_data(self, values: np.ndarray, colours: np.ndarray, row_labels: list[str],
                 marks: set[tuple[int, int]] | None = None) -> None:
        values = np.asarray(values, dtype=float)
        colours = np.asarray(colours, dtype=float)
        if values.ndim != 2 or colours.shape != values.shape or len(row_labels) != values.shape[0]:
            raise ValueError(
                f"heatmap needs matching 2-D values {values.shape} / colours {colours.shape} and "
                f"one label per row ({len(row_labels)} given)"
            )
        self.values, self.colours, self.row_labels = values, colours, list(row_labels)
        self.marks = set(marks or ())
        row, column = self.cursor
        self.cursor = (min(row, max(0, values.shape[0] - 1)), min(column, max(0, values.shape[1] - 1)))
        self.refresh(layout=True)

    @property
    def shape(self) -> tuple[int, int]:
        return self.values.shape  # type: ignore[return-value]

    @property
    def colour_scale(self) -> float:
        finite = np.abs(self.colours[np.isfinite(self.colours)])
        return float(finite.max()) if finite.size else 1.0

    # ----- geometry

    def cell_width(self, width: int | None = None) -> int:
        """Characters per column: as wide as fits (up to ``max_cell_width``), at least 1."""
        width = self.content_size.width if width is None else width
        columns = max(1, self.shape[1])
        return int(max(1, min(self.max_cell_width, (width - self.label_width - 1) // columns)))

    def visible_columns(self) -> int:
        width = self.content_size.width
        return max(1, (width - self.label_width - 1) // self.cell_width())

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return self.shape[0] + 1  # column ruler + one line per row

    def _scroll_to_cursor(self) -> None:
        visible = self.visible_columns()
        column = self.cursor[1]
        if column < self.first_column:
            self.first_column = column
        elif column >= self.first_column + visible:
            self.first_column = column - visible + 1
        self.first_column = max(0, min(self.first_column, max(0, self.shape[1] - visible)))

    def visible_range(self) -> tuple[int, int]:
        """First and last (exclusive) column currently drawn."""
        self._scroll_to_cursor()
        return self.first_column, min(self.shape[1], self.first_column + self.visible_columns())

    # ----- drawing

    def render_line(self, y: int) -> Strip:
        width = self.content_size.width
        rows, columns = self.shape
        if rows == 0 or columns == 0:
            return Strip.blank(width, self.rich_style)
        start, stop = self.visible_range()
        cell = self.cell_width()
        cursor_row, cursor_column = self.cursor
        base = self.rich_style
        if y == 0:
            return self._ruler(start, stop, cell, cursor_column).extend_cell_length(width, base)
        row = y - 1
        if row >= rows:
            return Strip.blank(width, base)
        label = self.row_labels[row][: self.label_width - 1].ljust(self.label_width - 1) + " "
        label_style = Style(reverse=True, bold=True) if row == cursor_row else Style(dim=False)
        segments = [Segment(label, label_style)]
        scale = self.colour_scale
        for column in range(start, stop):
            rgb = signed_colour(self.colours[row, column], scale)
            colour = "rgb({},{},{})".format(*rgb)
            if (row, column) == (cursor_row, cursor_column):
                text = CURSOR * cell
                style = Style(color="yellow", bgcolor=colour, bold=True)
            elif (row, column) in self.marks:
                text = MARK.center(cell)
                style = Style(color=contrast_colour(rgb), bgcolor=colour)
            else:
                text = " " * cell
                style = Style(bgcolor=colour)
            segments.append(Segment(text, style))
        more = "›" if stop < columns else " "
        segments.append(Segment(more, Style(dim=True)))
        return Strip(segments).extend_cell_length(width, base)

    def _ruler(self, start: int, stop: int, cell: int, cursor_column: int) -> Strip:
        """Feature numbers above the columns: every column when cells are wide, else every 10th."""
        prefix = ("‹" if start > 0 else " ").ljust(self.label_width)
        chars = [" "] * ((stop - start) * cell)
        step = 1 if cell >= 3 else (5 if cell == 2 else 10)
        for column in range(start, stop):
            if column % step == 0:
                text = str(column)
                offset = (column - start) * cell
                for i, ch in enumerate(text):
                    if offset + i < len(chars):
                        chars[offset + i] = ch
        ruler = "".join(chars)
        segments = [Segment(prefix, Style(dim=True))]
        # The cursor's column number, in reverse, replaces the ruler under it.
        label = str(cursor_column)
        at = (cursor_column - start) * cell
        at = max(0, min(at, len(ruler) - len(label)))
        segments.append(Segment(ruler[:at], Style(dim=True)))
        segments.append(Segment(label, Style(reverse=True, bold=True)))
        segments.append(Segment(ruler[at + len(label):], Style(dim=True)))
        return Strip(segments)

    # ----- cursor

    def watch_cursor(self, old: tuple[int, int], new: tuple[int, int]) -> None:
        self.refresh()
        if old != new:
            self.post_message(self.CursorMoved(self, *new))

    def move_to(self, row: int, column: int) -> None:
        rows, columns = self.shape
        if rows == 0 or columns == 0:
            return
        self.cursor = (int(np.clip(row, 0, rows - 1)), int(np.clip(column, 0, columns - 1)))

    def action_move(self, rows: int, columns: int) -> None:
        row, column = self.cursor
        self.move_to(row + rows, column + columns)

    def action_jump_column(self, column: int) -> None:
        self.move_to(self.cursor[0], column if column >= 0 else self.shape[1] - 1)

    def action_select(self) -> None:
        if self.shape[0] and self.shape[1]:
            self.post_message(self.Selected(self, *self.cursor))
