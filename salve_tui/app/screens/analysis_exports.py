"""Exports view: write figures, heatmaps, tables and edited weights beside the session file.

Every export runs as an app job (``core.workflow.figures`` / ``core.workflow.export`` / ``core.workflow.sweeps``) and
writes into ``<session>.exports/``; the files it wrote are listed when it finishes, and the
folder's contents (newest first) stay listed below. Exports that need results the session does
not have yet compute them first and record them (sweeps, α_crit), like the CLI does.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from salve_tui.app.format import elide_path
from salve_tui.app.jobs import JobCancelled, JobFailed, JobFinished, JobMessage, JobProgress
from salve_tui.app.screens.analysis_edit import display_path
from salve_tui.app.screens.base import SessionScreen, session_view
from salve_tui.app.widgets.chrome import ScreenFooter, ScreenHeader
from salve_tui.app.widgets.filter import FILTER_BINDING, FilterBar, matches

TABLES = "tables"
LISTED_FILES = 50


# --------------------------------------------------------------------------- export bodies
# Each takes (session, progress, cancel) and returns the list of written paths.


def export_matrix(session, progress=None, cancel=None) -> list[Path]:  # noqa: ANN001
    """The feature–class matrix μ as a PNG heatmap with dominant features boxed."""
    from core.workflow.figure_export import feature_class_matrix_png

    return [feature_class_matrix_png(session)]


def export_gradfam(session, progress=None, cancel=None) -> list[Path]:  # noqa: ANN001
    """Per class: Grad-FAM of its dominant feature on the test sample that drives it most."""
    from core.jobs import ProgressReporter, check_cancel
    from core.workflow.assets import load_assets
    from core.workflow.saliency_maps import class_gradfam_png

    assets = load_assets(session)
    names = assets.class_names
    reporter = ProgressReporter("Grad-FAM heatmaps", len(names), progress)
    written = []
    for c, name in enumerate(names):
        check_cancel(cancel)
        path = class_gradfam_png(session, c, assets)
        if path is not None:
            written.append(path)
        reporter.report(c + 1, name)
    return written


def export_curves(session, progress=None, cancel=None) -> list[Path]:  # noqa: ANN001
    """Per class: the suppression sweep of its dominant feature, recorded, drawn as the accuracy
    curves (α50 marked) and the target class's prediction shares."""
    from core.jobs import ProgressReporter, check_cancel
    from core.workflow.figure_export import sweep_figures
    from core.workflow.inputs import load_inputs
    from core.workflow.sweeps import run_sweep, sweep_id

    inputs = load_inputs(session)
    names = inputs.class_names
    present = sorted(set(int(c) for c in inputs.labels.tolist()))
    reporter = ProgressReporter("suppression curves", len(present), progress)
    written = []
    for i, c in enumerate(present):
        check_cancel(cancel)
        result = run_sweep(session, target_class=c, inputs=inputs)
        check_cancel(cancel)  # the sweep and its two figures each take up to a second under load
        written += sweep_figures(session, sweep_id(result), names)
        reporter.report(i + 1, names[c])
    return written


def export_alpha_crit(session, progress=None, cancel=None) -> list[Path]:  # noqa: ANN001
    """α_crit tables (summary + per sample CSV) and their distribution figure."""
    from core.jobs import check_cancel
    from core.workflow.alpha_crit import load_alpha_crit, run_alpha_crit
    from core.workflow.export import export_alpha_crit_csv
    from core.workflow.figure_export import alpha_crit_png

    results = load_alpha_crit(session)
    if not results:
        results = run_alpha_crit(session, progress=progress, cancel=cancel)
    names = [str(c) for c in session.read_json("class_names")]
    summary, samples = export_alpha_crit_csv(
        results, names, session.exports_dir / TABLES / "alpha_crit_suppress-linear.csv")
    check_cancel(cancel)
    figure = alpha_crit_png(session, "suppress", "linear")
    return [summary, samples] + ([figure] if figure is not None else [])


def _title(key: str) -> str:
    return next(kind.title for kind in EXPORTS if kind.key == key).split(" (")[0]


def export_weights(session, progress=None, cancel=None) -> list[Path]:  # noqa: ANN001
    """The model with every recorded edit replayed, as .pt and .safetensors (+ sidecar)."""
    from core.workflow.edits import active_edits
    from core.workflow.export import export_edited_model

    if not active_edits(session):
        raise ValueError("no active edit: preview one (e) and press w there, or enable one in the "
                         "edit stack (s), then export")
    result = export_edited_model(session)
    return result.written


@dataclass(frozen=True)
class ExportListing:
    """The export folder's files (path, mtime, bytes), newest first, and their total size."""

    folder: Path
    files: list[tuple[Path, float, int]]

    @property
    def total_bytes(self) -> int:
        return sum(size for _, _, size in self.files)


def list_exports(folder: Path) -> ExportListing:
    """Every file below ``folder`` (stat once each; runs in the screen's load worker)."""
    files = []
    if folder.exists():
        for path in folder.rglob("*"):
            try:
                stat = path.stat()
            except OSError:  # removed meanwhile
                continue
            if path.is_file():
                files.append((path, stat.st_mtime, stat.st_size))
    files.sort(key=lambda f: f[1], reverse=True)
    return ExportListing(folder, files)


