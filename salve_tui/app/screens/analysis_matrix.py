"""Feature–class matrix view: the class-conditional mean latents μ as a navigable heatmap.

Rows are classes, columns SAE features, colour the signed μ (normalised per class, per feature
or globally — ``n`` cycles). Each class's dominant feature (largest |μ_ck|) carries a ``◆``.
The status line reports the raw μ under the cursor, its rank within the class and which classes
the feature dominates; Enter opens the feature, ``e`` an edit preview of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Footer, Header, Static

from salve_tui.app.screens.analysis_shared import class_name
from salve_tui.app.screens.base import SessionScreen, session_view
from salve_tui.app.widgets.heatmap import Heatmap, scale_legend

NORMALISATIONS = ("class", "feature", "global")
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
    owners = [class_name(names, c) for c, k in enumerate(dominant) if int(k) == column]
    parts = [f"{class_name(names, row)} · feature {column}",
             f"μ = {value:+.3f}" if np.isfinite(value) else "μ = — (no samples)"]
    if rank is not None:
        parts.append(f"rank {rank}/{M.shape[1]} in class")
    parts.append("dominant for " + ", ".join(owners) if owners else "dominant for no class")
    return " · ".join(parts)


@dataclass(frozen=True)
class MatrixData:
    """What the matrix screen draws: μ (C×h), dominant features, class names and the colour
    values of every normalisation (computed in the load worker: the core's maths needs torch)."""

    M: np.ndarray
    dominant: np.ndarray
    class_names: list[str]
    colours: dict[str, np.ndarray]


def load_matrix(session) -> MatrixData:  # noqa: ANN001 (Session)
    from core.discover.rankings import feature_class_matrix

    M = np.asarray(session.read_array("rankings/class_means"), dtype=float)
    colours = {n: feature_class_matrix(M, n) if M.size else M for n in NORMALISATIONS}
    return MatrixData(M, np.asarray(session.read_array("rankings/dominant"), dtype=np.int64),
                      [str(c) for c in session.read_json("class_names")], colours)


@session_view(footer="Matrix", key="m", title="Feature–class matrix", requires=("rankings",), order=20,
              name="feature_class_matrix",
              description="Class-mean SAE latents as a heatmap; Enter opens a feature")
class MatrixScreen(SessionScreen):
    SCREEN_TITLE = "Feature–class matrix"
    HELP_TEXT = (
        "The class-conditional mean latent μ_ck of every SAE feature k (columns) for every class c "
        "(rows), computed on the training split. Red is positive, blue negative; ◆ marks each "
        "class's dominant feature (largest |μ_ck|). Arrows move the cursor (PgUp/PgDn jump 10 "
        "features, Home/End to the ends); the line below the map gives the exact value. Enter "
        "opens the feature (top samples, Grad-FAM, activation maximisation); e previews an edit "
        "of it; d jumps to the class's dominant feature; n changes how colours are normalised."
    )
    DEFAULT_CSS = """
    MatrixScreen #matrix-info { height: 1; padding: 0 1; text-wrap: nowrap; text-overflow: ellipsis; }
    MatrixScreen #matrix { margin-top: 1; }
    MatrixScreen #matrix-status { height: auto; padding: 0 1; margin-top: 1; }
    """
    BINDINGS: ClassVar[list[Binding]] = [
        Binding("enter", "open_feature", "Open feature"),
        Binding("e", "edit_feature", "Edit"),
        Binding("d", "dominant", "Dominant", show=False),
        Binding("n", "cycle_normalisation", "Normalise"),
    ]
    LOADING = "the feature–class matrix (class-mean latents μ)"
    CONTENT_ACTIONS = frozenset({"open_feature", "edit_feature", "dominant", "cycle_normalisation"})

    def __init__(self) -> None:
        super().__init__()
        self.M = np.zeros((0, 0))
        self.dominant = np.zeros(0, dtype=np.int64)
        self.class_names: list[str] = []
        self.colours: dict[str, np.ndarray] = {}
        self.normalisation = NORMALISATIONS[0]
        self._positioned = False

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="matrix-info", markup=False)
        yield Heatmap(id="matrix")
        yield Static(id="matrix-status", markup=False)
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.query_one(Heatmap).focus()

    # ----- session → view

    def load(self) -> MatrixData:
        return load_matrix(self.session)

    def show(self, data: MatrixData) -> None:
        self.M, self.dominant, self.class_names = data.M, data.dominant, data.class_names
        self.colours = data.colours
        self._draw()
        if not self._positioned and self.M.size:
            self._positioned = True
            first = int(self.dominant[0]) if self.dominant.size and self.dominant[0] >= 0 else 0
            self.query_one(Heatmap).move_to(0, first)
        self._update_status()

    def _draw(self) -> None:
        heatmap = self.query_one(Heatmap)
        marks = {(c, int(k)) for c, k in enumerate(self.dominant) if k >= 0}
        colours = self.colours.get(self.normalisation, self.M)
        heatmap.set_data(self.M, colours, self.class_names, marks)
        info = Text(f"μ {self.M.shape[0]} classes × {self.M.shape[1]} features  ", style="dim")
        for segment in scale_legend(1.0 if self.normalisation != "global" else heatmap.colour_scale):
            info.append(segment.text, segment.style)
        info.append(f" {NORMALISATION_TEXT[self.normalisation]} · ◆ dominant", style="dim")
        self.query_one("#matrix-info", Static).update(info)

    def _update_status(self) -> None:
        heatmap = self.query_one(Heatmap)
        if not self.loaded:
            return
        if not self.M.size:
            self.query_one("#matrix-status", Static).update("no rankings in this session yet")
            return
        row, column = heatmap.cursor
        start, stop = heatmap.visible_range()
        text = matrix_status(self.M, self.dominant, self.class_names, row, column)
        if stop - start < self.M.shape[1]:
            text += f" · showing {start}–{stop - 1}"
        self.query_one("#matrix-status", Static).update(text)

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

    def action_cycle_normalisation(self) -> None:
        index = NORMALISATIONS.index(self.normalisation)
        self.normalisation = NORMALISATIONS[(index + 1) % len(NORMALISATIONS)]
        self._draw()
