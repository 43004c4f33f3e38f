"""SALVE, ROME and SAE steering on the same target, on one plot (SPEC §5: side by side).

For the class chosen in the table the three methods are swept on the cached activations
(:func:`core.workflow.sweeps.compute_sweep`, pure, in a thread worker): SALVE over α on
the class's dominant feature, steering over β on the same feature, ROME over the class logit's
target value. Their strengths are not in the same units, so the x axis is each method's share of
its own automatic range (0 = no edit; each range is set by the same rule: 1.5× the 95th
percentile of the target samples' flip points). Solid lines: the target class; the table under
the plot gives each method's strength at 50% target accuracy and what the other classes keep.
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

from salve_tui.app.screens.analysis_shared import (
    ClassTargetScreen,
    class_name,
    fmt_percent,
    fmt_value,
)
from salve_tui.app.screens.base import session_view
from salve_tui.app.widgets.chrome import ScreenFooter, ScreenHeader
from salve_tui.app.widgets.filter import FilterBar

if TYPE_CHECKING:
    from core.control.curves import SweepResult

# Each registered method's colour, in registry order (SALVE red, ROME blue, steering green), as
# exact RGB: named ANSI colours follow the terminal's palette ("blue" was drawn purple).
PALETTE = ((220, 50, 47), (38, 139, 210), (133, 153, 0), (211, 54, 130), (181, 137, 0), (42, 161, 152))


def method_colours() -> dict[str, tuple[int, int, int]]:
    """Registered method name → its plot and table colour."""
    from core.control.methods.registry import method_names

    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(method_names())}


def rich_colour(rgb: tuple[int, int, int]) -> str:
    return f"rgb({rgb[0]},{rgb[1]},{rgb[2]})"


def normalised_strength(alphas: np.ndarray) -> np.ndarray:
    """Each point's share of the sweep's range, 0 at the first (unedited) point, 1 at the last."""
    alphas = np.asarray(alphas, dtype=float)
    span = alphas[-1] - alphas[0] if len(alphas) > 1 else 0.0
    return (alphas - alphas[0]) / span if span else np.zeros_like(alphas)


def method_row(curve: SweepResult) -> dict[str, Any]:
    """Strength at 50% target accuracy (interpolated), and the others' mean accuracy there."""
    from core.control.alpha_crit import alpha50

    target = curve.per_class_accuracy[curve.target_class].double()
    others = curve.others_mean_accuracy.double().numpy()
    at = alpha50(curve.alphas.double(), target)
    share = None
    kept = None
    if at is not None:
        x = curve.alphas.double().numpy()
        order = np.argsort(x)
        kept = float(np.interp(at, x[order], others[order]))
        share = float(normalised_strength(np.array([x[0], at, x[-1]]))[1])
    return {"alpha50": at, "share": share, "others_at_50": kept,
            "range": (float(curve.alphas[0]), float(curve.alphas[-1])), "param": curve.param_name}


@session_view(footer="Methods", key="o", title="Methods compared", requires=("rankings",), order=35,
              name="methods_compared", in_footer=False,
              description="SALVE, ROME and steering curves for the same target on one plot")