def format_size(size: int) -> str:
    """``90.1 MB``: bytes in the largest unit that keeps the number ≥ 1."""
    value = float(size)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


@dataclass(frozen=True)
class ExportKind:
    key: str
    title: str
    detail: str
    run: Callable[..., list[Path]]


EXPORTS = (
    ExportKind("matrix", "Feature–class matrix (PNG)", "μ heatmap, dominant features boxed",
               export_matrix),
    ExportKind("gradfam", "Grad-FAM heatmaps (PNG)", "each class's dominant feature on its top sample",
               export_gradfam),
    ExportKind("curves", "Suppression curves (PNG)", "accuracy vs α per class, α50 marked",
               export_curves),
    ExportKind("alpha_crit", "α_crit tables (CSV) + figure", "per class and per sample",
               export_alpha_crit),
    ExportKind("weights", "Edited weights (.pt, .safetensors)", "the active edits of the stack replayed",
               export_weights),
)


@dataclass(frozen=True)
class ExportRun:
    """What an export job did: the files it wrote, and the exports it left alone because files of
    theirs exist (kind key → the first existing file); the screen asks about those only."""

    written: list[Path]
    existing: dict[str, str]
    failed: dict[str, str]


def run_exports(keys: tuple[str, ...], session, progress=None, cancel=None) -> ExportRun:  # noqa: ANN001
    """Run the exports ``keys`` one after the other; one whose file exists (and may not be
    replaced) is skipped and reported, the others still write. Weights only with an active edit
    when more than one export runs (alone, the export says what to do)."""
    from core.atomic import OutputExists
    from core.jobs import JobCancelled, check_cancel
    from core.workflow.edits import active_edits
    from salve_tui.app.jobs import error_text

    written: list[Path] = []
    existing: dict[str, str] = {}
    failed: dict[str, str] = {}
    for kind in (k for k in EXPORTS if k.key in keys):
        if kind.key == "weights" and len(keys) > 1 and not active_edits(session):
            continue
        check_cancel(cancel)  # between exports (each writes its own files)
        try:
            written += kind.run(session, progress, cancel)
        except OutputExists as exc:
            existing[kind.key] = str(exc).split(" already exists")[0]
        except JobCancelled:
            raise
        except Exception as exc:  # one export's failure does not stop the others
            if len(keys) == 1:
                raise
            failed[kind.key] = error_text(exc)
    return ExportRun(written, existing, failed)


def _run_summary(job_name: str, run: ExportRun) -> Text:
    """One status line: what was written, what exists, what failed (and why, for the first)."""
    text = Text(f"{job_name}: wrote {len(run.written)} file(s)", style="green")
    if run.existing:
        text.append(f"; files exist for: {', '.join(_title(k) for k in run.existing)}", style="yellow")
    if run.failed:
        key, error = next(iter(run.failed.items()))
        text.append(f"; failed: {', '.join(_title(k) for k in run.failed)} ({_title(key)}: {error})",
                    style="red")
    return text


def export_everything(session, progress=None, cancel=None) -> list[Path]:  # noqa: ANN001
    """Every export above; weights only when an edit is recorded."""
    return run_exports(tuple(k.key for k in EXPORTS), session, progress, cancel).written


@session_view(footer="Export", key="x", title="Exports", requires=("rankings",), order=50, name="exports",
              description="Write PNG heatmaps, figures, CSV tables and edited weights")
