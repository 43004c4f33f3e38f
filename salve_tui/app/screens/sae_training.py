"""SAE training view: loss, L0, explained variance and dead latents per epoch.

While the ``sae`` stage runs the curves come from the job's progress metrics (every report is
kept by the job runner, so throttled messages lose no points); otherwise from the committed
``sae/history`` arrays, or from the last checkpoint's history when training stopped half-way.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid
from textual.widgets import Static

from salve_tui.app.jobs import JOB_END_MESSAGES, JobCancelled, JobFinished, JobMessage, JobProgress
from salve_tui.app.screens.base import SessionScreen, session_view
from salve_tui.app.widgets.chrome import ScreenFooter, ScreenHeader
from salve_tui.app.widgets.progress import JobProgressPanel

# Plot panels: (widget id, title, [(series label, history key aliases)]).
PANELS: tuple[tuple[str, str, tuple[tuple[str, tuple[str, ...]], ...]], ...] = (
    ("plot-loss", "loss", (("total", ("loss", "total")), ("recon", ("recon", "mse")),
                           ("sparsity", ("sparsity", "l1")))),
    ("plot-l0", "L0 (active latents)", (("L0", ("l0",)),)),
    ("plot-ev", "explained variance", (("EV", ("ev", "explained_variance")),)),
    ("plot-dead", "dead latents", (("dead", ("dead", "dead_latents")),)),
)
SERIES_COLOURS = ("cyan", "green", "orange")
COUNT_PANELS = ("plot-l0", "plot-dead")  # counts: the axis starts at 0 (all-zero dead ran −1…1)
CHECKPOINT_HISTORY_PREFIX = "history/"


def first_seed(values: np.ndarray) -> np.ndarray:
    """History arrays are (seeds × epochs) or (epochs,): plot the first seed."""
    values = np.asarray(values, dtype=float)
    return values[0] if values.ndim == 2 else values.reshape(-1)


def pick_series(history: dict[str, np.ndarray], aliases: tuple[str, ...]) -> np.ndarray | None:
    for key in aliases:
        if key in history and np.asarray(history[key]).size:
            return first_seed(history[key])
    return None


def summary_text(history: dict[str, np.ndarray], heading: str) -> str:
    """The last value of every curve on two lines that fit 80 columns: the loss and its parts
    after ``heading``, then L0, explained variance and dead latents."""
    lines = []
    for panels in (PANELS[:1], PANELS[1:]):
        latest = []
        for _, _, series in panels:
            for label, aliases in series:
                values = pick_series(history, aliases)
                if values is not None and len(values):
                    latest.append(f"{label} {float(values[-1]):.3g}")
        lines.append("  ".join(latest))
    return f"{heading}: {lines[0]}\n{lines[1]}".rstrip()


def metrics_to_history(reports: list[tuple[float, dict]]) -> dict[str, np.ndarray]:
    """Live progress reports ``(epoch, metrics)`` → per-key arrays (NaN where a key is missing)."""
    keys = sorted({k for _, metrics in reports for k in metrics})
    return {k: np.array([float(m.get(k, np.nan)) for _, m in reports]) for k in keys} | {
        "epoch": np.array([done for done, _ in reports], dtype=float)
    }


@session_view(footer="SAE", key="t", title="SAE training", order=10, name="sae_training",
              description="Loss curves, L0, explained variance and dead latents of the SAE")
class SAETrainingScreen(SessionScreen):
    CSS_PATH = Path(__file__).with_suffix(".tcss")  # this module's screens
    SCREEN_TITLE = "SAE training"
    HELP_TEXT = (
        "Training curves of the sparse autoencoder, one point per epoch: total loss with its "
        "reconstruction and sparsity parts, L0 (mean number of active latents per sample), "
        "explained variance of the activations and the number of dead latents. Curves update "
        "live while the SAE stage runs. When training stopped early on a loss plateau, the line "
        "under the curves says where and by which rule.\n\n"
        "w runs the SAE width search: a grid of widths h and L1 weights λ trained together, each "
        "scored on the test split (distinct dominant features, dominance ratio, selective "
        "windows, controls, EV); the chosen one becomes the session's SAE setting (rerun the SAE "
        "stage to train it). Cancel it like any job: the widths already done are kept, and w "
        "again resumes."
    )
    BINDINGS: ClassVar[list[Binding]] = [Binding("l", "toggle_log_scale", "Log-scale loss"),
                                         Binding("w", "width_search", "Width search",
                                                 tooltip="search the SAE width and λ (a resumable job)")]
    PALETTE_EVERYWHERE = ("width_search",)  # offered in the palette from every screen
    LOADING = "the SAE training history"
    CONTENT_ACTIONS = frozenset({"toggle_log_scale"})  # the plots exist once the history is shown

    def __init__(self) -> None:
        super().__init__()
        self.history: dict[str, np.ndarray] = {}
        self.source = ""
        self.log_scale = False
        self.search_record: dict | None = None
        self.schedule: dict = {}
        self._search_job = None

    def compose(self) -> ComposeResult:
        yield ScreenHeader()
        yield Static(id="sae-summary", markup=False)
        yield JobProgressPanel(id="progress")
        yield Grid(id="sae-plots")  # plots are mounted by show(): plotext is imported in load()
        yield Static(id="sae-search", markup=False)
        yield ScreenFooter(compact=True)

    def load(self) -> tuple[dict[str, np.ndarray], str, dict]:
        import textual_plotext  # noqa: F401  (imported here, off the UI thread)

        summary = self.session.summary()
        return (*self._load_history(), {"search": summary.get("sae_search"),
                                        "schedule": (summary.get("sae") or {}).get("schedule") or {}})

    def _load_history(self) -> tuple[dict[str, np.ndarray], str]:
        job = self.salve.jobs.current
        if job is not None and not job.finished and job.metrics.get("sae"):
            return metrics_to_history(job.metrics["sae"]), "live"
        session = self.session
        if session.has("sae/history"):
            return session.read_arrays("sae/history"), "trained"
        if session.has("sae/checkpoint/arrays"):
            arrays = session.read_arrays("sae/checkpoint/arrays")
            return {k[len(CHECKPOINT_HISTORY_PREFIX):]: v for k, v in arrays.items()
                    if k.startswith(CHECKPOINT_HISTORY_PREFIX)}, "checkpoint"
        return {}, ""

    def show(self, data: tuple[dict[str, np.ndarray], str, dict]) -> None:
        if not self.query("PlotextPlot"):
            from salve_tui.app.widgets.plot import CurvePlot

            self.query_one("#sae-plots", Grid).mount_all(CurvePlot(id=plot_id) for plot_id, _, _ in PANELS)
        self.search_record, self.schedule = data[2]["search"], data[2]["schedule"]
        self._show_search()
        self._show(data[0], data[1])

    def _show_search(self, status: str = "") -> None:
        """The early-stop line and the width search's table (hidden when there is neither)."""
        from salve_tui.cli.sae import schedule_lines, search_table_lines

        lines = schedule_lines({"schedule": self.schedule}) + search_table_lines(self.search_record)
        lines += [status] if status else []
        panel = self.query_one("#sae-search", Static)
        panel.update("\n".join(lines))
        panel.display = bool(lines)

    def action_width_search(self) -> None:
        """Run the width/λ search as a background job (cancellable, resumable)."""
        session = self.session

        def body(progress, cancel):  # noqa: ANN001 (core ProgressFn, CancelToken)
            from core.workflow.sae_search_session import run_search

            return run_search(session, progress, cancel)

        job = self.salve.start_job("SAE width search", body)
        if job is not None:
            self._search_job = job
            self._show_search("width search started: it trains every width of the grid, then scores each SAE")

    def on_job_update(self, message: JobMessage) -> None:
        if message.job is self._search_job and isinstance(message, JOB_END_MESSAGES):
            self._search_job = None
            if isinstance(message, JobFinished):
                self.search_record = message.result
                self._show_search("search done: the chosen width is now the session's SAE setting; "
                                  "rerun the SAE stage to train it")
            else:
                why = ("cancelled" if isinstance(message, JobCancelled)
                       else f"failed: {getattr(message, 'error', '')}")
                self._show_search(f"width search {why}; the widths already done are kept (w resumes)")
        if isinstance(message, JobProgress):
            self.query_one(JobProgressPanel).show_progress(message.job, message.progress)
            if self.loaded and message.progress.stage == "sae" and message.job.metrics.get("sae"):
                self._show(metrics_to_history(message.job.metrics["sae"]), "live")

    def action_toggle_log_scale(self) -> None:
        self.log_scale = not self.log_scale
        self._draw()

    def _show(self, history: dict[str, np.ndarray], source: str) -> None:
        self.history, self.source = history, source
        self._draw()

    def _draw(self) -> None:
        if not self.query("PlotextPlot"):  # not shown yet: show() draws with the current scale
            return
        history = self.history
        summary = self.query_one("#sae-summary", Static)
        if not history:
            job = self.salve.jobs.current
            if job is not None and not job.finished:
                summary.update("no SAE curves yet: they appear when the running job reaches the SAE stage")
            else:
                summary.update("no SAE training yet — run the SAE stage from the dashboard (escape, then a)")
        else:
            epochs = max((len(first_seed(v)) for v in history.values()), default=0)
            source = {"live": "live", "trained": "final", "checkpoint": "last checkpoint"}[self.source]
            summary.update(summary_text(history, f"{source}, {epochs} epochs"))
        for plot_id, title, series in PANELS:
            widget = self.query_one(f"#{plot_id}")
            plt = widget.plt  # type: ignore[attr-defined]
            plt.clear_data()
            plt.clear_figure()
            plt.title(title)
            drawn, top = False, 0.0
            for (label, aliases), colour in zip(series, SERIES_COLOURS, strict=False):
                values = pick_series(history, aliases)
                if values is None or not len(values):
                    continue
                finite = np.isfinite(values)
                if not finite.any():
                    continue
                x = (np.asarray(history["epoch"], dtype=float)[finite] if "epoch" in history
                     else np.arange(1, len(values) + 1)[finite])
                plt.plot(x.tolist(), values[finite].tolist(), label=label if len(series) > 1 else None,
                         color=colour, marker="braille")
                drawn, top = True, max(top, float(values[finite].max()))
            if drawn and plot_id in COUNT_PANELS:
                plt.ylim(0, max(1.0, top * 1.05))
            if drawn and self.log_scale and title == "loss":
                plt.yscale("log")
            if not drawn:
                plt.title(f"{title}: no data")
            widget.refresh()
