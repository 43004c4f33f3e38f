"""SAE-seed robustness (paper A.11.1): are the suppression curves a property of the model or of
one SAE's random seed?

``r`` trains K extra SAEs in one batched job (:func:`core.workflow.robustness.run_seed_robustness`),
re-identifies each seed's dominant feature per class and stores the suppression curves as mean
± std over seeds; this screen draws them for the class chosen in the table (target class red,
the mean of the other classes cyan, ± one std as thinner lines).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import DataTable, Static

from core.config import MODULATIONS
from salve_tui.app.format import format_duration
from salve_tui.app.jobs import JobFailed, JobMessage, JobProgress
from salve_tui.app.screens.analysis_shared import (
    PAGE_BINDINGS,
    Pager,
    class_name,
    error_text,
    fill_page,
)
from salve_tui.app.screens.base import SessionScreen, session_view
from salve_tui.app.widgets.chrome import ScreenFooter, ScreenHeader
from salve_tui.app.widgets.filter import FILTER_BINDING, FilterBar, matches

MIN_SEEDS, MAX_SEEDS = 2, 10


def curve_bands(curves: dict[str, Any], target: int) -> dict[str, np.ndarray]:
    """Target and other-class mean accuracy ± std (over seeds) of one stored class's curves.

    The others' band is the mean over other classes (with samples) of their per-class mean and
    std, the way the CLI's JSON reports the target and the rest."""
    mean = np.asarray(curves["accuracy_mean"], dtype=float)
    std = np.asarray(curves["accuracy_std"], dtype=float)
    others = [j for j in range(mean.shape[0]) if j != target and np.isfinite(mean[j]).all()]
    return {
        "alphas": np.asarray(curves["alphas"], dtype=float),
        "target_mean": mean[target],
        "target_std": std[target],
        "others_mean": mean[others].mean(axis=0) if others else np.full(mean.shape[1], np.nan),
        "others_std": std[others].mean(axis=0) if others else np.full(mean.shape[1], np.nan),
    }


@session_view(footer="Seeds", key="n", title="SAE-seed robustness", requires=("rankings",), order=70,
              name="seed_robustness", in_footer=False,
              description="Suppression curves as mean ± std over several SAE seeds (a job)")
