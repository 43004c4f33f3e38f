"""Pipeline dashboard: each stage's committed state, run / rerun / run-all / cancel, progress, log."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, RichLog, Static

from core.store.session import PIPELINE_STAGES, StageState
from core.workflow.pipeline import effective_states, stale_if_rerun
from core.workflow.results import overview_line, stale_results
from salve_tui.app.format import format_timestamp, stage_state_text
from salve_tui.app.jobs import (
    JOB_END_MESSAGES,
    JobCancelled,
    JobFinished,
    JobMessage,
    JobProgress,
    JobStarted,
)
from salve_tui.app.screens.analysis_shared import fit_column
from salve_tui.app.screens.base import SessionScreen
from salve_tui.app.screens.confirm import ConfirmModal
from salve_tui.app.widgets.chrome import ScreenFooter, ScreenHeader
from salve_tui.app.widgets.progress import JobProgressPanel

STAGE_TITLES = {
    "data": "data",
    "backbone": "backbone",
    "activations": "activations",
    "sae": "SAE",
    "rankings": "rankings",
}


def config_line(config_dict: dict) -> str:
    """One line summarising the session's settings."""
    data = config_dict.get("data", {})
    backbone = config_dict.get("backbone", {})
    sae = config_dict.get("sae", {})
    weights = backbone.get("weights", "none")
    if weights not in ("none", "pretrained"):
        weights = "checkpoint"
    return (f"{backbone.get('arch', '?')} ({weights}, {backbone.get('epochs', '?')} ep) · "
            f"{data.get('kind', '?')} {data.get('image_size', '?')}px · "
            f"SAE {sae.get('kind', '?')} h={sae.get('hidden', '?')} {sae.get('epochs', '?')} ep · "
            f"device {config_dict.get('device', 'auto')}")


FOOTER_LAST_ORDER = 50  # views up to Exports; later ones (edit stack, job log) are in help


def next_step_text(states: dict[str, str], busy: bool, keys: dict[str, str],
                   messages: dict[str, str] | None = None) -> Text:
    """One line saying where to go next: the stage to run, or (all done) what to look at.

    A failed stage gets its whole message here (the table's detail column cuts it).
    """
    if busy:
        return Text("a job is running: c cancels it at its next safe point", style="cyan")
    pending = [s for s in PIPELINE_STAGES if states.get(s) != "done"]
    if pending:
        first = pending[0]
        state = states.get(first, "pending")
        if state == "failed":
            message = (messages or {}).get(first, "")
            return Text(f"✗ '{first}' failed: {message}\nfix that, then Enter (or a) runs it again",
                        style="red")
        why = {"stale": "is stale; ", "partial": "is partial; "}.get(state, "")
        return Text(f"next: '{first}' {why}a runs every pending stage, Enter this one",
                    style="yellow" if state in ("stale", "partial") else "")

    def key(name: str, fallback: str) -> str:
        return keys.get(name, fallback)

    return Text.assemble(("ready: ", "bold green"),
                         f"{key('feature_class_matrix', 'm')} shows the features each class uses · "
                         f"{key('edit_preview', 'e')} suppresses one · "
                         f"{key('alpha_crit', 'k')} α_crit")


DETAIL_WIDTH = 33  # the stage table's detail column at 80 columns (wider terminals: wider)


def results_made_stale(session, stages: list[str]) -> list[str]:  # noqa: ANN001 (Session)
    """``3 α_crit results, 1 recorded edit``: the stored results that read any of ``stages``
    (``core.workflow.results``), which a rerun of them makes stale."""
    from core.workflow.results import RESULT_KINDS

    out = []
    for kind in RESULT_KINDS.values():
        if set(stages) & set(kind.reads):
            count = sum(1 for _ in kind.records(session))
            if count:
                out.append(kind.count(count))
    return out


class StageTable(DataTable):
    """Stage rows; up/down choose the stage that r / f act on."""

    BINDINGS: ClassVar[list[Binding]] = [Binding("enter", "select_cursor", "Run stage", show=False)]


