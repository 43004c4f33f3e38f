"""Edit preview: what a SALVE / ROME / steering edit does to every class, live as α changes.

Each α key press calls :func:`core.workflow.edits.edit_effect_on` (cached activations, one matmul, no
write) and redraws the per-class accuracy table (before / after / Δ), the confusion matrix after
the edit (cells that changed in yellow) and the marker on the suppression curve. The curve
itself is a sweep of the current settings (:func:`core.workflow.sweeps.compute_sweep`, pure)
computed in a thread worker whenever the feature, class, method, mode or modulation changes;
its range also sets the α step sizes (coarse = range/20, fine = range/200).

``w`` records the edit in the session and exports the edited model (``.pt`` + ``.safetensors``
with a JSON sidecar) as an app job; the written paths are shown when it finishes.

What the keys do to the settings is :mod:`~salve_tui.app.screens.edit_controls`, the text it
draws :mod:`~salve_tui.app.screens.edit_text`, the ``w`` job :mod:`~salve_tui.app.screens.edit_export`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable, Static

from salve_tui.app.format import tui_words
from salve_tui.app.jobs import JobFailed, JobFinished, JobMessage
from salve_tui.app.screens.analysis_shared import (
    BRACE_PAGE_BINDINGS,
    Pager,
    class_name,
    delta_text,
    fill_page,
    fmt_percent,
)
from salve_tui.app.screens.base import SessionScreen, session_view
from salve_tui.app.screens.edit_controls import STRENGTH_GROUP, EditControls
from salve_tui.app.screens.edit_export import record_and_export
from salve_tui.app.screens.edit_text import (  # the other screens and tests import these from here
    confusion_text,
    display_path,
    export_status,
    files_text,
    nice_step,
)
from salve_tui.app.widgets.chrome import ScreenFooter, ScreenHeader
from salve_tui.app.widgets.selectivity import SelectivityPanel

if TYPE_CHECKING:
    from core.control.curves import SweepResult
    from core.control.spec import EditSpec
    from core.control.sweep import EditEffect
    from core.workflow.inputs import ControlInputs

__all__ = ["EditPreviewScreen", "confusion_text", "display_path", "files_text", "nice_step"]

BOTH_PANELS_MIN_HEIGHT = 38  # below this the curve and the confusion matrix take turns (v)


@session_view(footer="Edit", key="e", title="Edit preview", requires=("rankings",), order=30, name="edit_preview",
              description="Per-class accuracy before/after a SALVE, ROME or steering edit")
class EditPreviewScreen(EditControls, SessionScreen):
    SCREEN_TITLE = "Edit preview"
    HELP_TEXT = (
        "Preview a permanent edit of the classifier's last layer on the cached test activations. "
        "↑/↓ choose the target class (the edited feature follows its dominant feature unless you "
        "picked one); < > step the feature; n adds a feature, x removes the last one; d goes back "
        "to the dominant feature. + / - change the strength in coarse steps, ] / [ in fine steps, "
        "0 resets it, = types an exact value. b shows the confusion matrices before and after "
        "side by side. s switches suppress/enhance, m the method (SALVE weight edit, ROME rank-one "
        "baseline, SAE steering), o the modulation (linear = Eq. 1, clamped = sign-preserving). "
        "The table shows each class's test accuracy before and after the edit and the change in "
        "percentage points; the curve shows the target class (red) and the mean of the others "
        "(cyan) across strengths with the current value marked; v swaps it for the confusion matrix "
        "after the edit (changed cells yellow) when the terminal is too short for both. w records "
        "the edit in the session and exports the edited model weights. Many classes are listed a "
        "page at a time: { and } turn the page (the status line says which rows)."
    )
    CSS_PATH = Path(__file__).with_name("analysis_edit.tcss")  # absolute: a subclass may live elsewhere
    BINDINGS: ClassVar[list[Binding]] = [
        Binding("plus", "alpha(1)", "+ coarse", key_display="+", group=STRENGTH_GROUP),
        Binding("minus", "alpha(-1)", "- coarse", key_display="-", group=STRENGTH_GROUP),
        Binding("right_square_bracket", "alpha_fine(1)", "fine +", key_display="]", show=False),
        Binding("left_square_bracket", "alpha_fine(-1)", "fine -", key_display="[", show=False),
        Binding("equals_sign", "type_alpha", "Type strength", key_display="=", show=False),
        Binding("b", "confusion", "Confusion before/after", show=False),
        Binding("0", "alpha_zero", "reset", show=False),
        Binding("s", "toggle_mode", "Supp/enh"),
        Binding("m", "cycle_method", "Method"),
        Binding("o", "cycle_modulation", "Modulation", show=False),
        Binding("w", "export", "Export", tooltip="record the edit and export the edited weights"),
        Binding("v", "toggle_panel", "Curve/confusion", show=False),
        Binding("less_than_sign", "step_feature(-1)", "Prev feature", key_display="<", show=False),
        Binding("greater_than_sign", "step_feature(1)", "Next feature", key_display=">", show=False),
        Binding("n", "add_feature", "Add feature", show=False),
        Binding("x", "remove_feature", "Remove feature", show=False),
        Binding("d", "dominant", "Dominant feature", show=False),
        *BRACE_PAGE_BINDINGS,
    ]
    LOADING = "the control inputs (cached activations, classifier head, SAE decoder)"
    CONTENT_ACTIONS = frozenset({"alpha", "alpha_fine", "alpha_zero", "toggle_mode", "cycle_method",
                                 "type_alpha", "confusion",
                                 "cycle_modulation", "export", "step_feature", "add_feature",
                                 "remove_feature", "dominant", "page"})

    def __init__(self, target_class: int = 0, features: list[int] | None = None) -> None:
        super().__init__()
        self.target_class = int(target_class)
        self.features: list[int] = list(features or [])
        self.follow_dominant = not self.features
        self.mode = "suppress"
        self.method: str | None = None  # a registered method's name; None: the first (on load)
        self.modulation = "linear"
        self.alpha = 0.0
        self.inputs: ControlInputs | None = None
        self.curve: SweepResult | None = None
        self.effect: EditEffect | None = None
        self.spec: EditSpec | None = None
        self.error = ""
        self.status = ""
        self._export_job: Any = None
        self.last_export: Any = None  # ExportResult of the last record + export
        self._table_ready = False
        self.pager = Pager()  # the table holds one page of the classes
        self.panel = "curve"  # what the right column shows when both do not fit

    def on_resize(self) -> None:
        self._apply_panel()
        self.call_after_refresh(self._draw_confusion)

    def _apply_panel(self, height: int | None = None) -> None:
        both = (self.size.height if height is None else height) >= BOTH_PANELS_MIN_HEIGHT
        self.set_class(not both and self.panel == "curve", "-show-curve")
        self.set_class(not both and self.panel == "confusion", "-show-confusion")

    def action_toggle_panel(self) -> None:
        self.panel = "confusion" if self.panel == "curve" else "curve"
        self._apply_panel()
        self.call_after_refresh(self._draw_confusion)  # its width is known once it is laid out

    def compose(self) -> ComposeResult:
        # the panel classes before the first styling pass: set after it, they restyled the
        # whole screen (~20 ms of the first paint)
        self._apply_panel(self.app.size.height)
        yield ScreenHeader()
        yield Static(id="edit-settings", markup=False)
        with Horizontal(id="edit-body"):
            yield DataTable(id="edit-table", cursor_type="row", zebra_stripes=False)
            with Vertical(id="edit-right"):  # the curve is mounted by show(): plotext loads in load()
                yield Static(id="edit-confusion", markup=False)
                yield SelectivityPanel(id="edit-selectivity")
        yield Static(id="edit-status", markup=False)
        yield ScreenFooter(compact=True)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_column("class", key="class", width=9)
        table.add_column("before", key="before", width=6)
        table.add_column("after", key="after", width=6)
        table.add_column("Δ pts", key="delta", width=6)
        table.focus()

    # ----- session → view

    def load(self) -> ControlInputs:
        """The shared control inputs (the app preloads them when the session opens)."""
        import textual_plotext  # noqa: F401  (imported here, off the UI thread)

        return self.salve.shared.get("inputs", self.session)

    def show(self, inputs: ControlInputs) -> None:
        """The first call also builds the table; a changed session restarts the curve."""
        changed = self.inputs is not inputs
        if not self.query("#edit-curve"):
            from salve_tui.app.widgets.plot import CurvePlot

            self.query_one("#edit-right").mount(CurvePlot(id="edit-curve"), before=0)
        self.inputs = inputs
        self.method = self.m.name
        self.target_class = min(max(0, self.target_class), inputs.num_classes - 1)
        if self.follow_dominant or not self.features:
            self.features = [self._dominant(self.target_class)]
        if not self._table_ready:
            self._build_table()
        if changed:
            self._start_curve()
        self.update_preview()

    def _build_table(self) -> None:
        """The page of classes holding the target (names dim for classes without test samples)."""
        assert self.inputs is not None
        table = self.query_one(DataTable)
        counts = np.bincount(self.inputs.labels.numpy(), minlength=self.inputs.num_classes)
        names = self.inputs.class_names
        self.pager.set_total(self.inputs.num_classes)
        self.pager.show_index(self.target_class)
        self._table_ready = False  # the highlights of the refill are not choices
        fill_page(table, self.pager, lambda c: table.add_row(
            Text(names[c]) if counts[c] else Text(names[c], style="dim"), "", "", "", key=str(c)),
            cursor=self.target_class)
        self._table_ready = True

    def action_page(self, step: int) -> None:
        """{ } show the next/previous page of classes; its first class becomes the target."""
        if self.inputs is None or not self.pager.turn(step):
            return
        self.target_class = self.pager.start
        if self.follow_dominant:
            self.features = [self._dominant(self.target_class)]
        self._build_table()
        self._settings_changed()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if not self._table_ready or getattr(event.row_key, "value", None) is None:
            return
        c = int(event.row_key.value)
        if c == self.target_class:
            return
        self.target_class = c
        if self.follow_dominant:
            self.features = [self._dominant(c)]
        self._settings_changed()

    # ----- the edit

    def build_spec(self) -> EditSpec:
        from core.workflow.edits import build_spec

        assert self.inputs is not None
        return build_spec(self.inputs, self.method, self.features, self.target_class, self.mode,
                          self.alpha, self.modulation)

    def update_preview(self) -> None:
        """Recompute the effect of the current settings (fast, synchronous) and redraw."""
        if self.inputs is None:
            return
        from core.workflow.edits import edit_effect_on

        try:
            self.spec = self.build_spec()
            self.effect = edit_effect_on(self.inputs, self.spec)
            self.error = ""
        except ValueError as exc:
            self.spec, self.effect, self.error = None, None, tui_words(str(exc))
        self._draw()

    def _draw(self) -> None:
        self._draw_settings()
        self._draw_table()
        self._draw_confusion()
        self._draw_curve()
        self._draw_status()

    def _draw_settings(self) -> None:
        if self.inputs is None:
            return
        names = self.inputs.class_names
        text = Text()
        text.append(f"{class_name(names, self.target_class)}", style="bold")
        text.append(f" · {self.m.label}")
        if self.m.needs_features:
            text.append(f" {self.mode} f{'+'.join(str(k) for k in self.features)}")
            if self.follow_dominant:
                text.append(" (dom.)", style="dim")
        text.append(f" · {self.param_name}=", style="")
        text.append(f"{self.alpha:.4g}", style="bold yellow")
        coarse, fine = self.steps()
        text.append(f" (±{coarse:g}/{fine:g})", style="dim")  # exactly what + and ] add
        if len(self.m.modulations) > 1:
            text.append(f" · {self.modulation}")
        self.query_one("#edit-settings", Static).update(text)

    def _draw_table(self) -> None:
        if not self._table_ready:
            return
        table = self.query_one(DataTable)
        effect = self.effect
        for c in range(self.pager.start, self.pager.stop) if self.inputs else ():
            if effect is None:
                table.update_cell(str(c), "after", "")
                table.update_cell(str(c), "delta", "")
                continue
            before = float(effect.accuracy_before[c])
            after = float(effect.accuracy_after[c])
            table.update_cell(str(c), "before", fmt_percent(before))
            after_style = "bold" if c == self.target_class else ""
            table.update_cell(str(c), "after", Text(fmt_percent(after), style=after_style))
            table.update_cell(str(c), "delta", delta_text(after - before))

    def _draw_confusion(self) -> None:
        widget = self.query_one("#edit-confusion", Static)
        if self.effect is None or self.inputs is None:
            widget.update("")
            return
        right = self.query_one("#edit-right").size.width
        width = right - 1 if right > 1 else 45  # minus the left padding
        widget.update(confusion_text(self.effect.confusion_before.numpy(),
                                     self.effect.confusion_after.numpy(),
                                     self.inputs.class_names, self.target_class, width))

    def _draw_curve(self) -> None:
        if not self.query("#edit-curve"):
            return
        widget = self.query_one("#edit-curve")
        plt = widget.plt  # type: ignore[attr-defined]
        plt.clear_data()
        plt.clear_figure()
        curve = self.curve
        if curve is None or self.inputs is None:
            plt.title("computing the curve…" if self.inputs is not None else "")
            widget.refresh()
            return
        x = curve.alphas.double().numpy()
        target = curve.per_class_accuracy[self.target_class].double().numpy()
        others = curve.others_mean_accuracy.double().numpy()
        name = class_name(self.inputs.class_names, self.target_class)
        plt.plot(x.tolist(), np.nan_to_num(target).tolist(), color="red", marker="braille", label=name)
        plt.plot(x.tolist(), np.nan_to_num(others).tolist(), color="cyan", marker="braille",
                 label="others")
        plt.vline(self.alpha, color="yellow")
        plt.ylim(0, 1)
        plt.title(f"accuracy vs {self.param_name} ({self.param_name}={self.alpha:.3g})")
        widget.refresh()

    def _draw_status(self) -> None:
        widget = self.query_one("#edit-status", Static)
        if self.error:
            widget.update(Text(self.error, style="red"))
            return
        if self.status:
            widget.update(self.status)
            return
        if self.effect is None or self.inputs is None:
            widget.update("")
            return
        labels = self.inputs.labels.numpy()
        counts = np.bincount(labels, minlength=self.inputs.num_classes).astype(float)
        before = np.nan_to_num(self.effect.accuracy_before.numpy()) @ counts / counts.sum()
        after = np.nan_to_num(self.effect.accuracy_after.numpy()) @ counts / counts.sum()
        pages = self.pager.label("classes", "{ }")
        widget.update(f"overall test accuracy {fmt_percent(before)} → {fmt_percent(after)} · "
                      + (pages if pages else "w records it, exports the weights"))

    def _set_error(self, error: str) -> None:
        if self.is_attached:
            self.error = error
            if self.inputs is None:  # never leave "loading…" up when the load has failed
                self.query_one("#edit-settings", Static).update(Text(error, style="red"))
            self._draw_status()

    # ----- the curve (sweep of the current settings, in a worker)

    def _start_curve(self) -> None:
        if self.inputs is None:
            return
        inputs = self.inputs
        target, features = self.target_class, list(self.features)
        method, mode, modulation = self.method, self.mode, self.modulation
        key = (target, tuple(features), method, mode, modulation)
        self.curve = None

        def compute() -> SweepResult:
            from core.control.methods.base import EditRequest
            from core.workflow.sweeps import compute_sweep

            return compute_sweep(inputs, method, EditRequest(target, features, mode=mode, modulation=modulation))

        self.compute_in_thread(compute, lambda result: self._curve_ready(key, result), self._set_error,
                               group="edit-curve")

    def _curve_ready(self, key: tuple, result: SweepResult) -> None:
        current = (self.target_class, tuple(self.features), self.method, self.mode, self.modulation)
        if not self.is_attached or key != current:
            return
        self.curve = result
        self._draw()
        if self.inputs is not None:
            self.query_one(SelectivityPanel).show_for(self.session, result, self.inputs)

    def _settings_changed(self) -> None:
        self.status = ""
        self._start_curve()
        self.update_preview()

    # ----- actions

    def action_confusion(self) -> None:
        from salve_tui.app.screens.analysis_confusion import ConfusionScreen

        if self.spec is None:
            self.notify(self.error or "no edit to compare yet", severity="warning")
            return
        self.app.push_screen(ConfusionScreen(self.spec, self.target_class))

    def action_export(self) -> None:
        if self.spec is None:
            self.notify(self.error or "nothing to export yet", severity="warning")
            return
        session, spec = self.session, self.spec

        def body(progress, cancel):  # noqa: ANN001 (core ProgressFn, CancelToken)
            return record_and_export(session, spec)

        job = self.salve.start_job("record + export edit", body)
        if job is not None:
            self._export_job = job
            self.status = "exporting the edited model…"
            self._draw_status()

    def on_job_update(self, message: JobMessage) -> None:
        if message.job is not self._export_job:
            return
        if isinstance(message, JobFinished):
            self.status = export_status(message.result)
            self.last_export = message.result
            self._draw_status()
        elif isinstance(message, JobFailed):
            self.status = ""
            self._set_error(f"export failed: {message.error}")

