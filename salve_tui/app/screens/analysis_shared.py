"""Helpers shared by the analysis views: test images for thumbnails, number formatting, paged
tables and the base of the screens that work on one target class of the control inputs.

No view is registered here (the module is imported by view discovery like the other
``analysis_*`` modules, so it must stay free of module-level torch imports).

Model, SAE and dataset for previews come from :func:`core.workflow.assets.load_assets` (cached per
session, shared under ``core.workflow.assets.MODEL_LOCK``); Grad-FAM of one sample is
:func:`core.workflow.saliency_maps.saliency_map`, called in a screen thread worker because it is read-only and
need not wait for — or block — the session's single writer job
(:meth:`~salve_tui.app.screens.base.SessionScreen.compute_in_thread`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np
from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable

from salve_tui.app.screens.base import SessionScreen
from salve_tui.app.widgets.filter import FILTER_BINDING, matches

if TYPE_CHECKING:
    from core.store.session import Session
    from core.workflow.inputs import ControlInputs
    from core.workflow.saliency_maps import SaliencyResult

#: Rows a DataTable holds at once. Filling one costs ~0.25 ms a row on the UI thread, so 1,000
#: classes (or 100,000 α_crit samples) are shown a page at a time, never all at once.
TABLE_PAGE = 200
PAGE_BINDINGS = [
    Binding("left_square_bracket", "page(-1)", "Previous page of rows", key_display="[", show=False),
    Binding("right_square_bracket", "page(1)", "Next page of rows", key_display="]", show=False),
]
#: The same for a screen whose ``[`` ``]`` already mean something else (fine α steps).
BRACE_PAGE_BINDINGS = [
    Binding("left_curly_bracket", "page(-1)", "Previous page of rows", key_display="{", show=False),
    Binding("right_curly_bracket", "page(1)", "Next page of rows", key_display="}", show=False),
]


@dataclass
class Pager:
    """Which slice of ``total`` rows a table shows: page ``page`` of ``size`` rows."""

    total: int = 0
    size: int = TABLE_PAGE
    page: int = 0

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.size))

    @property
    def start(self) -> int:
        return self.page * self.size

    @property
    def stop(self) -> int:
        return min(self.total, self.start + self.size)

    def set_total(self, total: int) -> None:
        self.total = int(total)
        self.page = min(self.page, self.pages - 1)

    def turn(self, step: int) -> bool:
        """Go ``step`` pages on (clamped); True when the page changed."""
        page = max(0, min(self.pages - 1, self.page + step))
        changed, self.page = page != self.page, page
        return changed

    def show_index(self, index: int) -> None:
        """The page holding row ``index``."""
        self.page = max(0, min(self.pages - 1, int(index) // self.size))

    def label(self, what: str = "rows", keys: str = "[ ]") -> str:
        """``rows 201–400/1000 [ ]`` when there is more than one page, else ``""``."""
        if self.pages == 1:
            return ""
        return f"{what} {self.start + 1}–{self.stop}/{self.total} {keys}"


def fill_page(table: DataTable, pager: Pager, add_row: Callable[[int], None],
              cursor: int | None = None) -> None:
    """Refill ``table`` with the rows of ``pager``'s page (``add_row(i)`` adds row ``i`` of the
    whole list) and put the cursor on row ``cursor`` of the list when it is on this page."""
    table.clear()
    for index in range(pager.start, pager.stop):
        add_row(index)
    if cursor is not None and pager.start <= cursor < pager.stop:
        table.move_cursor(row=cursor - pager.start)


def fit_column(table: DataTable, key: str, minimum: int, screen_width: int) -> None:
    """Make column ``key`` as wide as its longest cell, at least ``minimum`` and at most what the
    other columns leave of ``screen_width``: a wide terminal shows whole labels instead of cutting
    them at the width that fits 80 columns. The cells are set again so the table redraws them."""
    from rich.cells import cell_len

    column = table.columns.get(key)  # type: ignore[call-overload]
    if column is None or screen_width <= 0:
        return
    pad = 2 * table.cell_padding
    others = sum(c.width + pad for k, c in table.columns.items() if k != key)
    cells = [(row, table.get_cell(row, key)) for row in table.rows]
    longest = max((cell.cell_len if isinstance(cell, Text) else cell_len(str(cell)) for _, cell in cells),
                  default=0)
    width = max(minimum, min(screen_width - others - pad - 1, longest))
    if width != column.width:
        column.width = width
        for row, cell in cells:  # update_cell drops the table's cached renders of the row
            table.update_cell(row, key, cell)


def cursor_index(table: DataTable, pager: Pager) -> int | None:
    """The index in the whole list of the row under ``table``'s cursor (None when empty)."""
    if pager.total == 0 or table.row_count == 0 or table.cursor_row is None:
        return None
    return min(pager.start + max(0, table.cursor_row), pager.total - 1)


def sample_images(session: Session, indices: list[int] | np.ndarray) -> np.ndarray:
    """``(B, H, W, 3)`` uint8 test images (the split the activations and rankings index)."""
    from core.workflow.pipeline import load_data

    return load_data(session.config).test.raw_images(np.asarray(indices, dtype=np.int64))


def gradfam_with_overlay(
    session: Session, sample: int, feature: int
) -> tuple[SaliencyResult, np.ndarray]:
    """The core's Grad-FAM of ``feature`` on test ``sample`` and its blended overlay, computed
    together so a worker does all the work off the UI thread."""
    from core.workflow.figures import overlay
    from core.workflow.saliency_maps import saliency_map

    result = saliency_map(session, sample, feature=feature)
    return result, overlay(result.image, result.heat, 0.5)