class ExportsScreen(SessionScreen):
    SCREEN_TITLE = "Exports"
    HELP_TEXT = (
        "Write results to the folder beside the session file (<name>.exports/). ↑/↓ choose an "
        "export and Enter runs it as a job (c cancels); A runs all of them. The files written by "
        "the last export are listed in green, then everything in the folder, newest first (Tab "
        "moves to that list; arrows scroll it)."
    )
    CSS_PATH = Path(__file__).with_suffix(".tcss")  # this module's screens
    BINDINGS: ClassVar[list[Binding]] = [
        Binding("enter", "run_selected", "Export"),
        Binding("A", "run_all", "All", key_display="A", tooltip="write every export"),
        FILTER_BINDING,  # the files in the folder
    ]
    PALETTE_EVERYWHERE = ("run_all",)  # offered in the palette from every screen
    LOADING = "the list of exported files"

    def __init__(self) -> None:
        super().__init__()
        self.last_written: list[Path] = []
        self._job: Any = None
        self._job_key = ""
        self.status = Text("Enter runs the highlighted export", style="dim")
        self.filter_text = ""  # /: only the folder's files whose path has every typed word
        self.listing: ExportListing | None = None

    def compose(self) -> ComposeResult:
        yield ScreenHeader()
        yield Static(id="exports-folder", markup=False)
        yield OptionList(*(Option(f"{kind.title} — {kind.detail}", id=kind.key) for kind in EXPORTS),
                         id="exports-list")
        yield Static(id="exports-status", markup=False)
        yield FilterBar()
        with VerticalScroll(id="exports-scroll"):  # Tab focuses it, arrows scroll
            yield Static(id="exports-files", markup=False)
        yield ScreenFooter(compact=True)

    def on_mount(self) -> None:
        option_list = self.query_one(OptionList)
        option_list.highlighted = 0
        option_list.focus()

    def load(self) -> ExportListing:
        return list_exports(self.session.exports_dir)

    def apply_filter(self, text: str) -> None:
        self.filter_text = text.strip()
        if self.listing is not None:
            self.show(self.listing)

    def show(self, listing: ExportListing) -> None:
        self.listing = listing
        folder = listing.folder
        count = len(listing.files)
        size = f" · {count} file{'s' if count != 1 else ''}, {format_size(listing.total_bytes)}" if count else ""
        self.query_one("#exports-folder", Static).update(f"export folder: {display_path(folder)}/{size}")
        self.query_one("#exports-status", Static).update(self.status)
        text = Text()
        width = max(20, (self.size.width or self.app.size.width) - 4)
        for path in self.last_written:
            text.append(f"✓ {elide_path(display_path(path), width - 2)}\n", style="green")
        fresh = {p.resolve() for p in self.last_written}
        others = [(p, mtime) for p, mtime, _ in listing.files if p.resolve() not in fresh
                  and matches(self.filter_text, p.relative_to(folder))]
        if not listing.files:
            text.append("nothing exported yet", style="dim")
        elif self.filter_text:
            text.append(f"{len(others)} file(s) match '{self.filter_text}' (/ then esc clears)\n", style="yellow")
        for path, mtime in others[:LISTED_FILES]:
            stamp = time.strftime("%Y-%m-%d %H:%M", time.localtime(mtime))
            shown = elide_path(str(path.relative_to(folder)), width - len(stamp) - 4)
            text.append(f"  {shown}")  # never broken inside a name: shortened in its folders
            text.append(f"  {stamp}\n", style="dim")
        if len(others) > LISTED_FILES:
            text.append(f"  … and {len(others) - LISTED_FILES} more\n", style="dim")
        self.query_one("#exports-files", Static).update(text)

    # ----- actions

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self._start(event.option.id or "")

    def action_run_selected(self) -> None:
        option_list = self.query_one(OptionList)
        if option_list.highlighted is None:
            return
        self._start((EXPORTS[option_list.highlighted].key,))

    def action_run_all(self) -> None:
        self._start(tuple(kind.key for kind in EXPORTS))

    def _start(self, keys: tuple[str, ...] | str, replace: bool = False) -> None:
        """Run exports ``keys`` as one job; files that exist are replaced only when ``replace``."""
        from core.atomic import overwrite_policy

        keys = (keys,) if isinstance(keys, str) else keys
        session = self.session
        title = "all exports" if len(keys) == len(EXPORTS) else ", ".join(_title(k) for k in keys)

        def body(progress, cancel):  # noqa: ANN001 (core ProgressFn, CancelToken)
            with overwrite_policy(replace):  # set in the worker thread: context is per thread
                return run_exports(keys, session, progress, cancel)

        job = self.salve.start_job(f"export: {title}", body)
        if job is not None:
            self._job, self._job_key = job, ",".join(keys)
            self._set_status(Text(f"exporting {title}…", style="cyan"))

    def _ask_to_replace(self, existing: dict[str, str]) -> None:
        """Ask once about the exports whose files exist (the others were written already)."""
        from salve_tui.app.screens.confirm import ConfirmModal

        keys = tuple(existing)
        names = ", ".join(_title(k) for k in keys)
        first = display_path(Path(next(iter(existing.values()))))

        def answer(confirmed: bool | None) -> None:
            if confirmed:
                self._start(keys, replace=True)
            else:
                self._set_status(Text(f"kept the existing files of: {names}", style="yellow"))

        count = len(keys)
        self.app.push_screen(
            ConfirmModal(f"{'These exports have' if count > 1 else 'This export has'} files already "
                         f"(e.g. {first}):\n{names}\nReplace them?",
                         title="Replace exports", yes="Replace", no="Keep"),
            answer,
        )

    def _set_status(self, text: Text) -> None:
        self.status = text
        self.query_one("#exports-status", Static).update(text)

    def on_job_update(self, message: JobMessage) -> None:
        if message.job is not self._job:
            return
        if isinstance(message, JobProgress):
            p = message.progress
            self._set_status(Text(f"{message.job.name}: {p.stage} {p.fraction:.0%} {p.message} "
                                  "(c cancels)", style="cyan"))
        elif isinstance(message, JobFinished):
            run: ExportRun = message.result
            self.last_written = list(run.written)
            self._set_status(_run_summary(message.job.name, run))
            if run.existing:
                self._ask_to_replace(run.existing)
        elif isinstance(message, JobFailed):
            self._set_status(Text(f"{message.job.name} failed: {message.error}", style="red"))
        elif isinstance(message, JobCancelled):
            self._set_status(Text(f"{message.job.name} cancelled", style="yellow"))
