"""A job progress panel: bar, percentage, ETA and the core's current message."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import ProgressBar, Static

from core.jobs import Progress
from salve_tui.app.format import format_duration, format_metric
from salve_tui.app.jobs import Job

IDLE_TEXT = "no job running"


def progress_line(job: Job, progress: Progress | None) -> Text:
    """``job › stage  45%  ETA 1m02s  message  metrics`` (ETA from core's linear extrapolation)."""
    text = Text()
    if job.cancelling:
        text.append("cancelling… ", style="bold yellow")
    text.append(job.name, style="bold")
    if progress is None:
        text.append("  starting…")
        return text
    text.append(f" › {progress.stage} ", style="cyan")
    text.append(f"{progress.fraction:4.0%}")
    text.append(f"  ETA {format_duration(progress.eta_seconds)}", style="bright_black")
    if progress.message:
        text.append(f"  {progress.message}")
    if progress.metrics:
        shown = "  ".join(f"{k}={format_metric(v)}" for k, v in list(progress.metrics.items())[:4])
        text.append(f"  {shown}", style="bright_black")
    return text


class JobProgressPanel(Vertical):
    """Two lines: a progress bar for the current stage and a status line under it."""

    DEFAULT_CSS = """
    JobProgressPanel { height: 2; }
    JobProgressPanel ProgressBar { width: 1fr; }
    JobProgressPanel ProgressBar Bar { width: 1fr; }
    JobProgressPanel #job-line { height: 1; text-wrap: nowrap; text-overflow: ellipsis; }
    """

    def compose(self) -> ComposeResult:
        # A fixed total while idle: the indeterminate animation would make screenshots flaky.
        yield ProgressBar(total=100, show_eta=False, id="job-bar")
        yield Static(IDLE_TEXT, id="job-line", markup=False)

    def on_mount(self) -> None:
        """Screens opened while a job runs show its latest report at once."""
        job = getattr(self.app, "jobs", None) and self.app.jobs.current  # type: ignore[attr-defined]
        if job is not None and not job.finished:
            self.show_progress(job, job.latest)

    def show_progress(self, job: Job, progress: Progress | None) -> None:
        bar = self.query_one("#job-bar", ProgressBar)
        if progress is not None and progress.total > 0:
            bar.update(total=progress.total, progress=progress.done)
        self.query_one("#job-line", Static).update(progress_line(job, progress))

    def show_text(self, text: str | Text, *, complete: bool | None = None) -> None:
        """Idle or end-of-job text; ``complete`` fills (True) or empties (False) the bar."""
        bar = self.query_one("#job-bar", ProgressBar)
        if complete is True:
            bar.update(total=1, progress=1)
        elif complete is False:
            bar.update(total=100, progress=0)
        self.query_one("#job-line", Static).update(text)