class MethodsScreen(ClassTargetScreen):
    SCREEN_TITLE = "Methods compared"
    HELP_TEXT = (
        "The three editing methods on the same target class: SALVE (weight edit on the class's "
        "dominant feature, α), SAE steering (β along the same feature) and ROME (rank-one edit "
        "setting the class logit to a target value). ↑/↓ choose the class. Strengths have "
        "different units, so the x axis is each method's share of its own automatic range (same "
        "rule for all). Lines: the target class's accuracy (SALVE red, ROME blue, steering green). "
        "The table lists where each falls to 50% and how much accuracy the other classes keep "
        "there (higher = more selective)."
    )
    CSS_PATH = Path(__file__).with_suffix(".tcss")  # this module's screens
    BINDINGS: ClassVar[list[Binding]] = []
    INFO, TABLE, FAILED = "methods-info", "methods-classes", "compare the methods"

    def __init__(self, target_class: int = 0) -> None:
        super().__init__(target_class)
        self.curves: dict[str, SweepResult] = {}

    def compose(self) -> ComposeResult:
        yield ScreenHeader()
        yield Static("", id="methods-info", markup=False)
        yield FilterBar()  # / filters the class list
        with Horizontal(id="methods-body"):
            yield DataTable(id="methods-classes", cursor_type="row", zebra_stripes=False)
            with Vertical(id="methods-right"):
                from salve_tui.app.widgets.plot import CurvePlot

                yield CurvePlot(id="methods-plot")
                yield Static("", id="methods-table", markup=False)
        yield ScreenFooter(compact=True)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_column("class", key="class", width=12)
        table.focus()

    def inputs_ready(self) -> None:
        self._compute()

    def class_changed(self, c: int) -> None:
        self.target_class = c
        self._compute()

    def _compute(self) -> None:
        if self.inputs is None:
            return
        inputs, c = self.inputs, self.target_class
        k = max(0, int(inputs.dominant[c]))
        self.query_one("#methods-info", Static).update(
            f"sweeping SALVE, ROME and steering for {class_name(inputs.class_names, c)}…")

        def compute() -> tuple[int, dict[str, SweepResult]]:
            from core.control.methods.base import EditRequest
            from core.control.methods.registry import methods
            from core.workflow.sweeps import compute_sweep

            return c, {m.name: compute_sweep(inputs, m, EditRequest(c, [k])) for m in methods()}

        self.compute_in_thread(compute, self._show, group="methods-sweeps")

    def _show(self, computed: tuple[int, dict[str, SweepResult]]) -> None:
        c, curves = computed
        if c != self.target_class or self.inputs is None:
            return
        self.curves = curves
        from core.control.methods.registry import get_method

        names = self.inputs.class_names
        ms = {name: get_method(name) for name in curves}
        subjects: dict[str, list[str]] = {}  # what each sweeps (f12, class-mean key) → its methods
        for name, curve in curves.items():
            subjects.setdefault(ms[name].sweep_subject(curve), []).append(ms[name].label)
        said = " · ".join(f"{', '.join(labels)}: {subject}" for subject, labels in subjects.items())
        self.query_one("#methods-info", Static).update(Text(
            f"{class_name(names, c)} · {said} · x: share of range"))
        widget = self.query_one("#methods-plot")
        plt = widget.plt  # type: ignore[attr-defined]
        plt.clear_data()
        plt.clear_figure()
        colours = method_colours()
        for method, curve in curves.items():
            x = normalised_strength(curve.alphas.double().numpy())
            y = np.nan_to_num(curve.per_class_accuracy[c].double().numpy())
            plt.plot(x.tolist(), y.tolist(), color=colours.get(method, (255, 255, 255)), marker="braille",
                     label=ms[method].label)
        plt.ylim(0, 1)
        plt.xlim(0, 1)
        plt.title(f"{class_name(names, c)} accuracy vs strength (share of range)")
        widget.refresh()
        table = Text()
        table.append(f"{'method':<9}{'range':>18}{'50% at':>10}{'share':>7}{'others':>8}\n", style="dim")
        for method, curve in curves.items():
            row = method_row(curve)
            low, high = row["range"]
            table.append(f"{ms[method].label[:8]:<9}", style=rich_colour(colours.get(method, (255, 255, 255))))
            span = f"{fmt_value(low)}→{fmt_value(high)}"
            table.append(f"{ms[method].symbol[:6]:>6} {span:>11}"
                         f"{fmt_value(row['alpha50']):>10}{fmt_value(row['share'], 2):>7}"
                         f"{fmt_percent(row['others_at_50']):>8}\n")
        self.query_one("#methods-table", Static).update(table)
