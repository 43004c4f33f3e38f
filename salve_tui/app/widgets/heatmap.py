"""A navigable signed heatmap (rows × columns of numbers) drawn with coloured terminal cells.

Built for the feature–class matrix: classes are rows, SAE features are columns, colour is the
signed value (blue negative, red positive, white zero) so both signs of a latent stay visible.
Each cell is ``cell_width`` characters wide (1 at 80 columns with h=64). Marked cells (dominant
features) carry a ``◆``; the cursor cell is drawn as a bright ``█`` and its row label and column
number are shown in reverse, so it stays visible on any colour.

Virtualised (Textual's line API): only the window of rows and columns on screen is drawn, from
slices of the value array, so painting, scrolling and moving the cursor cost the same at
10 × 64 as at 1,000 classes × 16,384 features. The colour of a cell is ``value / scale`` with a
per-row, per-column or global ``scale`` (broadcast), so no normalised copy of the matrix exists.
The window follows the cursor; the mouse wheel scrolls it (shift: sideways), a click moves the
cursor.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Region, Size
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
WHEEL_STEP = 3  # rows (or columns) per mouse-wheel notch


def signed_colour(value: float, scale: float) -> tuple[int, int, int]:
    """Diverging colour of ``value`` on ``[-scale, scale]``: blue → white → red (NaN: grey)."""
    if not np.isfinite(value):
        return MISSING_RGB
    t = 0.0 if scale <= 0 else float(np.clip(value / scale, -1.0, 1.0))
    end = POSITIVE_RGB if t >= 0 else NEGATIVE_RGB
    w = abs(t)
    return tuple(round((1 - w) * z + w * e) for z, e in zip(ZERO_RGB, end, strict=True))  # type: ignore[return-value]


def signed_colours(values: np.ndarray, scale: np.ndarray | float) -> np.ndarray:
    """:func:`signed_colour` of every value (``scale`` broadcast): an (…, 3) int array, the same
    numbers as the scalar function (same float operations, round half to even)."""
    values = np.asarray(values, dtype=np.float64)
    scale = np.broadcast_to(np.asarray(scale, dtype=np.float64), values.shape)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = np.where(scale > 0, np.clip(values / np.where(scale > 0, scale, 1.0), -1.0, 1.0), 0.0)
    t = np.nan_to_num(t, nan=0.0)  # NaN cells are drawn grey below
    w = np.abs(t)[..., None]
    end = np.where((t >= 0)[..., None], np.array(POSITIVE_RGB, float), np.array(NEGATIVE_RGB, float))
    rgb = np.rint((1 - w) * np.array(ZERO_RGB, float) + w * end).astype(np.int64)
    rgb[~np.isfinite(values)] = MISSING_RGB
    return rgb


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


class _CellStyles:
    """Rich styles of cells by (r, g, b, kind), built once each (a frame reuses most colours)."""

    LIMIT = 8192

    def __init__(self) -> None:
        self._styles: dict[tuple[int, int, int, int], Style] = {}

    def get(self, r: int, g: int, b: int, kind: int) -> Style:
        key = (r, g, b, kind)
        style = self._styles.get(key)
        if style is None:
            if len(self._styles) >= self.LIMIT:
                self._styles.clear()
            colour = f"rgb({r},{g},{b})"
            if kind == 2:  # cursor
                style = Style(color="yellow", bgcolor=colour, bold=True)
            elif kind == 1:  # mark
                style = Style(color=contrast_colour((r, g, b)), bgcolor=colour)
            else:
                style = Style(bgcolor=colour)
            self._styles[key] = style
        return style


class Heatmap(Widget, can_focus=True):
    """Rows × columns of signed values with a keyboard cursor, drawn window by window.

    ``values`` are what the status line reports and what is drawn, divided by ``scale`` (a
    scalar or an array broadcastable to ``values``: per row ``(C, 1)``, per column ``(1, h)``).
    ``marks`` is a set of ``(row, column)`` cells to flag. The values are never copied.
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
        Binding("shift+up", "page_rows(-1)", "A page of classes ↑", show=False),
        Binding("shift+down", "page_rows(1)", "A page of classes ↓", show=False),
        Binding("shift+left", "page_columns(-1)", "A screen of features ←", show=False),
        Binding("shift+right", "page_columns(1)", "A screen of features →", show=False),
        Binding("home", "jump_column(0)", "First feature", show=False),
        Binding("end", "jump_column(-1)", "Last feature", show=False),
        Binding("ctrl+home", "jump_row(0)", "First class", show=False),
        Binding("ctrl+end", "jump_row(-1)", "Last class", show=False),
        Binding("enter", "select", "Open", tooltip="Open the cell (the feature card in the matrix)"),
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
        self.values: np.ndarray = np.zeros((0, 0))
        self.scale: np.ndarray = np.ones((1, 1))
        self.row_labels: list[str] = []
        self.marks: set[tuple[int, int]] = set()
        self._marks_by_row: dict[int, set[int]] = {}
        self.label_width = label_width
        self.max_cell_width = max_cell_width
        self.first_column = 0  # leftmost visible column (horizontal scroll)
        self.first_row = 0  # top visible row (vertical scroll)
        self._styles = _CellStyles()

    # ----- data

    def set_data(self, values: np.ndarray, row_labels: list[str],
                 marks: set[tuple[int, int]] | None = None, scale: np.ndarray | float = 1.0) -> None:
        values = np.asarray(values)
        scale_array = np.asarray(scale, dtype=np.float64)
        if values.ndim != 2 or len(row_labels) != values.shape[0]:
            raise ValueError(f"heatmap needs 2-D values {values.shape} and one label per row "
                             f"({len(row_labels)} given)")
        try:
            np.broadcast_shapes(scale_array.shape, values.shape)
        except ValueError:
            raise ValueError(f"scale {scale_array.shape} does not broadcast to {values.shape}") from None
        self.values, self.row_labels = values, list(row_labels)
        self.scale = scale_array.reshape((1, 1)) if scale_array.ndim == 0 else scale_array
        self.marks = set(marks or ())
        self._marks_by_row = {}
        for r, c in self.marks:
            self._marks_by_row.setdefault(r, set()).add(c)
        row, column = self.cursor
        self.cursor = (min(row, max(0, values.shape[0] - 1)), min(column, max(0, values.shape[1] - 1)))
        self.refresh(layout=True)

    @property
    def shape(self) -> tuple[int, int]:
        return self.values.shape  # type: ignore[return-value]

    def colours(self, rows: slice, columns: slice) -> np.ndarray:
        """The drawn (scaled) values of a window, in [-1, 1] (NaN where the value is NaN)."""
        scale = self.scale[rows if self.scale.shape[0] > 1 else slice(None),
                           columns if self.scale.shape[1] > 1 else slice(None)]
        window = np.asarray(self.values[rows, columns], dtype=np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(scale > 0, np.clip(window / np.where(scale > 0, scale, 1.0), -1, 1),
                            np.where(np.isnan(window), np.nan, 0.0))

    # ----- geometry

    def cell_width(self, width: int | None = None) -> int:
        """Characters per column: as wide as fits (up to ``max_cell_width``), at least 1."""
        width = self.content_size.width if width is None else width
        columns = max(1, self.shape[1])
        return int(max(1, min(self.max_cell_width, (width - self.label_width - 1) // columns)))

    def visible_columns(self) -> int:
        width = self.content_size.width
        return max(1, (width - self.label_width - 1) // self.cell_width())

    def visible_rows(self) -> int:
        return max(1, self.content_size.height - 1)  # below the column ruler

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return self.shape[0] + 1  # column ruler + one line per row (max-height caps it)

    def _scroll_to_cursor(self) -> None:
        row, column = self.cursor
        self.first_column = _window_start(self.first_column, column, self.visible_columns(), self.shape[1])
        self.first_row = _window_start(self.first_row, row, self.visible_rows(), self.shape[0])

    def visible_range(self) -> tuple[int, int]:
        """First and last (exclusive) column currently drawn."""
        self._scroll_to_cursor()
        return self.first_column, min(self.shape[1], self.first_column + self.visible_columns())

    def visible_row_range(self) -> tuple[int, int]:
        """First and last (exclusive) row currently drawn."""
        self._scroll_to_cursor()
        return self.first_row, min(self.shape[0], self.first_row + self.visible_rows())

    # ----- drawing

    def render_line(self, y: int) -> Strip:
        width = self.content_size.width
        rows, columns = self.shape
        base = self.rich_style
        if rows == 0 or columns == 0:
            return Strip.blank(width, base)
        start, stop = self.visible_range()
        cell = self.cell_width()
        cursor_row, cursor_column = self.cursor
        if y == 0:
            return self._ruler(start, stop, cell, cursor_column).extend_cell_length(width, base)
        row = self.first_row + y - 1
        if row >= rows or y - 1 >= self.visible_rows():
            return Strip.blank(width, base)
        label = self.row_labels[row][: self.label_width - 1].ljust(self.label_width - 1) + " "
        label_style = Style(reverse=True, bold=True) if row == cursor_row else Style(dim=False)
        segments = [Segment(label, label_style)]
        rgb = signed_colours(self.colours(slice(row, row + 1), slice(start, stop))[0], 1.0).tolist()
        marked = self._marks_by_row.get(row, ())
        blank, mark, cursor = " " * cell, MARK.center(cell), CURSOR * cell
        styles = self._styles
        for offset, (r, g, b) in enumerate(rgb):
            column = start + offset
            if row == cursor_row and column == cursor_column:
                segments.append(Segment(cursor, styles.get(r, g, b, 2)))
            elif column in marked:
                segments.append(Segment(mark, styles.get(r, g, b, 1)))
            else:
                segments.append(Segment(blank, styles.get(r, g, b, 0)))
        more = "›" if stop < columns else " "
        segments.append(Segment(more, Style(dim=True)))
        return Strip(segments).extend_cell_length(width, base)

    def _ruler(self, start: int, stop: int, cell: int, cursor_column: int) -> Strip:
        """Feature numbers above the columns: every column when cells are wide, else every 10th."""
        above = self.first_row > 0
        prefix = ("▲" if above else " ") + ("‹" if start > 0 else " ")
        prefix = prefix.ljust(self.label_width)
        chars = [" "] * ((stop - start) * cell)
        step = 1 if cell >= 3 else (5 if cell == 2 else 10)
        # The cursor's column number, in reverse, replaces the ruler under it; ticks it would
        # touch are left out (else "30" and the cursor's "31" read "331").
        label = str(cursor_column)
        at = max(0, min((cursor_column - start) * cell, len(chars) - len(label)))
        for column in range(start - start % step, stop, step):
            text = str(column)
            offset = (column - start) * cell
            if column < start or (offset <= at + len(label) and at <= offset + len(text)):
                continue
            for i, ch in enumerate(text):
                if offset + i < len(chars):
                    chars[offset + i] = ch
        ruler = "".join(chars)
        segments = [Segment(prefix, Style(dim=True))]
        segments.append(Segment(ruler[:at], Style(dim=True)))
        segments.append(Segment(label, Style(reverse=True, bold=True)))
        segments.append(Segment(ruler[at + len(label):], Style(dim=True)))
        return Strip(segments)

    # ----- cursor

    def watch_cursor(self, old: tuple[int, int], new: tuple[int, int]) -> None:
        window = (self.first_row, self.first_column)
        if self.content_size.height:
            self._scroll_to_cursor()
        if old == new or window != (self.first_row, self.first_column) or not self.content_size.height:
            self.refresh()  # the window moved: every line changes
        else:
            # Same window: only the ruler (cursor's column number) and the old and new rows change.
            width = self.size.width
            lines = {0, old[0] - self.first_row + 1, new[0] - self.first_row + 1}
            self.refresh(*(Region(0, y, width, 1) for y in lines))
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

    def action_page_rows(self, direction: int) -> None:
        self.action_move(direction * self.visible_rows(), 0)

    def action_page_columns(self, direction: int) -> None:
        self.action_move(0, direction * self.visible_columns())

    def action_jump_column(self, column: int) -> None:
        self.move_to(self.cursor[0], column if column >= 0 else self.shape[1] - 1)

    def action_jump_row(self, row: int) -> None:
        self.move_to(row if row >= 0 else self.shape[0] - 1, self.cursor[1])

    def action_select(self) -> None:
        if self.shape[0] and self.shape[1]:
            self.post_message(self.Selected(self, *self.cursor))

    # ----- mouse: the wheel scrolls the window, a click moves the cursor

    def _scroll_window(self, rows: int, columns: int) -> None:
        """Move the window (not the cursor); the cursor is pulled along when it would leave it."""
        visible_rows, visible_columns = self.visible_rows(), self.visible_columns()
        self.first_row = int(np.clip(self.first_row + rows, 0, max(0, self.shape[0] - visible_rows)))
        self.first_column = int(np.clip(self.first_column + columns, 0, max(0, self.shape[1] - visible_columns)))
        row, column = self.cursor
        self.move_to(int(np.clip(row, self.first_row, self.first_row + visible_rows - 1)),
                     int(np.clip(column, self.first_column, self.first_column + visible_columns - 1)))
        self.refresh()

    def on_resize(self, event: events.Resize) -> None:
        # What is on screen changed ("showing …", "classes …" in the screen's status line): a
        # status computed before the first layout named the rows of a smaller map.
        self.post_message(self.CursorMoved(self, *self.cursor))

    def on_mouse_scroll_down(self, event: events.MouseScrollDown) -> None:
        event.stop()
        if event.shift:
            self._scroll_window(0, WHEEL_STEP)
        else:
            self._scroll_window(WHEEL_STEP, 0)

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        event.stop()
        if event.shift:
            self._scroll_window(0, -WHEEL_STEP)
        else:
            self._scroll_window(-WHEEL_STEP, 0)

    def on_mouse_scroll_right(self, event: events.MouseScrollRight) -> None:
        event.stop()
        self._scroll_window(0, WHEEL_STEP)

    def on_mouse_scroll_left(self, event: events.MouseScrollLeft) -> None:
        event.stop()
        self._scroll_window(0, -WHEEL_STEP)

    def on_click(self, event: events.Click) -> None:
        x, y = event.x, event.y
        if y < 1 or x < self.label_width or not self.shape[0]:
            return
        self.visible_range()
        self.move_to(self.first_row + y - 1, self.first_column + (x - self.label_width) // self.cell_width())


def _window_start(first: int, cursor: int, visible: int, total: int) -> int:
    """The first index of a ``visible``-long window over ``total`` that keeps ``cursor`` in view,
    moving from ``first`` as little as possible."""
    if cursor < first:
        first = cursor
    elif cursor >= first + visible:
        first = cursor - visible + 1
    return max(0, min(first, max(0, total - visible)))