class RobustnessScreen(SessionScreen):
    SCREEN_TITLE = "SAE-seed robustness"
    HELP_TEXT = (
        "Train several SAEs that differ only in their seed and ask whether the suppression curves "
        "agree. r runs the job (K SAEs trained together on the train activations with the "
        "session's settings; c cancels); + / - change K, e the epochs per SAE (the session's, or "
        "fewer for a quick look), o the modulation. Each seed's dominant feature for a class is "
        "found again from its own class means (listed per class). ↑/↓ choose the class; the plot "
        "shows its accuracy (red) and the mean of the others (cyan) against α as mean ± one std "
        "over seeds. Many classes are listed a page at a time: [ and ] turn the page."
    )
    CSS_PATH = Path(__file__).with_suffix(".tcss")  # this module's screens
    BINDINGS: ClassVar[list[Binding]] = [
        Binding("r", "compute", "Run seeds", tooltip="train K SAE seeds and compare their curves"),
        Binding("plus", "seeds(1)", "K+", key_display="+"),
        Binding("minus", "seeds(-1)", "K-", key_display="-"),
        Binding("e", "cycle_epochs", "Epochs"),
        Binding("o", "cycle_modulation", "Modulation", show=False),
        *PAGE_BINDINGS,
        FILTER_BINDING,
    ]
    PALETTE_EVERYWHERE = ("compute",)  # offered in the palette from every screen
    RESULT_KINDS = ("robustness",)  # a warning line when a stage was rerun since
    LOADING = "the stored seed-robustness curves"
    INFO, FAILED, LOAD_ERROR_IN_INFO = "robust-info", "read the robustness curves", True

    def __init__(self) -> None:
        super().__init__()
        self.k = 3
        self.modulation = "linear"
        self.epoch_choices: list[int] = []
        self.epochs: int | None = None  # None: the session's SAE epochs
        self.curves: dict[int, dict[str, Any]] = {}
        self.class_names: list[str] = []
        self.target = 0
        self.pager = Pager()  # the table holds one page of the classes with curves
        self._job: Any = None
        self.job_error = ""
        self.filter_text = ""  # /: only the classes whose row has every typed word

    def compose(self) -> ComposeResult:
        yield ScreenHeader()
        yield Static("", id="robust-info", markup=False)
        yield FilterBar()
        with Horizontal(id="robust-body"):
            yield DataTable(id="robust-table", cursor_type="row", zebra_stripes=False)
            from salve_tui.app.widgets.plot import CurvePlot

            yield CurvePlot(id="robust-plot")
        yield ScreenFooter(compact=True)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_column("class", key="class", width=10)
        table.add_column("feature per seed", key="features", width=16)
        table.focus()

    def load(self) -> tuple[list[str], int, dict[int, dict[str, Any]]]:
        from core.workflow.robustness import load_robustness

        session = self.session
        names = [str(c) for c in session.read_json("class_names")]
        try:
            curves = load_robustness(session, "suppress", self.modulation)
        except KeyError:
            curves = {}
        return names, int(session.config.sae.epochs), curves

    def show(self, loaded: tuple[list[str], int, dict[int, dict[str, Any]]]) -> None:
        self.class_names, session_epochs, self.curves = loaded
        self.epoch_choices = sorted({session_epochs, min(session_epochs, 100), min(session_epochs, 25)},
                                    reverse=True)
        if self.curves and self.target not in self.curves:
            self.target = min(self.curves)
        self._show_classes()

    def _listed_classes(self) -> list[int]:
        """The classes with curves whose name or features match the filter, in class order."""
        return [c for c in sorted(self.curves)
                if matches(self.filter_text, class_name(self.class_names, c),
                           *(int(k) for k in np.asarray(self.curves[c]["features_per_seed"])))]

    def _show_classes(self) -> None:
        classes = self._listed_classes()
        if classes and self.target not in classes:
            self.target = classes[0]
        self.pager.set_total(len(classes))
        if classes:
            self.pager.show_index(classes.index(self.target))
        self._fill()
        self._draw_plot()

    def apply_filter(self, text: str) -> None:
        self.filter_text = text.strip()
        self._show_classes()

    def _fill(self) -> None:
        table = self.query_one(DataTable)
        classes = self._listed_classes()

        def add(index: int) -> None:
            c = classes[index]
            features = self.curves[c]["features_per_seed"]
            table.add_row(class_name(self.class_names, c),
                          " ".join(str(int(k)) for k in np.asarray(features)), key=str(c))

        fill_page(table, self.pager, add, classes.index(self.target) if self.target in classes else None)
        self._draw_info()

    def action_page(self, step: int) -> None:
        """[ ] turn the page of classes; its first class is shown."""
        if self.pager.turn(step):
            self.target = self._listed_classes()[self.pager.start]
            self._fill()
            self._draw_plot()

    def _draw_info(self) -> None:
        """What is shown (seeds, modulation, the page of classes) over what r would run."""
        info = self.query_one("#robust-info", Static)
        epochs = self.epochs or (self.epoch_choices[0] if self.epoch_choices else 0)
        plan = f"r runs K={self.k} seeds × {epochs} epochs ({self.modulation}) · + - K, e epochs"
        if self.job_error:
            info.update(error_text("run the seeds", self.job_error))
        elif not self.curves:
            info.update(f"no seed-robustness curves for {self.modulation} yet\n{plan}")
        else:
            n = int(next(iter(self.curves.values()))["n_seeds"])
            text = Text(f"{n} SAE seeds, suppress, {self.modulation}: mean ± std over seeds")
            pages = self.pager.label("classes")
            if pages:
                text.append(f" · {pages}", style="dim")
            if self.filter_text:
                text.append(f" · {len(self._listed_classes())} match '{self.filter_text}'", style="yellow")
            text.append(f"\n{plan}", style="dim")
            info.update(text)

    def _draw_plot(self) -> None:
        widget = self.query_one("#robust-plot")
        plt = widget.plt  # type: ignore[attr-defined]
        plt.clear_data()
        plt.clear_figure()
        if self.target not in self.curves:
            job = self._job
            running = job is not None and not job.finished
            plt.title("curves appear when the seeds are trained (see the bar in the header)"
                      if running else "no curves yet: press r")
            widget.refresh()
            return
        bands = curve_bands(self.curves[self.target], self.target)
        x = bands["alphas"].tolist()
        for key, colour, label in (("target", "red", class_name(self.class_names, self.target)),
                                   ("others", "cyan", "others")):
            mean, std = np.nan_to_num(bands[f"{key}_mean"]), np.nan_to_num(bands[f"{key}_std"])
            plt.plot(x, mean.tolist(), color=colour, marker="braille", label=f"{label} mean")
            plt.plot(x, np.clip(mean + std, 0, 1).tolist(), color=colour, marker="dot")
            plt.plot(x, np.clip(mean - std, 0, 1).tolist(), color=colour, marker="dot")
        plt.ylim(0, 1)
        plt.title("accuracy vs α, mean ± std over seeds")
        widget.refresh()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if getattr(event.row_key, "value", None) is not None and int(event.row_key.value) != self.target:
            self.target = int(event.row_key.value)
            self._draw_plot()

    def action_seeds(self, step: int) -> None:
        self.k = min(MAX_SEEDS, max(MIN_SEEDS, self.k + step))
        self._draw_info()

    def action_cycle_epochs(self) -> None:
        if not self.epoch_choices:
            return
        current = self.epochs or self.epoch_choices[0]
        index = self.epoch_choices.index(current) if current in self.epoch_choices else 0
        self.epochs = self.epoch_choices[(index + 1) % len(self.epoch_choices)]
        self._draw_info()

    def action_cycle_modulation(self) -> None:
        self.modulation = MODULATIONS[(MODULATIONS.index(self.modulation) + 1) % len(MODULATIONS)]
        self.reload()

    def action_compute(self) -> None:
        session, k, epochs, modulation = self.session, self.k, self.epochs, self.modulation

        def body(progress, cancel):  # noqa: ANN001 (core ProgressFn, CancelToken)
            from core.workflow.robustness import run_seed_robustness

            return run_seed_robustness(session, k=k, modulation=modulation, epochs=epochs,
                                       progress=progress, cancel=cancel)

        self._job = self.salve.start_job(f"SAE-seed robustness K={k}", body)
        if self._job is not None:
            self.job_error = ""
            self.query_one("#robust-info", Static).update(f"training {k} SAEs…")
            self._draw_plot()  # its title says the curves are on their way

    def on_job_update(self, message: JobMessage) -> None:
        if message.job is not self._job:
            return
        if isinstance(message, JobProgress):
            p = message.progress
            eta = p.eta_seconds
            self.query_one("#robust-info", Static).update(
                f"training {self._job.name.split()[-1]} SAEs · {p.stage}: {p.fraction:.0%}"
                f"{f' · ETA {format_duration(eta)}' if eta is not None else ''} (c cancels)"
                + (f"\n{p.message}" if p.message else ""))
        elif isinstance(message, JobFailed):
            self.job_error = str(message.error)