class DashboardScreen(SessionScreen):
    CSS_PATH = Path(__file__).with_suffix(".tcss")  # this module's screens
    SCREEN_TITLE = "Pipeline dashboard"
    BREADCRUMB_ROOT = True
    HELP_TEXT = (
        "The pipeline of the open session: data → backbone → activations → SAE → rankings. "
        "Each stage commits its results to the session file, so a cancelled or crashed run "
        "resumes from its last checkpoint. Choose a stage with ↑/↓; r runs it (if not done), "
        "f reruns it even if done (it asks first and names the later stages that become stale), a "
        "runs every pending stage in order. A failed stage shows ✗ with its message until it is "
        "rerun; a stage after one that is partial, failed or stale reads stale. c cancels the "
        "running job at its next safe point (a finished epoch is kept). The line under the table "
        "says what to do next; the job log (l) keeps every job's messages. Views of the results "
        "open with the keys listed below."
    )
    BINDINGS: ClassVar[list[Binding]] = [
        Binding("escape", "back", "Sessions", show=False),
        Binding("a", "run_all", "Run all"),
        Binding("r", "run_stage", "Run", show=False),  # enter does the same
        Binding("f", "rerun_stage", "Rerun", show=False),
        Binding("c", "app.cancel_job", "Cancel"),
        # Before the view keys, so an 80-column footer cuts a view label, never "q Quit".
        Binding("q", "app.quit", "Quit"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._shown_stage = ""
        # Each registered view gets its key here, so the footer, help and palette list it; views
        # ordered after FOOTER_LAST_ORDER are left out of the footer (help and palette keep them).
        for view in self.salve.views:
            self._bindings.bind(view.key, f"open_view('{view.name}')", view.footer or view.title,
                                show=view.in_footer and view.order <= FOOTER_LAST_ORDER)

    def compose(self) -> ComposeResult:
        yield ScreenHeader()
        yield Static(id="session-config", markup=False)
        yield Static(id="quality", markup=False)
        yield StageTable(id="stages", cursor_type="row", zebra_stripes=False)
        yield Static(id="next-step", markup=False)
        yield JobProgressPanel(id="progress")
        yield RichLog(id="log", wrap=False, markup=False, max_lines=500)
        yield ScreenFooter(compact=True)

    def on_mount(self) -> None:
        table = self.query_one(StageTable)
        table.add_column("stage", key="stage", width=11)
        table.add_column("state", key="state", width=12)
        table.add_column("detail", key="detail", width=DETAIL_WIDTH)
        table.add_column("updated", key="updated", width=16)
        for stage in PIPELINE_STAGES:
            table.add_row(STAGE_TITLES[stage], "", "", "", key=stage)
        log = self.query_one(RichLog)
        for line in self.salve.log_lines:
            log.write(line)
        self.salve.log_events.subscribe(self, log.write)
        table.focus()

    def on_resize(self) -> None:
        self._fit_detail_column()

    def _fit_detail_column(self) -> None:
        """The detail column is as wide as its longest message, within what the other columns
        leave (33 cells at 80 columns): a wide terminal shows whole stage messages."""
        fit_column(self.query_one(StageTable), "detail", DETAIL_WIDTH, self.size.width)

    def refresh_from_session(self) -> None:
        session = self.session
        self.query_one("#session-config", Static).update(f"{session.name}: {config_line(session.config.to_dict())}")
        self._show_quality(session.summary().get("warnings") or [])
        stages = session.stages()
        effective = effective_states(stages)
        table = self.query_one(StageTable)
        running = self._running_stage()
        upstream = ""
        for stage in PIPELINE_STAGES:
            state = stages.get(stage, StageState())
            shown = effective[stage]
            state_text = Text("▶ running", style="bold cyan") if stage == running else stage_state_text(shown)
            detail = state.message
            if shown != state.state and upstream:  # done, but an earlier stage is not
                detail = f"'{upstream}' is {effective[upstream]}; rerun this stage after it"
            table.update_cell(stage, "state", state_text)
            style = "red" if shown == "failed" else ""
            table.update_cell(stage, "detail", Text(detail, style=style, no_wrap=True, overflow="ellipsis"))
            table.update_cell(stage, "updated", format_timestamp(state.updated))
            if not upstream and shown != "done":
                upstream = stage
        self._fit_detail_column()
        keys = {view.name: view.key for view in self.salve.views}
        messages = {name: state.message for name, state in stages.items()}
        self.query_one("#next-step", Static).update(
            next_step_text(effective, self.salve.jobs.busy, keys, messages))
        try:  # stored results computed before a stage was rerun
            stale = overview_line(stale_results(session), keys)
        except Exception as exc:  # noqa: BLE001 - a damaged result document: say so, keep the dashboard
            stale = f"warning: could not check the stored results: {exc}"
        self._show_stale(stale)

    def _show_quality(self, warnings: list[dict]) -> None:
        """One yellow line naming the quality warnings stored after the last stage (if any)."""
        widget = self.query_one("#quality", Static)
        widget.display = bool(warnings)
        codes = ", ".join(w["code"] for w in warnings)
        widget.update(Text(f"⚠ {len(warnings)} quality warning(s): {codes} (their values: `salve info` in a shell)",
                           style="yellow", no_wrap=True, overflow="ellipsis"))

    def _running_stage(self) -> str | None:
        job = self.salve.jobs.current
        if job is None or job.finished or job.latest is None:
            return None
        return job.latest.stage

    def on_job_update(self, message: JobMessage) -> None:
        panel = self.query_one(JobProgressPanel)
        if isinstance(message, JobStarted):
            panel.show_progress(message.job, None)
        elif isinstance(message, JobProgress):
            panel.show_progress(message.job, message.progress)
            table = self.query_one(StageTable)
            progress = message.progress
            if progress.stage != self._shown_stage:  # the previous stage has committed: re-read
                self._shown_stage = progress.stage
                self.refresh_from_session()
            if progress.stage in PIPELINE_STAGES:
                table.update_cell(progress.stage, "state",
                                  Text(f"▶ {progress.fraction:.0%}", style="bold cyan"))
                if progress.message:
                    table.update_cell(progress.stage, "detail",
                                      Text(progress.message, no_wrap=True, overflow="ellipsis"))
        elif isinstance(message, JOB_END_MESSAGES):
            job = message.job
            if isinstance(message, JobFinished):
                panel.show_text(Text(f"'{job.name}' finished", style="green"), complete=True)
            elif isinstance(message, JobCancelled):
                panel.show_text(Text(f"'{job.name}' cancelled — a / r resumes from the last checkpoint",
                                     style="yellow"), complete=False)
            else:
                panel.show_text(Text(f"'{job.name}' failed: {message.error}", style="red"), complete=False)

    # ----- actions

    def selected_stage(self) -> str:
        table = self.query_one(StageTable)
        row = table.cursor_row if table.cursor_row is not None else 0
        return PIPELINE_STAGES[min(max(row, 0), len(PIPELINE_STAGES) - 1)]

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_run_stage()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # While a job runs "Run all" cannot start; leaving it out keeps the footer (now showing
        # "c Cancel") within 80 columns.
        if action == "run_all" and self.salve.jobs.busy:
            return False
        return super().check_action(action, parameters)

    def action_run_all(self) -> None:
        self.salve.run_pipeline_job(None, force=False, name="run all")

    def action_run_stage(self) -> None:
        stage = self.selected_stage()
        state = effective_states(self.session.stages())[stage]
        if state == "done":
            self.notify(f"'{stage}' is already done; press f to rerun it", severity="information")
            return
        # A stage stored as done but stale through an earlier one is run again, not skipped.
        self.salve.run_pipeline_job([stage], force=True, name=stage)

    def action_rerun_stage(self) -> None:
        """Rerun the selected stage; when it is done, ask first and name what becomes stale."""
        stage = self.selected_stage()
        stages = self.session.stages()
        if not self.session.stage_done(stage):
            self.salve.run_pipeline_job([stage], force=True, name=f"rerun {stage}")
            return
        later = stale_if_rerun(stages, stage)
        results = results_made_stale(self.session, [stage, *later])
        consequence = (f"The stages {', '.join(later)} will become stale and need rerunning."
                       if later else "No later stage depends on it yet.")
        if results:
            consequence += f"\nRecorded results computed from it become stale too: {', '.join(results)}."

        def answer(confirmed: bool | None) -> None:
            if confirmed:
                self.salve.run_pipeline_job([stage], force=True, name=f"rerun {stage}")

        self.app.push_screen(
            ConfirmModal(f"'{stage}' is done. Rerun it from scratch?\n{consequence}",
                         title=f"Rerun {stage}", yes="Rerun", no="Keep"),
            answer,
        )

    def action_open_view(self, name: str) -> None:
        self.salve.open_view(name)

    def action_back(self) -> None:
        self.salve.back_to_sessions()
