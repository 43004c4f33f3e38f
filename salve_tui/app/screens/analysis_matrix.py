"""Feature–class matrix view: the class-conditional mean latents μ as a navigable heatmap.

Rows are classes, columns SAE features, colour the signed μ (normalised per class, per feature
or globally — ``n`` cycles). Each class's dominant feature (largest |μ_ck|) carries a ``◆``.
The status line reports the raw μ under the cursor, its rank within the class and which classes
the feature dominates; Enter opens the feature, ``e`` an edit preview of it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Static

from salve_tui.app.screens.analysis_shared import class_name
from salve_tui.app.screens.base import SessionScreen, session_view
from salve_tui.app.widgets.chrome import ScreenFooter, ScreenHeader
from salve_tui.app.widgets.heatmap import Heatmap, scale_legend

NORMALISATIONS = ("class", "feature", "global")
MAX_OWNERS = 4  # classes named in the status line as owners of a feature
NORMALISATION_TEXT = {
    "class": "÷ class max |μ|",
    "feature": "÷ feature max |μ|",
    "global": "÷ overall max |μ|",
}


def matrix_status(M: np.ndarray, dominant: np.ndarray, names: list[str], row: int, column: int) -> str:
    """``circle · feature 15 · μ = +0.523 · rank 1/64 in class · dominant for circle, star``."""
    value = float(M[row, column])
    magnitudes = np.nan_to_num(np.abs(M[row]), nan=-1.0)
    rank = int((magnitudes > abs(value)).sum()) + 1 if np.isfinite(value) else None
    owners = np.flatnonzero(np.asarray(dominant) == column)
    parts = [f"{class_name(names, row)} · feature {column}",
             f"μ = {value:+.3f}" if np.isfinite(value) else "μ = — (no samples)"]
    if rank is not None:
        parts.append(f"rank {rank}/{M.shape[1]} in class")
    if len(owners):
        listed = ", ".join(class_name(names, int(c)) for c in owners[:MAX_OWNERS])
        more = f" and {len(owners) - MAX_OWNERS} more" if len(owners) > MAX_OWNERS else ""
        parts.append(f"dominant for {listed}{more}")
    else:
        parts.append("dominant for no class")
    return " · ".join(parts)


def parse_jump(text: str, names: list[str], n_features: int) -> tuple[int | None, int | None]:
    """Where a typed jump goes: ``(class row or None, feature column or None)``.

    ``circle`` (a class name, or an unambiguous start or part of one), ``c12`` / ``class 12`` (a
    class index), ``f300`` / ``feature 300`` / ``#300`` / ``300`` (a feature index: a bare number
    is a feature), or both (``circle f300``, ``c12 300``). ValueError says what is wrong.
    """
    normalised = re.sub(r"\b(class|c)\s+(\d+)\b", r"c\2", text.replace(",", " "), flags=re.IGNORECASE)
    normalised = re.sub(r"\b(feature|f)\s+(\d+)\b", r"f\2", normalised, flags=re.IGNORECASE)
    row = column = None
    name_words = []
    for word in normalised.split():
        exact_name = any(name.lower() == word.lower() for name in names)
        if not exact_name and (match := re.fullmatch(r"[cC](\d+)", word)):
            row = _index(int(match.group(1)), len(names), "class", "classes")
        elif not exact_name and (match := re.fullmatch(r"(?:[fF]|#)?(\d+)", word)):
            column = _index(int(match.group(1)), n_features, "feature", "features")
        else:
            name_words.append(word)
    if name_words:
        row = _class_by_name(" ".join(name_words), names)
    if row is None and column is None:
        raise ValueError("type a class name, c<index> or a feature index")
    return row, column


def _index(index: int, count: int, what: str, plural: str) -> int:
    if index >= count:
        raise ValueError(f"{what} {index} does not exist: {plural} are 0–{count - 1}")
    return index


def _class_by_name(text: str, names: list[str]) -> int:
    lowered = text.lower()
    exact = [c for c, name in enumerate(names) if name.lower() == lowered]
    starts = [c for c, name in enumerate(names) if name.lower().startswith(lowered)]
    found = exact or starts or [c for c, name in enumerate(names) if lowered in name.lower()]
    if len(found) == 1 or exact:
        return found[0]
    if not found:
        raise ValueError(f"no class named '{text}'")
    shown = ", ".join(names[c] for c in found[:5]) + (" …" if len(found) > 5 else "")
    raise ValueError(f"'{text}' matches {len(found)} classes ({shown}): type more of the name")


@dataclass(frozen=True)
class MatrixData:
    """What the matrix screen draws: μ (C×h), dominant features, class names and, per
    normalisation, the divisor of the colours (per class, per feature or global; computed in the
    load worker, so no normalised copy of a 1,000 × 16,384 matrix is made)."""

    M: np.ndarray
    dominant: np.ndarray
    class_names: list[str]
    scales: dict[str, np.ndarray]


def load_matrix(session) -> MatrixData:  # noqa: ANN001 (Session)
    from core.discover.rankings import display_scales

    M = np.asarray(session.read_array("rankings/class_means"))
    if not np.issubdtype(M.dtype, np.floating):
        M = M.astype(np.float64)
    scales = display_scales(M, NORMALISATIONS) if M.size else {n: np.ones((1, 1)) for n in NORMALISATIONS}
    return MatrixData(M, np.asarray(session.read_array("rankings/dominant"), dtype=np.int64),
                      [str(c) for c in session.read_json("class_names")], scales)


@session_view(footer="Matrix", key="m", title="Feature–class matrix", requires=("rankings",), order=20,
              name="feature_class_matrix",
              description="Class-mean SAE latents as a heatmap; Enter opens a feature")
class MatrixScreen(SessionScreen):
    SCREEN_TITLE = "Feature–class matrix"
    HELP_TEXT = (
        "The class-conditional mean latent μ_ck of every SAE feature k (columns) for every class c "
        "(rows), computed on the training split. Red is positive, blue negative; ◆ marks each "
        "class's dominant feature (largest |μ_ck|). Arrows move the cursor (PgUp/PgDn jump 10 "
        "features, shift+arrows a screenful, Home/End to the first/last feature, ctrl+Home/End "
        "to the first/last class; the mouse wheel scrolls); only the part on screen is drawn, so "
        "1,000 classes × 16,384 features move as fast as ten. g goes to a class or feature you "
        "type: a class name (or its start), c12 for class 12, 300 or f300 for feature 300, or "
        "both (\"circle f300\"). The line below the map gives the exact value. Enter opens the "
        "feature (top samples, Grad-FAM, activation maximisation); e previews an edit of it; d "
        "jumps to the class's dominant feature; n changes how colours are normalised."
    )
    CSS_PATH = Path(__file__).with_suffix(".tcss")  # this module's screens
    BINDINGS: ClassVar[list[Binding]] = [
        Binding("enter", "open_feature", "Open", tooltip="Open the feature card"),
        Binding("e", "edit_feature", "Edit"),
        Binding("g", "go_to", "Go to"),
        Binding("d", "dominant", "Dominant", show=False),
        Binding("n", "cycle_normalisation", "Normalise"),
    ]
    LOADING = "the feature–class matrix (class-mean latents μ)"
    CONTENT_ACTIONS = frozenset({"open_feature", "edit_feature", "dominant", "cycle_normalisation", "go_to"})
    RESERVED_LINES = 6  # header, info, margin, status (+ its margin), footer: the map gets the rest

    def __init__(self) -> None:
        super().__init__()
        self.M = np.zeros((0, 0))
        self.dominant = np.zeros(0, dtype=np.int64)
        self.class_names: list[str] = []
        self.scales: dict[str, np.ndarray] = {}
        self.normalisation = NORMALISATIONS[0]
        self._positioned = False

    def compose(self) -> ComposeResult:
        yield ScreenHeader()
        yield Static(id="matrix-info", markup=False)
        yield Heatmap(id="matrix")
        yield Static(id="matrix-status", markup=False)
        yield ScreenFooter(compact=True)

    def on_mount(self) -> None:
        self.query_one(Heatmap).focus()
        self._fit_height()

    def on_resize(self) -> None:
        self._fit_height()
        self.call_after_refresh(self._update_status)  # the visible window changed with the size

    def _fit_height(self) -> None:
        """The map takes what the other lines leave; it draws only the rows that fit."""
        if self.size.height:
            self.query_one(Heatmap).styles.max_height = max(2, self.size.height - self.RESERVED_LINES)

    # ----- session → view

    def load(self) -> MatrixData:
        return load_matrix(self.session)

    def show(self, data: MatrixData) -> None:
        self.M, self.dominant, self.class_names = data.M, data.dominant, data.class_names
        self.scales = data.scales
        self._draw()
        if not self._positioned and self.M.size:
            self._positioned = True
            first = int(self.dominant[0]) if self.dominant.size and self.dominant[0] >= 0 else 0
            self.query_one(Heatmap).move_to(0, first)
        self._update_status()
        self.call_after_refresh(self._update_status)  # once laid out, the window shown is known

    def _draw(self) -> None:
        heatmap = self.query_one(Heatmap)
        marks = {(c, int(k)) for c, k in enumerate(self.dominant) if k >= 0}
        heatmap.set_data(self.M, self.class_names, marks, scale=self.scales.get(self.normalisation, 1.0))
        info = Text(f"μ {self.M.shape[0]} classes × {self.M.shape[1]} features  ", style="dim")
        for segment in scale_legend(1.0):
            info.append(segment.text, segment.style)
        info.append(f" {NORMALISATION_TEXT[self.normalisation]} · ◆ dominant", style="dim")
        self.query_one("#matrix-info", Static).update(info)

    def _update_status(self) -> None:
        if not self.loaded or not self.query(Heatmap):  # (closing: its widgets are going)
            return
        heatmap = self.query_one(Heatmap)
        if not self.M.size:
            self.query_one("#matrix-status", Static).update("no rankings in this session yet")
            return
        row, column = heatmap.cursor
        start, stop = heatmap.visible_range()
        first_row, last_row = heatmap.visible_row_range()
        text = matrix_status(self.M, self.dominant, self.class_names, row, column)
        if stop - start < self.M.shape[1]:
            text += f" · showing {start}–{stop - 1}"
        if last_row - first_row < self.M.shape[0]:
            text += f" · classes {first_row}–{last_row - 1} of {self.M.shape[0]}"
        self.query_one("#matrix-status", Static).update(text, layout=False)  # fixed height (analysis_matrix.tcss)

    def on_heatmap_cursor_moved(self, message: Heatmap.CursorMoved) -> None:
        self._update_status()

    def on_heatmap_selected(self, message: Heatmap.Selected) -> None:
        self._open_feature(message.column, message.row)

    # ----- actions

    @property
    def selected(self) -> tuple[int, int]:
        """(class, feature) under the cursor."""
        return self.query_one(Heatmap).cursor

    def action_open_feature(self) -> None:
        row, column = self.selected
        self._open_feature(column, row)

    def _open_feature(self, feature: int, row: int) -> None:
        from salve_tui.app.screens.analysis_feature import FeatureDetailScreen

        self.app.push_screen(FeatureDetailScreen(feature, selected_class=row))

    def action_edit_feature(self) -> None:
        from salve_tui.app.screens.analysis_edit import EditPreviewScreen

        row, column = self.selected
        self.app.push_screen(EditPreviewScreen(target_class=row, features=[column]))

    def action_dominant(self) -> None:
        row, _ = self.selected
        if self.dominant.size and self.dominant[row] >= 0:
            self.query_one(Heatmap).move_to(row, int(self.dominant[row]))

    def action_go_to(self) -> None:
        from salve_tui.app.screens.number_input import PromptModal

        names, n_features = self.class_names, int(self.M.shape[1])

        def jump(target: tuple[int | None, int | None] | None) -> None:
            if target is None or not self.is_attached:
                return
            row, column = target
            heatmap = self.query_one(Heatmap)
            current_row, current_column = heatmap.cursor
            heatmap.move_to(current_row if row is None else row, current_column if column is None else column)

        self.app.push_screen(PromptModal(
            f"Go to a class (name, or c0–c{len(names) - 1}) and/or a feature (0–{n_features - 1}):",
            lambda text: parse_jump(text, names, n_features)), jump)

    def action_cycle_normalisation(self) -> None:
        index = NORMALISATIONS.index(self.normalisation)
        self.normalisation = NORMALISATIONS[(index + 1) % len(NORMALISATIONS)]
        self._draw()
