"""Confusion matrices before and after an edit, side by side (SPEC §5).

Opened from the edit preview (``b``, with the edit being previewed) or from the dashboard (the
last recorded edit, else suppression of class 0's dominant feature at its α50). The effect is
:func:`core.workflow.edits.preview_edit` on the cached activations, in a thread worker.
When the counts do not fit beside each other, cells become shades of each row's share.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Static

from salve_tui.app.format import cut_label
from salve_tui.app.screens.analysis_shared import class_name
from salve_tui.app.screens.base import SessionScreen, session_view
from salve_tui.app.widgets.chrome import ScreenFooter, ScreenHeader

if TYPE_CHECKING:
    from core.control.spec import EditSpec
    from core.control.sweep import EditEffect
    from core.workflow.inputs import ControlInputs

LABEL = 6
GAP = 2


def share_colour(share: float) -> str:
    """White (0) to dark blue (1) for a row share."""
    share = float(np.clip(share, 0, 1))
    low, high = np.array([245, 245, 245]), np.array([8, 48, 107])
    r, g, b = np.round(low + share * (high - low)).astype(int)
    return f"rgb({r},{g},{b})"


def confusion_pair_text(before: np.ndarray, after: np.ndarray, names: list[str], target: int,
                        width: int) -> Text:
    """Before and after side by side (rows true, columns predicted): counts when they fit in
    ``width``, else shaded cells (row share). Changed cells of "after" are yellow. Columns are
    numbered in class order like the rows (a name does not fit a count's 3 cells), and a legend
    under the matrices names every column."""
    C = before.shape[0]
    cell = max(3, len(str(int(max(before.max(initial=0), after.max(initial=0))))) + 1, len(str(C - 1)) + 1)
    numbers = 2 * (LABEL + 1 + C * cell) + GAP <= width
    if not numbers:
        cell = 2
    # The row label takes what the two blocks leave (up to 14 cells): "triangle" instead of "trian…".
    label = max(LABEL, min(14, (width - GAP) // 2 - 1 - C * cell)) if numbers else LABEL
    block = label + 1 + C * cell
    text = Text()
    text.append("before"[:block].ljust(block + GAP) + "after the edit"[:block] + "\n", style="bold")
    header = " " * (label + 1) + "".join(f"{j if numbers else j % 10:>{cell}}" for j in range(C))
    text.append(header + " " * GAP + header + "\n", style="dim")
    for i in range(C):
        row_label = cut_label(names[i], label)
        for m, matrix in enumerate((before, after)):
            text.append(f"{row_label:<{label}} ", style="bold" if i == target else "dim")
            total = max(1, int(matrix[i].sum()))
            for j in range(C):
                value = int(matrix[i, j])
                changed = m == 1 and value != int(before[i, j])
                if numbers:
                    style = "yellow bold" if changed else ("green" if i == j else ("bright_black" if value == 0 else ""))
                    text.append(f"{value:>{cell}}", style=style)
                else:
                    mark = "••" if changed else "  "
                    text.append(mark, style=Style(bgcolor=share_colour(value / total), color="yellow", bold=True))
            text.append(" " * GAP if m == 0 else "\n")
    if numbers:
        text.append("rows: true class · columns: predicted · yellow: changed by the edit\n", style="dim")
    else:
        text.append("rows: true class · columns: predicted (class index mod 10) · shade: share of "
                    "the row (white 0 → blue 1) · •: changed by the edit\n", style="dim")
    text.append(column_legend(names), style="dim")
    return text


def column_legend(names: list[str]) -> str:
    """``columns: 0 circle · 1 square · …``: the full name of every numbered column."""
    return "columns: " + " · ".join(f"{j} {name}" for j, name in enumerate(names)) + "\n"


def target_row_text(effect: EditEffect, names: list[str], target: int) -> Text:
    """The target class's row before and after, as its most frequent predictions."""
    before = effect.confusion_before.numpy()[target]
    after = effect.confusion_after.numpy()[target]
    order = np.argsort(-after, kind="stable")[:4]
    text = Text(f"{class_name(names, target)}: correct {int(before[target])} → {int(after[target])} "
                f"of {int(before.sum())} · now predicted as ", style="bold")
    text.append(", ".join(f"{class_name(names, int(j))} {int(after[j])}" for j in order if after[j]))
    return text


@session_view(footer="Confusion", key="v", title="Confusion before/after", requires=("rankings",),
              order=36, name="confusion", in_footer=False,
              description="Confusion matrices before and after an edit, side by side")
class ConfusionScreen(SessionScreen):
    SCREEN_TITLE = "Confusion before/after"
    HELP_TEXT = (
        "The confusion matrix of the test split before the edit and after it, side by side (rows: "
        "true class, columns: predicted; changed cells yellow). From the edit preview (b) it shows "
        "the edit being previewed; opened from the dashboard it shows the last recorded edit, or "
        "suppressing class 0's dominant feature at the α where its accuracy halves. ] / [ step the "
        "target class (dominant feature, at its α50), = types the strength. ↑/↓ scroll."
    )
    CSS_PATH = Path(__file__).with_suffix(".tcss")  # this module's screens
    LOADING = "the cached activations and the edit"
    INFO, FAILED, LOAD_ERROR_IN_INFO = "confusion-info", "show the confusion matrices", True
    CONTENT_ACTIONS = frozenset({"target_class", "type_strength"})
    BINDINGS: ClassVar[list[Binding]] = [
        Binding("right_square_bracket", "target_class(1)", "Class", key_display="[ ]"),
        Binding("left_square_bracket", "target_class(-1)", "Previous class", key_display="[", show=False),
        Binding("equals_sign", "type_strength", "Strength", key_display="="),
    ]

    def __init__(self, spec: EditSpec | None = None, target_class: int = 0) -> None:
        super().__init__()
        self.spec = spec
        self.target_class = int(target_class)
        self.inputs: ControlInputs | None = None
        self.effect: EditEffect | None = None
        self.source = "the edit being previewed" if spec is not None else ""
        self.use_recorded = spec is None  # the dashboard's view starts from the last recorded edit

    def compose(self) -> ComposeResult:
        yield ScreenHeader()
        yield Static("", id="confusion-info", markup=False)
        with VerticalScroll(id="confusion-scroll"):
            yield Static("", id="confusion-body", markup=False)
        yield ScreenFooter(compact=True)

    def on_mount(self) -> None:
        self.query_one("#confusion-scroll").focus()

    def on_resize(self) -> None:
        self._draw()

    def load(self) -> tuple[ControlInputs, EditSpec, int, str, EditEffect]:
        from core.workflow.edits import edit_effect_on, list_edits
        from core.workflow.inputs import load_inputs

        session, spec, target, source = self.session, self.spec, self.target_class, self.source
        inputs = load_inputs(session)
        if spec is None:
            edits = list_edits(session) if self.use_recorded else []
            if edits:
                spec, source = edits[-1], f"last recorded edit (#{len(edits)})"
            else:
                spec, source = default_spec(inputs, target), "dominant feature at its α50"
        return inputs, spec, target, source, edit_effect_on(inputs, spec)

    def show(self, loaded: tuple[ControlInputs, EditSpec, int, str, EditEffect]) -> None:
        self.inputs, self.spec, target, self.source, self.effect = loaded
        if "target_class" in self.spec.extra:
            self.target_class = int(self.spec.extra["target_class"])
        elif self.source.startswith("last recorded") and self.spec.features:
            self.target_class = self.inputs.feature_class(self.spec.features[0])
        else:
            self.target_class = target
        self._draw()

    def _draw(self) -> None:
        if self.effect is None or self.inputs is None or self.spec is None:
            return
        from core.control.methods.registry import get_method

        names, spec = self.inputs.class_names, self.spec
        self.query_one("#confusion-info", Static).update(Text(
            f"{get_method(spec.method).describe(spec)} · {self.source}"))  # the method's own words
        width = max(40, self.query_one("#confusion-scroll").content_size.width)
        body = confusion_pair_text(self.effect.confusion_before.numpy(),
                                   self.effect.confusion_after.numpy(), names, self.target_class, width)
        body.append_text(target_row_text(self.effect, names, self.target_class))
        self.query_one("#confusion-body", Static).update(body)

    def _recompute(self, spec: EditSpec | None, source: str) -> None:
        self.spec, self.source = spec, source
        self.query_one("#confusion-info", Static).update("computing the edit's effect…")
        self.reload()

    def action_target_class(self, step: int) -> None:
        if self.inputs is None:
            return
        self.target_class = (self.target_class + step) % self.inputs.num_classes
        self.use_recorded = False
        self._recompute(None, "")

    def action_type_strength(self) -> None:
        from dataclasses import replace

        from core.control.methods.registry import get_method
        from salve_tui.app.screens.number_input import NumberInputModal

        if self.spec is None:
            return
        spec = self.spec
        minimum = 0.0 if get_method(spec.method).nonnegative_strength else None

        def apply(value: float | None) -> None:
            if value is not None:
                self._recompute(replace(spec, alpha=value), "typed strength")

        self.app.push_screen(NumberInputModal("Edit strength:", spec.alpha, minimum), apply)


def default_spec(inputs: ControlInputs, target: int) -> EditSpec:
    """Suppress ``target``'s dominant feature with the default method (SALVE, linear) at the
    strength where its accuracy halves on the automatic curve (the curve's end when it never
    does)."""
    from core.control.alpha_crit import alpha50
    from core.control.methods.base import EditRequest
    from core.workflow.edits import build_spec
    from core.workflow.sweeps import compute_sweep

    k = max(0, int(inputs.dominant[target]))
    curve = compute_sweep(inputs, None, EditRequest(target, [k]))
    at = alpha50(curve.alphas, curve.per_class_accuracy[target])
    strength = float(curve.alphas[-1]) if at is None else float(at)
    return build_spec(inputs, None, [k], target, "suppress", strength, "linear")