def error_text(what: str, error: str) -> Text:
    """``cannot load …: error`` in red: the one way a screen says its content failed."""
    return Text(f"cannot {what}: {error}", style="red")


# --------------------------------------------------------------------------- formatting


def fmt_value(value: float | None, digits: int = 3) -> str:
    """Numbers for tables: ``—`` for missing/NaN, else ``digits`` significant figures."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:.{digits}g}"


def fmt_percent(value: float | None) -> str:
    """An accuracy in [0, 1] as ``87.5%`` (``—`` for a class without samples)."""
    if value is None or not math.isfinite(value):
        return "—"
    return f"{100 * value:.1f}%"


def delta_text(delta: float | None) -> Text:
    """Accuracy change in percentage points, red when it drops, green when it rises."""
    if delta is None or not math.isfinite(delta):
        return Text("—", style="dim")
    points = 100 * delta
    if abs(points) < 0.05:
        return Text("±0.0", style="dim")
    return Text(f"{points:+.1f}", style="bold red" if points < 0 else "bold green")


def class_name(names: list[str], index: int) -> str:
    return names[index] if 0 <= index < len(names) else f"class {index}"


def bar_text(value: float, scale: float, half_width: int = 10) -> Text:
    """A signed horizontal bar centred on zero: negative to the left (blue), positive right (red)."""
    if not math.isfinite(value) or scale <= 0:
        return Text(" " * (2 * half_width + 1))
    cells = round(min(1.0, abs(value) / scale) * half_width)
    left = " " * half_width
    right = " " * half_width
    if value < 0:
        left = " " * (half_width - cells) + "█" * cells
    else:
        right = "█" * cells + " " * (half_width - cells)
    text = Text()
    text.append(left, style="rgb(33,102,172)")
    text.append("│", style="dim")
    text.append(right, style="rgb(178,24,43)")
    return text


# --------------------------------------------------------------------------- one target class


class ClassTargetScreen(SessionScreen):
    """A screen about one target class of the control inputs (α_crit explorer, methods).

    The control inputs come through the load pattern (the shared preloaded copy); a table of
    classes (:attr:`TABLE`, a page of :data:`TABLE_PAGE` rows, ``[`` ``]`` turn pages) chooses
    the class. Subclasses say what to compute in :meth:`inputs_ready` and :meth:`class_changed`.
    """

    LOADING = "the cached activations (classifier head, SAE decoder, μ)"
    TABLE: ClassVar[str] = ""  # id of the class DataTable
    BINDINGS: ClassVar[list[Binding]] = [*PAGE_BINDINGS, FILTER_BINDING]  # / needs a FilterBar

    def __init__(self, target_class: int = 0) -> None:
        super().__init__()
        self.target_class = int(target_class)
        self.inputs: ControlInputs | None = None
        self.class_pager = Pager()
        self.filter_text = ""  # /: only the classes whose cells have every typed word
        self.listed_classes: list[int] = []  # the classes listed (all, or those matching the filter)

    def class_cells(self, c: int) -> tuple[str, ...]:
        """The table cells of class ``c`` (first: its name)."""
        assert self.inputs is not None
        return (self.inputs.class_names[c],)

    def load(self) -> ControlInputs:
        return self.salve.shared.get("inputs", self.session)

    def show(self, inputs: ControlInputs) -> None:
        first = self.inputs is None
        self.inputs = inputs
        if first:
            self.target_class = min(max(0, self.target_class), inputs.num_classes - 1)
            self.apply_filter(self.filter_text)
        self.inputs_ready()

    def show_error(self, error: str) -> None:
        super().show_error(error)  # the notice over the content, and the info line too
        self.show_failure(error)

    def _fill_classes(self) -> None:
        table = self.query_one(f"#{self.TABLE}", DataTable)
        pager = self.class_pager
        classes = self.listed_classes
        fill_page(table, pager, lambda i: table.add_row(*self.class_cells(classes[i]), key=str(classes[i])),
                  cursor=classes.index(self.target_class) if self.target_class in classes else None)
        column = next(iter(table.columns.values()), None)
        if column is not None:
            label = (f"{pager.start}–{pager.stop - 1}/{pager.total}" if pager.pages > 1 else "class")
            column.label = Text(label)
            table.refresh()

    def apply_filter(self, text: str) -> None:
        """List the classes whose cells contain every word of ``text`` (all for "")."""
        self.filter_text = text.strip()
        if self.inputs is None:
            return
        self.listed_classes = [c for c in range(self.inputs.num_classes)
                               if matches(self.filter_text, *self.class_cells(c))]
        self.class_pager.set_total(len(self.listed_classes))
        if self.target_class in self.listed_classes:
            self.class_pager.show_index(self.listed_classes.index(self.target_class))
        self._fill_classes()

    def action_page(self, step: int) -> None:
        if self.inputs is not None and self.class_pager.turn(step):
            self._fill_classes()  # the cursor's row is highlighted: that class becomes the target

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if self.inputs is None or event.data_table.id != self.TABLE or getattr(event.row_key, "value", None) is None:
            return
        c = int(event.row_key.value)
        if c != self.target_class:
            self.class_changed(c)

    def inputs_ready(self) -> None:
        """The inputs are in (first load or a reload after a job). Override."""

    def class_changed(self, c: int) -> None:
        """↑/↓ (or a page turn) chose class ``c``. Override; set :attr:`target_class`."""
        self.target_class = c
