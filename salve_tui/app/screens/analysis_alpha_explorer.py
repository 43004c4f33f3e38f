"""α_crit explorer: the critical threshold for any class × feature, suppression or enhancement.

The α_crit view lists each class's dominant feature; here any feature can be asked about (a
cross-class edit: a feature shared by two classes) and the mode switched to enhancement (the
critical enhancement threshold, for samples whose class logit is negative). Each change runs
:func:`core.workflow.alpha_crit.compute_alpha_crit` (pure) in a thread worker (cached
activations, no write); ``w`` records the shown result in the session as a job.
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

from core.config import MODULATIONS
from salve_tui.app.jobs import JobFailed, JobFinished, JobMessage
from salve_tui.app.screens.analysis_shared import (
    ClassTargetScreen,
    class_name,
    error_text,
    fmt_value,
)
from salve_tui.app.screens.base import session_view
from salve_tui.app.widgets.chrome import ScreenFooter, ScreenHeader
from salve_tui.app.widgets.filter import FilterBar

if TYPE_CHECKING:
    from core.control.alpha_crit import AlphaCritResult

MODES = ("suppress", "enhance")


def summary_text(result: AlphaCritResult, class_names: list[str]) -> Text:
    """Counts (qualifying, excluded and why), quantiles of both estimates, α50 and validity."""
    s = result.summary()
    text = Text()
    critical = "enhancement" if result.mode == "enhance" else "suppression"
    text.append(f"critical {critical} threshold · {class_name(class_names, result.target_class)} · "
                f"feature {result.feature} · {result.modulation}\n", style="bold")
    text.append(f"samples {s['n_samples']} · qualifying analytic {s['n_qualifying_analytic']}, "
                f"numerical {s['n_qualifying_numerical']}\n")
    excluded = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in s["excluded"].items() if v)
    text.append(f"excluded: {excluded or 'none'}\n", style="dim")
    text.append(f"{'':<10}{'median':>8}{'q1':>8}{'q3':>8}{'p5':>8}{'p95':>8}\n", style="dim")
    for key in ("analytic", "numerical"):
        d = s[key]
        text.append(f"{key:<10}" + "".join(f"{fmt_value(d.get(q)):>8}"
                                            for q in ("median", "q1", "q3", "p5", "p95")) + "\n")
    text.append(f"α50 (accuracy 50% on the curve): {fmt_value(s['alpha50'])}\n")
    below = s["validity"]["pooled_share_below_zero"]
    text.append(f"factors 1 − α_crit|D_j| below zero: {fmt_value(below)} of all coordinates\n")
    if result.modulation != "linear":
        text.append("clamped modulation: the analytic value z/S is only an approximation here\n",
                    style="yellow")
    return text


@session_view(footer="α any", key="j", title="α_crit explorer", requires=("rankings",), order=41,
              name="alpha_crit_explorer", in_footer=False,
              description="α_crit for any feature, and the critical enhancement threshold")
class AlphaExplorerScreen(ClassTargetScreen):
    SCREEN_TITLE = "α_crit explorer"
    HELP_TEXT = (
        "The critical threshold for any class and any feature. ↑/↓ choose the class; < > step "
        "the feature (d goes back to the class's dominant feature, = types one); s switches "
        "between suppression (α at which the class logit z of a sample with z > 0 reaches zero) and "
        "enhancement (the critical enhancement threshold, for samples with z < 0); o the "
        "modulation. The summary gives counts, exclusions, quartiles and 5th/95th percentiles of "
        "the analytic z/S and the numerical root, α50 from the curve and the validity diagnostic; "
        "the plot the per-sample distribution. w records the result in the session."
    )
    CSS_PATH = Path(__file__).with_suffix(".tcss")  # this module's screens
    BINDINGS: ClassVar[list[Binding]] = [
        Binding("greater_than_sign", "step_feature(1)", "Feature", key_display="< >"),
        Binding("less_than_sign", "step_feature(-1)", "Previous feature", key_display="<", show=False),
        Binding("d", "dominant", "Dominant", show=False),
        Binding("equals_sign", "type_feature", "Type feature", key_display="=", show=False),
        Binding("s", "toggle_mode", "Supp/enh"),
        Binding("o", "cycle_modulation", "Modulation", show=False),
        Binding("w", "record", "Record"),
    ]
    CONTENT_ACTIONS = frozenset({"step_feature", "dominant", "type_feature", "record"})
    INFO, TABLE, FAILED = "explore-info", "explore-classes", "compute α_crit"

    def __init__(self, target_class: int = 0, feature: int | None = None, mode: str = "suppress") -> None:
        super().__init__(target_class)
        self.feature = feature
        self.mode = mode
        self.modulation = "linear"
        self.result: AlphaCritResult | None = None
        self._job: Any = None

    def compose(self) -> ComposeResult:
        yield ScreenHeader()
        yield Static("", id="explore-info", markup=False)
        yield FilterBar()  # / filters the class list
        with Horizontal(id="explore-body"):
            yield DataTable(id="explore-classes", cursor_type="row", zebra_stripes=False)
            with Vertical(id="explore-right"):
                yield Static("", id="explore-summary", markup=False)
                from salve_tui.app.widgets.plot import CurvePlot

                yield CurvePlot(id="explore-plot")
        yield ScreenFooter(compact=True)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_column("class", key="class", width=10)
        table.add_column("dom.", key="dominant", width=5)
        table.focus()

    def class_cells(self, c: int) -> tuple[str, ...]:
        assert self.inputs is not None
        return self.inputs.class_names[c], str(int(self.inputs.dominant[c]))

    def inputs_ready(self) -> None:
        assert self.inputs is not None
        if self.feature is None:
            self.feature = max(0, int(self.inputs.dominant[self.target_class]))
        self._compute()

    def _compute(self) -> None:
        if self.inputs is None or self.feature is None:
            return
        inputs = self.inputs
        c, k, mode, modulation = self.target_class, self.feature, self.mode, self.modulation
        self.query_one("#explore-info", Static).update(
            f"computing α_crit of {class_name(inputs.class_names, c)}, feature {k}, {mode}…")

        def compute() -> AlphaCritResult:
            from core.workflow.alpha_crit import compute_alpha_crit

            return compute_alpha_crit(inputs, c, k, mode, modulation)[0]

        self.compute_in_thread(compute, self._show, group="explore-compute")

    def _show(self, result: AlphaCritResult) -> None:
        key = (self.target_class, self.feature, self.mode, self.modulation)
        if key != (result.target_class, result.feature, result.mode, result.modulation):
            return  # a newer request is on its way
        self.result = result
        names = self.inputs.class_names if self.inputs else []
        dominant = self.inputs is not None and int(self.inputs.dominant[result.target_class]) == result.feature
        self.query_one("#explore-info", Static).update(Text(
            f"{class_name(names, result.target_class)} · feature {result.feature}"
            f"{' (its dominant)' if dominant else ' (not its dominant feature)'} · {result.mode} · {result.modulation}"
            " · w records it"))
        self.query_one("#explore-summary", Static).update(summary_text(result, names))
        self._draw_plot()

    def _draw_plot(self) -> None:
        widget = self.query_one("#explore-plot")
        plt = widget.plt  # type: ignore[attr-defined]
        plt.clear_data()
        plt.clear_figure()
        result = self.result
        values = result.numerical.double().numpy() if result is not None else np.zeros(0)
        values = values[np.isfinite(values)]
        if len(values) == 0:
            plt.title("no qualifying sample")
        else:
            plt.hist(values.tolist(), bins=min(20, max(5, len(values) // 3)), color="cyan")
            plt.title(f"numerical α_crit per sample (n={len(values)})")
        widget.refresh()

    def class_changed(self, c: int) -> None:
        assert self.inputs is not None
        follow = self.feature == int(self.inputs.dominant[self.target_class])
        self.target_class = c
        if follow:
            self.feature = max(0, int(self.inputs.dominant[c]))
        self._compute()

    def action_step_feature(self, step: int) -> None:
        if self.inputs is not None and self.feature is not None:
            self.feature = (self.feature + step) % self.inputs.num_features
            self._compute()

    def action_dominant(self) -> None:
        if self.inputs is not None:
            self.feature = max(0, int(self.inputs.dominant[self.target_class]))
            self._compute()

    def action_type_feature(self) -> None:
        from salve_tui.app.screens.number_input import NumberInputModal

        if self.inputs is None:
            return
        h = self.inputs.num_features

        def apply(value: float | None) -> None:
            if value is None:
                return
            self.feature = int(value)
            self._compute()

        self.app.push_screen(NumberInputModal(f"Feature (0–{h - 1}):", float(self.feature or 0), 0, h - 1,
                                              whole=True), apply)

    def action_toggle_mode(self) -> None:
        self.mode = MODES[(MODES.index(self.mode) + 1) % len(MODES)]
        self._compute()

    def action_cycle_modulation(self) -> None:
        self.modulation = MODULATIONS[(MODULATIONS.index(self.modulation) + 1) % len(MODULATIONS)]
        self._compute()

    def action_record(self) -> None:
        if self.result is None:
            self.notify("nothing computed yet", severity="warning")
            return
        session = self.session
        c, k, mode, modulation = self.target_class, self.feature, self.mode, self.modulation

        def body(progress, cancel):  # noqa: ANN001 (core ProgressFn, CancelToken)
            from core.workflow.alpha_crit import run_alpha_crit

            return run_alpha_crit(session, c, k, mode, modulation, progress=progress, cancel=cancel)

        self._job = self.salve.start_job(f"α_crit class {c} feature {k} {mode}", body)

    def on_job_update(self, message: JobMessage) -> None:
        if message.job is not self._job:
            return
        info = self.query_one("#explore-info", Static)
        if isinstance(message, JobFinished):
            self.notify("α_crit recorded in the session")
        elif isinstance(message, JobFailed):
            info.update(error_text("record α_crit", str(message.error)))
