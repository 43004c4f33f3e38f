"""Background jobs: one core call at a time in a thread worker, reported back as Textual messages.

Why a thread: the core is synchronous torch code that releases the GIL in its kernels, so a
thread keeps the event loop (and key handling) responsive without pickling sessions into a
subprocess. The worker never touches widgets: it only posts messages, which the app turns into
UI updates on its own thread. Cancellation is cooperative: the core checks the
:class:`~core.jobs.CancelToken` at safe points (after committing a checkpoint), so a cancelled job
leaves a consistent, resumable session.

Only one job runs at a time: every pipeline job writes the open session, and the session allows
a single writer.
"""

from __future__ import annotations

import functools
import itertools
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from textual.message import Message
from textual.worker import Worker, active_worker

from core.jobs import CancelToken, Progress, ProgressFn
from core.jobs import JobCancelled as CoreJobCancelled
from core.jobs import JobFailed as CoreJobFailed

if TYPE_CHECKING:
    from textual.app import App

JobFn = Callable[[ProgressFn, CancelToken], Any]
"""A job body: receives the progress callback and the cancel token, returns a result."""

PROGRESS_MIN_INTERVAL_S = 0.05  # at most 20 progress messages per second reach the UI

_job_ids = itertools.count(1)


def releasing_thread_context(work: Callable[..., Any]) -> Callable[..., Any]:
    """``work`` for a thread worker, clearing Textual's ``active_worker`` when it returns.

    Textual sets that context variable in the executor thread's own context (``run_in_executor``
    copies none), where it stays until the thread runs another worker: the finished worker,
    its node and so a closed screen stayed alive (and were frozen by the idle collector).
    """
    @functools.wraps(work)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return work(*args, **kwargs)
        finally:
            active_worker.set(None)  # type: ignore[arg-type]

    return run


class JobBusy(RuntimeError):
    """A job is already running; the session has a single writer."""


@dataclass
class Job:
    """A running (or finished) job as the UI sees it."""

    name: str
    token: CancelToken = field(default_factory=CancelToken)
    id: int = field(default_factory=lambda: next(_job_ids))
    started_at: float = field(default_factory=time.monotonic)
    latest: Progress | None = None
    # Every metrics report per stage, so curves stay complete even when messages are throttled.
    metrics: dict[str, list[tuple[float, dict[str, Any]]]] = field(default_factory=dict)
    finished: bool = False
    worker: Worker | None = None

    @property
    def cancelling(self) -> bool:
        return self.token.cancelled and not self.finished

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started_at


# --------------------------------------------------------------------------- messages


class JobMessage(Message):
    """Base of every job message; ``job`` identifies which job it is about."""

    def __init__(self, job: Job) -> None:
        super().__init__()
        self.job = job


class JobStarted(JobMessage):
    """The worker picked the job up."""


class JobProgress(JobMessage):
    """A (throttled) progress report from the core."""

    def __init__(self, job: Job, progress: Progress) -> None:
        super().__init__(job)
        self.progress = progress


class JobFinished(JobMessage):
    """The job completed; ``result`` is what the job function returned."""

    def __init__(self, job: Job, result: Any) -> None:
        super().__init__(job)
        self.result = result


class JobFailed(JobMessage):
    """The job stopped with an error; ``error`` is the message to show the user."""

    def __init__(self, job: Job, error: str, details: str = "") -> None:
        super().__init__(job)
        self.error = error
        self.details = details


class JobCancelled(JobMessage):
    """The job stopped at a safe point after the user cancelled it."""


JOB_END_MESSAGES = (JobFinished, JobFailed, JobCancelled)


# --------------------------------------------------------------------------- runner


def error_text(exc: BaseException) -> str:
    """User-facing text for an exception (KeyError's repr quoting is dropped)."""
    if isinstance(exc, KeyError) and exc.args:
        return str(exc.args[0])
    from salve_tui.app.format import tui_words

    return tui_words(str(exc) or type(exc).__name__)


class JobRunner:
    """Starts jobs in thread workers of ``app`` and posts their messages to it."""

    def __init__(self, app: App, min_interval: float = PROGRESS_MIN_INTERVAL_S) -> None:
        self._app = app
        self._min_interval = min_interval
        self.current: Job | None = None

    @property
    def busy(self) -> bool:
        return self.current is not None and not self.current.finished

    def start(self, name: str, fn: JobFn) -> Job:
        """Run ``fn(progress, cancel)`` in a thread worker; raises :class:`JobBusy` if one runs."""
        if self.busy:
            assert self.current is not None
            raise JobBusy(
                f"'{self.current.name}' is still running; wait for it or cancel it (c) first"
            )
        job = Job(name)
        self.current = job
        job.worker = self._app.run_worker(
            lambda: self._body(job, fn),
            name=f"job:{name}",
            group="salve-job",
            thread=True,
            exit_on_error=False,
        )
        return job

    def cancel(self) -> bool:
        """Ask the running job to stop at its next safe point; False when nothing runs."""
        if not self.busy:
            return False
        assert self.current is not None
        self.current.token.cancel()
        return True

    async def wait(self) -> None:
        """Wait until the current job's worker has returned (used before quitting)."""
        job = self.current
        if job is not None and job.worker is not None:
            await job.worker.wait()

    # ----- worker thread side

    def _progress_callback(self, job: Job) -> ProgressFn:
        last_post = 0.0
        last_stage = ""

        def report(progress: Progress) -> None:
            nonlocal last_post, last_stage
            job.latest = progress
            if progress.metrics:
                job.metrics.setdefault(progress.stage, []).append((progress.done, dict(progress.metrics)))
            now = time.monotonic()
            stage_changed = progress.stage != last_stage
            finished = progress.total > 0 and progress.done >= progress.total
            if stage_changed or finished or now - last_post >= self._min_interval:
                last_post, last_stage = now, progress.stage
                self._app.post_message(JobProgress(job, progress))

        return report

    def _body(self, job: Job, fn: JobFn) -> None:
        post = self._app.post_message
        post(JobStarted(job))
        try:
            result = fn(self._progress_callback(job), job.token)
        except CoreJobCancelled:
            job.finished = True
            post(JobCancelled(job))
        except CoreJobFailed as exc:
            job.finished = True
            post(JobFailed(job, error_text(exc)))
        except Exception as exc:  # anything else is still reported, never a crashed UI
            job.finished = True
            post(JobFailed(job, error_text(exc), traceback.format_exc()))
        else:
            job.finished = True
            post(JobFinished(job, result))
