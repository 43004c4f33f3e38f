"""α_crit view: per-class summary and per-sample critical suppression thresholds (SPEC §4).

Reads the α_crit results stored in the session (``core.workflow.alpha_crit.load_alpha_crit``); ``r``
computes them for every class's dominant feature as an app job (``run_alpha_crit``), so they are
in the session for the CLI and exports too; ``a`` runs every class's dominant sweep and α_crit
as one resumable job (``core.workflow.all_dominant``). The per-sample table sorts by any column (``s``
cycles the column, ``i`` inverts) and can be limited to the class highlighted in the summary
(``f``). Enter on a sample opens its Grad-FAM for the class's dominant feature.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import DataTable, Static

from core.config import MODULATIONS
from salve_tui.app.jobs import JOB_END_MESSAGES, JobMessage, JobProgress
from salve_tui.app.screens.analysis_shared import (
    PAGE_BINDINGS,
    Pager,
    class_name,
    fmt_value,
    gradfam_with_overlay,
)
from salve_tui.app.screens.base import SessionScreen, session_view
from salve_tui.app.widgets.chrome import ScreenFooter, ScreenHeader
from salve_tui.app.widgets.filter import FILTER_BINDING, FilterBar, matches
from salve_tui.app.widgets.image import ImageView

if TYPE_CHECKING:
    import numpy as np

    from core.control.alpha_crit import AlphaCritResult
    from core.workflow.saliency_maps import SaliencyResult



@dataclass(frozen=True)
class SampleColumn:
    key: str
    title: str
    width: int
    numeric: bool = True


SAMPLE_COLUMNS = (
    SampleColumn("index", "sample", 6),
    SampleColumn("label", "class", 9, numeric=False),
    SampleColumn("prediction", "pred", 9, numeric=False),
    SampleColumn("z", "z", 7),
    SampleColumn("S", "S", 7),
    SampleColumn("alpha_crit_analytic", "α analyt", 8),
    SampleColumn("alpha_crit_numerical", "α numer", 8),
    SampleColumn("validity_share_below_zero", "<0", 5),
)
DEFAULT_SORT = "alpha_crit_analytic"


def sort_rows(rows: list[dict[str, Any]], key: str, descending: bool = False) -> list[dict[str, Any]]:
    """Rows ordered by ``key``; missing values (None/NaN: excluded samples) always come last."""

    def missing(row: dict[str, Any]) -> bool:
        value = row.get(key)
        return value is None or (isinstance(value, float) and math.isnan(value))

    present = [r for r in rows if not missing(r)]
    absent = [r for r in rows if missing(r)]
    present.sort(key=lambda r: r[key], reverse=descending)
    return present + absent


@session_view(footer="α_crit", key="k", title="α_crit", requires=("rankings",), order=40, name="alpha_crit",
              description="Critical suppression thresholds per class and per sample")
class AlphaCritScreen(SessionScreen):
    SCREEN_TITLE = "α_crit"
    HELP_TEXT = (
        "Critical suppression threshold: for each test sample of a class, the strength α at which "
        "suppressing the class's dominant feature drives its bias-free class logit z to zero. "
        "'analyt' is z/S (exact for linear modulation), 'numer' the root found on the exact logit; "
        "samples with z ≤ 0 or S ≤ 0 do not qualify (—). α50 is where the class's accuracy falls to "
        "50% on the suppression curve; '<0' the share of coordinates whose factor 1 − α|D| is "
        "negative (how far the linear picture breaks). r computes (or recomputes) the table for "
        "every class; a runs the dominant feature's suppression sweep and α_crit of every class as one "
        "resumable background job (what `salve sweep --all-dominant` does); o switches "
        "linear/clamped modulation. In the sample table: s sorts by the "
        "next column, i inverts the order, f shows only the class highlighted above, Enter opens "
        "the sample's Grad-FAM. Tab moves between the tables. Long tables show 200 rows at a "
        "time: [ and ] turn the page of the focused table (the status line says which rows)."
    )
    CSS_PATH = Path(__file__).with_suffix(".tcss")  # this module's screens
    BINDINGS: ClassVar[list[Binding]] = [
        Binding("r", "compute", "Compute", tooltip="compute α_crit of every class (its dominant feature)"),
        Binding("a", "compute_all_dominant", "Sweeps + α_crit of all dominant features", show=False),
        Binding("s", "sort_next", "Sort"),
        Binding("i", "invert_sort", "Invert", show=False),
        Binding("f", "toggle_filter", "This class"),
        Binding("o", "cycle_modulation", "Modulation", show=False),
        Binding("enter", "open_sample", "Grad-FAM"),
        FILTER_BINDING,
        *PAGE_BINDINGS,
    ]
    LOADING = "the α_crit results stored in the session"
    RESULT_KINDS = ("alpha-crit",)  # a warning line when a stage was rerun since
    PALETTE_EVERYWHERE = ("compute", "compute_all_dominant")  # offered in the palette from every screen
    CONTENT_ACTIONS = frozenset({"sort_next", "invert_sort", "toggle_filter", "open_sample", "page"})

    def __init__(self) -> None:
        super().__init__()
        self.modulation = "linear"
        self.results: list[AlphaCritResult] = []
        self.class_names: list[str] = []
        self.sort_key = DEFAULT_SORT
        self.descending = False
        self.filter_class: int | None = None
        self.filter_text = ""  # /: sample index or class names (true or predicted)
        self.rows: list[dict[str, Any]] = []  # sample rows in their order (the table shows a page)
        self.summary_pager = Pager()
        self.sample_pager = Pager()
        self._job: Any = None

    def compose(self) -> ComposeResult:
        yield ScreenHeader()
        yield Static(id="crit-info", markup=False)
        yield DataTable(id="crit-summary", cursor_type="row", zebra_stripes=False)
        yield FilterBar()
        yield DataTable(id="crit-samples", cursor_type="row", zebra_stripes=True)
        yield Static(id="crit-status", markup=False)
        yield ScreenFooter(compact=True)

    def on_mount(self) -> None:
        summary = self.query_one("#crit-summary", DataTable)
        for key, title, width in (("class", "class", 9), ("feature", "feat", 4), ("n", "n", 4),
                                  ("qual", "qual", 4), ("analytic", "α med an", 8),
                                  ("numerical", "α med nu", 8), ("iqr", "α IQR", 11),
                                  ("alpha50", "α50", 7)):
            summary.add_column(title, key=key, width=width)
        samples = self.query_one("#crit-samples", DataTable)
        for column in SAMPLE_COLUMNS:
            samples.add_column(column.title, key=column.key, width=column.width)
        summary.focus()

    # ----- session → view

    def load(self) -> tuple[str, list[str], list[AlphaCritResult]]:
        from core.workflow.alpha_crit import load_alpha_crit

        session, modulation = self.session, self.modulation
        names = [str(c) for c in session.read_json("class_names")]
        return modulation, names, load_alpha_crit(session, "suppress", modulation)

    def show(self, data: tuple[str, list[str], list[AlphaCritResult]]) -> None:
        modulation, self.class_names, self.results = data
        if modulation != self.modulation:
            return  # o was pressed meanwhile: the reload it started brings the right results
        self._fill_summary()
        self._fill_samples()

    def _fill_summary(self) -> None:
        table = self.query_one("#crit-summary", DataTable)
        keep = table.cursor_row
        table.clear()
        pager = self.summary_pager
        pager.set_total(len(self.results))
        for r in self.results[pager.start:pager.stop]:
            s = r.summary()
            analytic, numerical = s["analytic"], s["numerical"]
            iqr = (f"{fmt_value(analytic.get('q1'))}–{fmt_value(analytic.get('q3'))}"
                   if analytic.get("q1") is not None else "—")
            table.add_row(
                class_name(self.class_names, r.target_class), str(r.feature), str(s["n_samples"]),
                str(s["n_qualifying_analytic"]), fmt_value(analytic.get("median")),
                "—" if s.get("withheld_reason") else fmt_value(numerical.get("median")), iqr,
                fmt_value(s["alpha50"]),
                key=str(r.target_class),
            )
        if self.results:
            table.move_cursor(row=min(keep, pager.stop - pager.start - 1))
        info = Text()
        if self.results:
            info.append(f"suppress · {self.modulation} modulation · dominant features · "
                        f"{len(self.results)} classes", style="bold")
            if pager.pages > 1:
                info.append(f" · {pager.label('classes')}", style="dim")
            withheld = [class_name(self.class_names, r.target_class) for r in self.results
                        if r.summary()["withheld_reason"]]
            if withheld:  # clamped: most roots only at α ≥ α_off (≥ 95% of the feature switched off)
                info.append(f"\nnumerical median withheld (—) for {', '.join(withheld[:8])}"
                            f"{' …' if len(withheld) > 8 else ''}: fewer than half of the samples have a "
                            "root before α_off (95% of |D[:,k]| switched off)", style="yellow")
        else:
            info.append(f"no α_crit results ({self.modulation}) yet — press r to compute them "
                        "for every class", style="yellow")
        self.query_one("#crit-info", Static).update(info)

    def all_sample_rows(self) -> list[dict[str, Any]]:
        rows = []
        for r in self.results:
            for row in r.sample_rows():
                row["class_index"] = r.target_class
                rows.append(row)
        return rows

    def _fill_samples(self, first_page: bool = True) -> None:
        """Sort (and filter) every sample row; the table gets one page of them."""
        if first_page:
            rows = self.all_sample_rows()
            if self.filter_class is not None:
                rows = [r for r in rows if r["class_index"] == self.filter_class]
            if self.filter_text:
                names = self.class_names
                rows = [r for r in rows if matches(self.filter_text, f"#{r['index']}", r["index"],
                                                   class_name(names, int(r["label"])),
                                                   class_name(names, int(r["prediction"])))]
            self.rows = sort_rows(rows, self.sort_key, self.descending)
            self.sample_pager.set_total(len(self.rows))
            self.sample_pager.page = 0
        table = self.query_one("#crit-samples", DataTable)
        table.clear()
        for row in self.rows[self.sample_pager.start:self.sample_pager.stop]:
            cells = []
            for column in SAMPLE_COLUMNS:
                value = row.get(column.key)
                if column.key in ("label", "prediction"):
                    text = Text(class_name(self.class_names, int(value)))
                    if column.key == "prediction" and value != row["label"]:
                        text.stylize("red")
                    cells.append(text)
                elif column.key == "index":
                    cells.append(str(value))
                elif column.key == "validity_share_below_zero":
                    cells.append("—" if value is None else f"{100 * value:.0f}%")
                else:
                    cells.append(fmt_value(value))
            table.add_row(*cells, key=f"{row['class_index']}:{row['index']}")
        self._draw_status()

    def _draw_status(self) -> None:
        title = next(c.title for c in SAMPLE_COLUMNS if c.key == self.sort_key)
        scope = ("all classes" if self.filter_class is None
                 else f"class {class_name(self.class_names, self.filter_class)}")
        pages = self.sample_pager.label("rows")
        if self.filter_text:
            scope += f" matching '{self.filter_text}'"
        self.query_one("#crit-status", Static).update(
            f"{len(self.rows)} samples{' · ' + pages if pages else ''} · {scope} · by {title} "
            f"{'↓' if self.descending else '↑'} · ⏎ Grad-FAM")  # wraps to 2 lines when longer

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "crit-summary" and self.filter_class is not None \
                and getattr(event.row_key, "value", None) is not None:
            self.filter_class = int(event.row_key.value)
            self._fill_samples()

    # ----- actions

    def action_compute(self) -> None:
        session, modulation = self.session, self.modulation

        def body(progress, cancel):  # noqa: ANN001 (core ProgressFn, CancelToken)
            from core.workflow.alpha_crit import run_alpha_crit

            return run_alpha_crit(session, mode="suppress", modulation=modulation,
                                  progress=progress, cancel=cancel)

        job = self.salve.start_job(f"α_crit ({modulation})", body)
        if job is not None:
            self._job = job

    def action_compute_all_dominant(self) -> None:
        """Every class's dominant-feature sweep and α_crit as one resumable background job."""
        session, modulation = self.session, self.modulation

        def body(progress, cancel):  # noqa: ANN001 (core ProgressFn, CancelToken)
            from core.workflow.all_dominant import run_all_dominant

            return run_all_dominant(session, "suppress", modulation, progress=progress, cancel=cancel)

        job = self.salve.start_job(f"sweeps + α_crit, all dominant ({modulation})", body)
        if job is not None:
            self._job = job

    def on_job_update(self, message: JobMessage) -> None:
        if message.job is not self._job:
            return
        if isinstance(message, JobProgress):
            self.query_one("#crit-status", Static).update(
                f"computing α_crit: {message.progress.fraction:.0%} {message.progress.message}")
        elif isinstance(message, JOB_END_MESSAGES):
            self._job = None

    def action_sort_next(self) -> None:
        keys = [c.key for c in SAMPLE_COLUMNS]
        self.sort_key = keys[(keys.index(self.sort_key) + 1) % len(keys)]
        self._fill_samples()

    def action_invert_sort(self) -> None:
        self.descending = not self.descending
        self._fill_samples()

    def apply_filter(self, text: str) -> None:
        self.filter_text = text.strip()
        if self.loaded:
            self._fill_samples()

    def action_toggle_filter(self) -> None:
        if self.filter_class is None:
            summary = self.query_one("#crit-summary", DataTable)
            if not self.results:
                return
            index = min(self.summary_pager.start + summary.cursor_row, len(self.results) - 1)
            self.filter_class = self.results[index].target_class
        else:
            self.filter_class = None
        self._fill_samples()

    def action_page(self, step: int) -> None:
        """[ ] turn the page of the focused table: the samples unless the summary has focus and
        more than one page (the summary of 10 classes has focus first, yet [ ] page the samples)."""
        summary = self.query_one("#crit-summary", DataTable)
        if summary.has_focus and self.summary_pager.pages > 1:
            if self.summary_pager.turn(step):
                self._fill_summary()
        elif self.sample_pager.turn(step):
            self._fill_samples(first_page=False)

    def action_cycle_modulation(self) -> None:
        self.modulation = MODULATIONS[(MODULATIONS.index(self.modulation) + 1) % len(MODULATIONS)]
        self.query_one("#crit-info", Static).update(
            Text(f"loading the α_crit results ({self.modulation})…", style="dim"))
        self.reload()

    def action_open_sample(self) -> None:
        table = self.query_one("#crit-samples", DataTable)
        if not self.rows:
            return
        if not table.has_focus:
            table.focus()
            return
        row = self.rows[min(self.sample_pager.start + table.cursor_row, len(self.rows) - 1)]
        self.app.push_screen(SampleSaliencyScreen(int(row["index"]), int(row["feature"]), row))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id == "crit-samples":
            self.action_open_sample()
        else:
            self.query_one("#crit-samples", DataTable).focus()


