"""Progress reporting and cooperative cancellation shared by every long-running core job.

Core functions take ``progress`` (a callable receiving :class:`Progress`) and ``cancel``
(a :class:`CancelToken`). Neither knows about the UI: the TUI wraps them in worker messages,
the CLI prints a bar. Both are optional so notebook users can ignore them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class JobCancelled(Exception):
    """Raised inside a job when its :class:`CancelToken` was triggered.

    Jobs raise it only at safe points (after the last completed step was committed), so the
    session stays consistent and the job can be resumed.
    """


class JobFailed(Exception):
    """A job stopped for a reason the user must act on (NaN loss, bad input, ...).

    The message names the problem and what to do; saved work is untouched.
    """


@dataclass
class Progress:
    """One progress report: ``done`` of ``total`` units of ``stage``, with optional metrics."""

    stage: str
    done: float
    total: float
    message: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    started_at: float | None = None
    start_done: float = 0.0  # units already done when this run started (resumed work)

    @property
    def fraction(self) -> float:
        return 0.0 if self.total <= 0 else min(1.0, self.done / self.total)

    @property
    def eta_seconds(self) -> float | None:
        """Linear extrapolation at this run's own rate; None until this run has done something.

        Resumed work (``start_done``) took no time in this run, so counting it would make the
        rate look faster than it is (a resume at 58% showed a few seconds for 45 s of work).
        """
        done_now = self.done - self.start_done
        if self.started_at is None or done_now <= 0 or self.total <= 0:
            return None
        elapsed = time.monotonic() - self.started_at
        return elapsed * max(0.0, self.total - self.done) / done_now


ProgressFn = Callable[[Progress], None]


class CancelToken:
    """Thread-safe flag checked by jobs between steps."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def raise_if_cancelled(self) -> None:
        if self._event.is_set():
            raise JobCancelled("cancelled by the user")


class ProgressReporter:
    """Small helper a job uses to emit :class:`Progress` with a shared start time.

    ``report`` is a no-op when no callback was given, so jobs call it unconditionally.
    """

    def __init__(self, stage: str, total: float, progress: ProgressFn | None = None,
                 start: float = 0.0) -> None:
        self.stage = stage
        self.total = total
        self._progress = progress
        self.started_at = time.monotonic()
        self.start = start  # units done by earlier runs (a resume): excluded from the ETA's rate

    def report(self, done: float, message: str = "", **metrics: Any) -> None:
        if self._progress is not None:
            self._progress(
                Progress(self.stage, done, self.total, message, dict(metrics), self.started_at,
                         self.start)
            )


def check_cancel(cancel: CancelToken | None) -> None:
    """Raise :class:`JobCancelled` if ``cancel`` is set; tolerate ``None``."""
    if cancel is not None:
        cancel.raise_if_cancelled()
