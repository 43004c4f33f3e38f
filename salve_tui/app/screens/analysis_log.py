"""Job log: every job's messages, kept with the session (``core.store.joblog``), then the live one.

Toasts vanish after a few seconds; this screen keeps what each job said (its stages, progress
lines, the error of a failure with its details) across restarts of the app. ``f`` shows only
the jobs that failed.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import RichLog, Static

from salve_tui.app.format import format_duration
from salve_tui.app.jobs import JobMessage
from salve_tui.app.screens.base import SessionScreen, session_view
from salve_tui.app.widgets.chrome import ScreenFooter, ScreenHeader
from salve_tui.app.widgets.filter import FILTER_BINDING, FilterBar, matches

STATUS_STYLES = {"finished": "green", "failed": "bold red", "cancelled": "yellow"}
DETAIL_LINES = 12  # last lines of a failure's traceback shown under it


def entry_lines(entry: dict[str, Any]) -> list[Text]:
    """One stored job as lines: a header (when, name, outcome, duration) and its messages."""
    started = entry.get("started") or 0.0
    stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if started else "—"
    status = str(entry.get("status", "?"))
    header = Text.assemble(("▸ ", "bold"), (stamp + " ", "bright_black"),
                           (str(entry.get("job", "?")), "bold"), " ",
                           (status, STATUS_STYLES.get(status, "")),
                           (f" after {format_duration(entry.get('elapsed'))}", "bright_black"))
    out = [header]
    if entry.get("error"):
        out.append(Text(f"  error: {entry['error']}", style="red"))
    for line in entry.get("lines", []):
        stamp_text, text, style = (list(line) + ["", "", ""])[:3]
        out.append(Text.assemble(("  " + str(stamp_text) + " ", "bright_black"), (str(text), str(style))))
    details = str(entry.get("details") or "").strip().splitlines()
    for line in details[-DETAIL_LINES:]:
        out.append(Text("    " + line, style="bright_black"))
    return out


@session_view(footer="Log", key="l", title="Job log", order=70, name="job_log",
              description="Every job's messages and errors, kept with the session")
class JobLogScreen(SessionScreen):
    CSS_PATH = Path(__file__).with_suffix(".tcss")  # this module's screens
    SCREEN_TITLE = "Job log"
    HELP_TEXT = (
        "What every job of this session reported: when it ran, how it ended (finished, failed, "
        "cancelled), its stages and progress lines, and for a failure its error and the last lines "
        "of the details. Kept beside the session file, so it survives restarting the app. The "
        "running job's lines follow live at the end. f shows only failed jobs; ↑/↓ and PgUp/PgDn "
        "scroll."
    )
    LOADING = "the job log"
    BINDINGS: ClassVar[list[Binding]] = [
        Binding("f", "toggle_failed", "Failed only"),
        FILTER_BINDING,
    ]

    def __init__(self) -> None:
        super().__init__()
        self.failed_only = False
        self.filter_text = ""  # /: only jobs with a line containing every word
        self.entries: list[dict[str, Any]] = []

    def compose(self) -> ComposeResult:
        yield ScreenHeader()
        yield Static("", id="joblog-summary", markup=False)
        yield FilterBar()
        yield RichLog(id="joblog", wrap=True, markup=False, max_lines=5000)  # no line cut
        yield ScreenFooter(compact=True)

    def on_mount(self) -> None:
        self.salve.log_events.subscribe(self, self._live_line)
        self.query_one(RichLog).focus()

    def on_unmount(self) -> None:
        super().on_unmount()
        self.salve.log_events.unsubscribe(self)

    def load(self) -> list[dict[str, Any]]:
        from core.store.joblog import read_job_log

        return read_job_log(self.session.path)

    def show(self, entries: list[dict[str, Any]]) -> None:
        self.entries = entries
        self._draw()

    def _draw(self) -> None:
        log = self.query_one(RichLog)
        log.clear()
        shown = [e for e in self.entries if (not self.failed_only or e.get("status") == "failed")
                 and matches(self.filter_text, *(line.plain for line in entry_lines(e)))]
        failed = sum(1 for e in self.entries if e.get("status") == "failed")
        summary = f"{len(self.entries)} job(s) logged, {failed} failed"
        if self.failed_only:
            summary += " · showing failed only (f shows all)"
        if self.filter_text:
            summary += f" · {len(shown)} match '{self.filter_text}' (/ then esc clears)"
        self.query_one("#joblog-summary", Static).update(summary)
        if not shown:
            log.write(Text("no jobs logged yet" if not self.failed_only else "no failed job",
                           style="dim"))
        for entry in shown:
            for line in entry_lines(entry):
                log.write(line)
        job = self.salve.jobs.current
        if job is not None and not job.finished and not self.failed_only:
            log.write(Text(f"▸ running: {job.name}", style="bold cyan"))
            for stamp, text, style in self.salve.running_job_lines:
                log.write(Text.assemble(("  " + stamp + " ", "bright_black"), (text, style)))

    def _live_line(self, line: Text) -> None:
        job = self.salve.jobs.current
        if self.is_attached and not self.failed_only and job is not None and not job.finished:
            self.query_one(RichLog).write(Text.assemble("  ", line))

    def on_job_update(self, message: JobMessage) -> None:
        """Job ends re-read the stored log (:meth:`load`); nothing else to do."""

    def apply_filter(self, text: str) -> None:
        self.filter_text = text.strip()
        self._draw()

    def action_toggle_failed(self) -> None:
        self.failed_only = not self.failed_only
        self._draw()