class SampleSaliencyScreen(SessionScreen):
    """One test sample with the Grad-FAM map of a feature (image, overlay and the map itself)."""

    SCREEN_TITLE = "Sample Grad-FAM"
    HELP_TEXT = (
        "The test sample, its Grad-FAM map for the feature overlaid (red = strong evidence), and "
        "the map alone. Computed in the background from the session's model and SAE."
    )
    CSS_PATH = Path(__file__).with_suffix(".tcss")  # this module's screens
    LOADING = "the Grad-FAM map (model, SAE and the test image)"
    LOAD_ERROR_IN_INFO = True  # the info line says "failed: …" after the sample's details

    def __init__(self, sample: int, feature: int, row: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.sample = sample
        self.feature = feature
        self.row = row or {}
        self.preview: SaliencyResult | None = None
        self._shown: tuple[SaliencyResult, np.ndarray] | None = None  # the map and its overlay
        self.class_names: list[str] = []
        self.error = ""

    def compose(self) -> ComposeResult:
        yield ScreenHeader()
        yield Static(id="sample-info", markup=False)
        with Horizontal(id="sample-images"):
            yield ImageView(id="sample-image")
            yield ImageView(id="sample-overlay")
            yield ImageView(id="sample-heat")
        yield ScreenFooter(compact=True)

    def load(self) -> tuple[list[str], tuple[SaliencyResult, np.ndarray]]:
        session = self.session
        names = [str(c) for c in session.read_json("class_names")]
        shown = self._shown  # computed once: a reload after a job only re-reads the names
        return names, shown or gradfam_with_overlay(session, self.sample, self.feature)

    def show(self, loaded: tuple[list[str], tuple[SaliencyResult, np.ndarray]]) -> None:
        from core.workflow.figures import colorize

        self.class_names, self._shown = loaded
        self.preview, overlay = self._shown
        self.error = ""
        self.query_one("#sample-image", ImageView).image = self.preview.image
        self.query_one("#sample-overlay", ImageView).image = overlay
        self.query_one("#sample-heat", ImageView).image = colorize(self.preview.heat)
        self._draw_info()

    def show_failure(self, error: str) -> None:
        self.error = error
        self._draw_info()

    def _draw_info(self) -> None:
        names = self.class_names
        text = Text(f"test sample {self.sample}", style="bold")
        row = self.row
        if row:
            text.append(f" · class {class_name(names, int(row['label']))}"
                        f" · predicted {class_name(names, int(row['prediction']))}"
                        f" · z={fmt_value(row.get('z'))} S={fmt_value(row.get('S'))}"
                        f" · α_crit {fmt_value(row.get('alpha_crit_analytic'))}")
        text.append(f"\nGrad-FAM of feature {self.feature}: ", style="dim")
        if self.error:
            text.append(f"failed: {self.error}", style="red")
        elif self.preview is None:
            text.append("computing…", style="dim")
        else:
            text.append(f"u={self.preview.latent:+.3f} · image │ overlay │ map", style="dim")
        self.query_one("#sample-info", Static).update(text)
