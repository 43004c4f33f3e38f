"""``SalveApp``: holds the open session (as its single writer), runs jobs, routes their messages.

Data flows one way: a screen asks the app to run a core call → the call runs in a thread worker →
it commits to the session file and reports progress as messages → screens re-read the session.
torch (in the job bodies) and h5py (the session store) are imported after the first frame.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from rich.text import Text
from textual import events
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.screen import Screen
from textual.signal import Signal

from core.config import demo_config
from core.jobs import CancelToken, ProgressFn
from core.store.layout import resolve_session_path, sessions_dir
from salve_tui.app.collector import CHECK_EVERY_S, QuietCollector
from salve_tui.app.format import format_duration, format_metric, tui_words
from salve_tui.app.jobs import (
    Job,
    JobBusy,
    JobCancelled,
    JobFailed,
    JobFinished,
    JobFn,
    JobMessage,
    JobProgress,
    JobRunner,
    JobStarted,
)
from salve_tui.app.palette import SalveCommands, everywhere_commands, guard_textual
from salve_tui.app.preload import SessionAssets, unfreeze_objects
from salve_tui.app.screens.base import SalveScreen, SessionView, discover_views
from salve_tui.app.screens.confirm import ConfirmModal
from salve_tui.app.screens.messages import (
    READ_ONLY_FIX,
    READ_ONLY_NOTICE,
    MessageHistory,
    MessagesScreen,
    StoreNotices,
)

if TYPE_CHECKING:  # h5py (through core.store.session) is imported after the first frame
    from core.store.session import Session
LOG_PROGRESS_INTERVAL_S = 2.0  # progress lines in the log at most this often (the bar is live)

guard_textual()  # palette paging before its layout (KeyError: 0), search of a closed palette


class SalveApp(App[None]):
    """The salve-tui workstation."""

    CSS_PATH = Path(__file__).with_name("app.tcss")  # absolute: subclasses live elsewhere
    TITLE = "salve-tui"
    COMMANDS = {SalveCommands}  # word search over titles and descriptions, no duplicates
    BINDINGS: ClassVar[list[Binding]] = [
        Binding("q", "quit", "Quit"),
        Binding("ctrl+q", "quit", "Quit", show=False, priority=True),
        Binding("question_mark", "help", "Help", key_display="?", show=False),
        Binding("c", "cancel_job", "Cancel job", show=False),
        Binding("ctrl+n", "messages", "Messages", key_display="^n", show=False),
    ]

    def __init__(self, sessions_folder: str | Path | None = None, start_session: str | None = None,
                 build: bool = False, clock: Callable[[], float] = time.time) -> None:
        super().__init__()
        self.sessions_folder = sessions_dir(sessions_folder)
        self.start_session = start_session
        self.build = build
        self.clock = clock
        self.session: Session | None = None
        self.jobs = JobRunner(self)
        self.job_events: Signal[JobMessage] = Signal(self, "job-events")
        self.log_events: Signal[Text] = Signal(self, "log-events")
        self.log_lines: list[Text] = []
        self.shared = SessionAssets(on_loaded=lambda: self.collector.freeze_when_safe())  # loaded once, shared
        self._quitting = False
        self._last_logged_progress = 0.0
        self._last_stage = ""
        self._job_lines: list[list[str]] | None = None  # the running job's log, persisted at its end
        self._job_started_wall = 0.0
        self.messages = MessageHistory()  # every notification, for ctrl+n
        self.read_only_reason: str | None = None  # set while the open session cannot be saved
        # full GC passes when a screen closes or the user is idle, not under a key
        self.collector = QuietCollector(self._at_home, lambda: len(self.screen_stack), self._settled)

    # ----- start-up

    @cached_property  # the session views, imported (with h5py) when first needed: after the first frame
    def views(self) -> list[SessionView]:
        return discover_views()

    def on_mount(self) -> None:
        from salve_tui.app.screens.sessions import SessionsScreen

        StoreNotices.attach(self)
        self.collector.start()
        self.set_interval(CHECK_EVERY_S, self.collector.tick)
        self.push_screen(SessionsScreen())
        if self.start_session:
            self.call_after_refresh(self._open_start_session)

    def on_resize(self, event: events.Resize) -> None:
        for screen in self.screen_stack:
            if isinstance(screen, SalveScreen):
                screen.fit_to(event.size.width, event.size.height)

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, (events.Key, events.MouseEvent)):
            self.collector.touched()
        await super().on_event(event)

    def _at_home(self) -> bool:
        """Only the long-lived screens are shown (what the collector may freeze)."""
        from salve_tui.app.screens.dashboard import DashboardScreen
        from salve_tui.app.screens.sessions import SessionsScreen

        stack = self.screen_stack  # empty while the app shuts down
        return bool(stack) and isinstance(stack[-1], DashboardScreen | SessionsScreen)

    def _settled(self) -> bool:
        """No screen's worker is pending or running (the job and the preloader may be)."""
        from textual.worker import WorkerState

        return not any(worker.group not in ("salve-job", "preload")
                       and worker.state in (WorkerState.PENDING, WorkerState.RUNNING)
                       for worker in self.workers)

    def _open_start_session(self) -> None:
        """``salve-tui NAME [--build]``: open it, or offer to build it with the demo settings."""
        assert self.start_session is not None
        path = resolve_session_path(self.start_session, self.sessions_folder)
        if path.exists():
            if self.open_session(path) and self.build:
                self.run_pipeline_job(None, force=False, name="build", diagnostics=True)
            return
        if self.build:
            self._create_and_build(path)
            return

        def answer(confirmed: bool | None) -> None:
            if confirmed:
                self._create_and_build(path)

        self.push_screen(
            ConfirmModal(f"There is no session '{path.stem}' in {path.parent}/.\nCreate it with the "
                         "embedded demo settings (Shapes + ResNet-18) and build it now?",
                         title="New session", yes="Build", no="Not now"),
            answer,
        )

    def _create_and_build(self, path: Path) -> None:
        from core.store.session import Session, SessionError

        try:
            session = Session.create(path, demo_config(path.stem))
        except SessionError as exc:
            self.notify(str(exc), title="cannot create the session", severity="error", timeout=10)
            return
        self.adopt_session(session)
        self.run_pipeline_job(None, force=False, name="build", diagnostics=True)

    # ----- the open session (this app is its single writer)

    def open_session(self, path: Path) -> bool:
        """Open ``path`` as writer and show its dashboard; errors become notifications."""
        from core.store.session import Session, SessionError, SessionLocked

        self.close_session()
        try:
            session = Session.open(path, read_only=False)
        except SessionLocked as exc:
            self.notify(str(exc), title="session in use", severity="error", timeout=10)
            return False
        except SessionError as exc:
            self.notify(str(exc), title="cannot open session", severity="error", timeout=10)
            return False
        self.adopt_session(session)
        return True

    def adopt_session(self, session: Session) -> None:
        """Make ``session`` (already holding the writer lock) the open one and show its dashboard."""
        from salve_tui.app.screens.dashboard import DashboardScreen

        self.close_session()
        self.session = session
        self.sub_title = session.name
        self.read_only_reason = session.unwritable_reason
        self.log_lines.clear()
        self.log_message(f"opened {session.path}")
        self.push_screen(DashboardScreen())
        if self.read_only_reason:
            self.notify(READ_ONLY_NOTICE, title="read-only session", severity="warning", timeout=12)
        self.shared.start(self, session)  # after the dashboard is up: it never waits for this

    def on_unmount(self) -> None:
        """However the app ends, a running job is told to stop and the writer lock is released."""
        self.jobs.cancel()
        self.close_session()
        self.collector.stop()

    def close_session(self) -> None:
        self.shared.clear()
        unfreeze_objects()  # what was frozen for this session (its data, its dashboard) can go
        if self.session is not None:
            self.session.close()
            self.session = None
            self.sub_title = ""
            self.read_only_reason = None

    def back_to_sessions(self) -> None:
        """Leave the session (releasing the writer lock) and show the sessions list again."""
        if self.jobs.busy:
            self.notify("a job is running on this session; cancel it (c) or wait before leaving",
                        severity="warning")
            return
        from salve_tui.app.screens.sessions import SessionsScreen

        while len(self.screen_stack) > 1 and not isinstance(self.screen, SessionsScreen):
            self.pop_screen()
        self.close_session()
        if isinstance(self.screen, SessionsScreen):
            self.screen.action_refresh()

    # ----- jobs

    def start_job(self, name: str, fn: JobFn) -> Job | None:
        """Start a job unless one runs or the session cannot be saved (then say so); see
        :class:`salve_tui.app.jobs.JobRunner`."""
        if self.read_only_reason:
            self.notify(f"'{name}' would save results, and this session is read-only: "
                        f"{READ_ONLY_FIX}", title="read-only session", severity="warning", timeout=10)
            return None
        try:
            return self.jobs.start(name, fn)
        except JobBusy as exc:
            self.notify(str(exc), title="one job at a time", severity="warning")
            return None

    def run_pipeline_job(self, stages: Sequence[str] | None, force: bool, name: str,
                         diagnostics: bool = False) -> Job | None:
        """Run pipeline stages of the open session in a worker (skipping done ones unless ``force``).

        ``diagnostics``: then also what every screen shows (α_crit of every class, ground truth),
        as ``salve demo`` does (``core.workflow.build``).
        """
        session = self.session
        if session is None:
            self.notify("open a session first", severity="warning")
            return None

        def body(progress: ProgressFn, cancel: CancelToken) -> Any:
            from core.workflow.build import run_diagnostics
            from core.workflow.pipeline import run_pipeline

            outcomes = run_pipeline(session, list(stages) if stages else None, progress, cancel,
                                    force=force)
            return outcomes + run_diagnostics(session, progress, cancel) if diagnostics else outcomes

        return self.start_job(name, body)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Cancel only exists while a job runs (footer and palette leave it out otherwise)."""
        if action == "cancel_job":
            return self.jobs.busy
        return True

    def action_cancel_job(self) -> None:
        if self.jobs.cancel():
            self.log_message("cancel requested: stopping at the next safe point", style="yellow")
            self.notify("stopping at the next safe point…", title="cancelling")
        else:
            self.notify("no job is running")

    # ----- job messages → log, notifications, screens

    def on_job_started(self, message: JobStarted) -> None:
        self._last_stage = ""
        self._job_lines, self._job_started_wall = [], self.clock()
        self.log_message(f"job '{message.job.name}' started", style="bold")
        self.refresh_bindings()
        self.job_events.publish(message)

    def on_job_progress(self, message: JobProgress) -> None:
        progress = message.progress
        now = time.monotonic()
        if progress.stage != self._last_stage:
            self._last_stage = progress.stage
            self.log_message(f"stage {progress.stage}: {progress.message}", style="cyan")
            self._last_logged_progress = now
        elif now - self._last_logged_progress >= LOG_PROGRESS_INTERVAL_S:
            self._last_logged_progress = now
            metrics = " ".join(f"{k}={format_metric(v)}" for k, v in list(progress.metrics.items())[:4])
            self.log_message(f"  {progress.stage} {progress.fraction:.0%} {progress.message} {metrics}".rstrip())
        self.job_events.publish(message)

    def on_job_finished(self, message: JobFinished) -> None:
        job = message.job
        self.log_message(f"job '{job.name}' finished in {format_duration(job.elapsed)}", style="green")
        outcomes = message.result if isinstance(message.result, list | tuple) else []
        for outcome in outcomes:  # run_pipeline's StageOutcome list; other jobs return anything
            status = getattr(outcome, "status", None)
            if status is not None:
                self.log_message(f"  {outcome.stage}: {status} {outcome.message}".rstrip(), style="green")
        # No toast: it covered the results the screen just drew; the header says it (JobIndicator)
        # and the message history keeps it (ctrl+n).
        self.messages.add(f"'{job.name}' finished in {format_duration(job.elapsed)}", "job done",
                          "information", self.clock())
        self._persist_job_log(job, "finished")
        self._job_ended()
        self.job_events.publish(message)

    def on_job_failed(self, message: JobFailed) -> None:
        self.log_message(f"job '{message.job.name}' failed: {message.error}", style="bold red")
        if message.details:
            self.log.error(message.details)
        self.notify(message.error, title=f"'{message.job.name}' failed", severity="error", timeout=15)
        self._persist_job_log(message.job, "failed", message.error, message.details)
        self._job_ended()
        self.job_events.publish(message)

    def on_job_cancelled(self, message: JobCancelled) -> None:
        self.log_message(f"job '{message.job.name}' cancelled; the session keeps its last checkpoint "
                         "(run again to resume)", style="yellow")
        self.messages.add(f"'{message.job.name}' stopped; run it again to resume", "job cancelled",
                          "information", self.clock())
        self._persist_job_log(message.job, "cancelled")
        self._job_ended()
        self.job_events.publish(message)

    @property
    def running_job_lines(self) -> list[list[str]]:
        """The running job's log lines so far (``[stamp, text, style]``); empty when idle."""
        return list(self._job_lines or [])

    def _persist_job_log(self, job: Job, status: str, error: str = "", details: str = "") -> None:
        """Keep the ended job's messages with the session (``core.store.joblog``)."""
        lines, self._job_lines = self._job_lines or [], None
        if self.session is None or self.read_only_reason:  # nothing can be saved beside it
            return
        from core.store.joblog import append_job_log

        entry = {"job": job.name, "status": status, "started": self._job_started_wall,
                 "ended": self.clock(), "elapsed": job.elapsed, "error": error,
                 "details": details, "lines": lines}
        try:
            append_job_log(self.session.path, entry)
        except OSError as exc:
            self.notify(f"could not save the job log beside the session: {exc}", severity="warning")

    def _job_ended(self) -> None:
        """Before screens hear of the end: reload the shared items when a stage changed."""
        self.refresh_bindings()
        if self.session is not None and self.shared.refresh_if_changed(self, self.session):
            self.log_message("a stage changed: reloading the shared model, SAE and inputs", style="cyan")

    def log_message(self, text: str, style: str = "") -> None:
        """Append a timestamped line to the session log (shown on the dashboard)."""
        stamp = time.strftime("%H:%M:%S", time.localtime(self.clock()))
        line = Text.assemble((stamp + " ", "bright_black"), (text, style))
        if self._job_lines is not None:
            self._job_lines.append([stamp, text, style])
        self.log_lines.append(line)
        del self.log_lines[:-500]
        self.log_events.publish(line)

    # ----- messages, help, palette, quit

    def notify(self, message: str, *, title: str = "", severity: Any = "information",
               timeout: float | None = None, markup: bool = True) -> None:
        """Show a toast and keep the message for ctrl+n (toasts vanish and may cover results)."""
        message = tui_words(str(message))
        self.messages.add(message, title, str(severity), self.clock())
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    def action_messages(self) -> None:
        if isinstance(self.screen, MessagesScreen):
            self.screen.dismiss(None)
            return
        self.push_screen(MessagesScreen(self.messages))

    def action_help(self) -> None:
        from salve_tui.app.screens.help import HelpScreen

        if isinstance(self.screen, HelpScreen):
            return
        self.push_screen(HelpScreen(self.screen))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        """Every action the palette offers here, once each, only those that can run now."""
        seen: set[str] = set()
        for command in self._palette_candidates(screen):
            if command.title not in seen:
                seen.add(command.title)
                yield command

    def _palette_candidates(self, screen: Screen) -> Iterable[SystemCommand]:
        for command in super().get_system_commands(screen):
            if command.title != "Keys":  # Textual's panel lists widget internals; ? is our help
                yield command
        yield SystemCommand("Help: keys of this screen (?)",
                            "List this screen's keys and the global ones", self.action_help)
        if self.session is None:
            yield SystemCommand("Sessions: new session (n)", "Open the new-session form", self._palette_new)
            return
        from salve_tui.app.screens.dashboard import DashboardScreen

        if not isinstance(screen, DashboardScreen):  # there esc says "Sessions" itself
            yield SystemCommand("Session: back to the sessions list", "Close this session",
                                self.back_to_sessions)
        yield SystemCommand("Pipeline: run all pending stages", "Run or resume the whole pipeline",
                            lambda: self.run_pipeline_job(None, force=False, name="run all"))
        if self.jobs.busy:
            yield SystemCommand("Job: cancel the running job (c)", "Stop at the next safe point",
                                self.action_cancel_job)
        for view in self.views:
            if self.view_missing_stages(view.name):
                continue  # cannot open yet: its stages are not done
            yield SystemCommand(f"Open: {view.title} ({view.key})", view.description or view.title,
                                _opener(self, view.name))
        yield from everywhere_commands(self, screen)
        if isinstance(screen, SalveScreen):
            yield from screen.palette_commands()

    def _palette_new(self) -> None:
        from salve_tui.app.screens.new_session import NewSessionScreen

        self.push_screen(NewSessionScreen())

    def open_view(self, name: str) -> None:
        """Push a registered view if its required stages are done (else say which to run)."""
        view = next((v for v in self.views if v.name == name), None)
        if view is None or self.session is None:
            return
        from core.workflow.pipeline import effective_states, missing_stages

        stages = self.session.stages()  # read once: the key's frame waits for it
        missing = missing_stages(stages, view.requires)
        if missing:
            states = effective_states(stages)
            listed = ", ".join(f"{s} ({states[s]})" for s in missing)
            self.notify(f"{view.title} needs {listed} first: run '{missing[0]}' on the dashboard "
                        "(a runs every pending stage)", severity="warning", timeout=8)
            return
        self.push_screen(view.factory())

    def view_missing_stages(self, name: str) -> list[str]:
        """The stages view ``name`` needs that are not done in the open session."""
        view = next((v for v in self.views if v.name == name), None)
        if view is None or self.session is None:
            return []
        from core.workflow.pipeline import missing_stages

        return missing_stages(self.session.stages(), view.requires)

    async def action_quit(self) -> None:
        """Quit; while a job runs, ask, then cancel it and wait so the session stays resumable."""
        if self._quitting:
            self.notify("still stopping the job…")
            return
        if not self.jobs.busy:
            self.close_session()
            self.exit()
            return
        if isinstance(self.screen, ConfirmModal):
            return
        job = self.jobs.current
        assert job is not None

        def answer(confirmed: bool | None) -> None:
            if confirmed:
                self.run_worker(self._cancel_and_exit(), group="quit")

        self.push_screen(
            ConfirmModal(f"The job '{job.name}' is still running.\nQuit anyway? It stops at its next "
                         "safe point and the session keeps its last checkpoint, so you can resume "
                         "it later.", title="Quit during a job", yes="Stop & quit", no="Keep running"),
            answer,
        )

    async def _cancel_and_exit(self) -> None:
        self._quitting = True
        self.jobs.cancel()
        self.notify("stopping the job at its next safe point, then quitting…", title="quitting")
        await self.jobs.wait()
        self.close_session()
        self.exit()


def _opener(app: SalveApp, view_name: str) -> Callable[[], None]:
    return lambda: app.open_view(view_name)
