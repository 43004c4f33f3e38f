"""What a screen may ask of the app: :class:`SalveHost`.

Screens reach the app through ``SalveScreen.salve`` typed as this protocol, not as the app class:
the app imports the screens (to push them), so a screen importing the app would close an import
loop, even one seen only by the type checker.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from rich.text import Text
    from textual.signal import Signal

    from core.store.session import Session
    from salve_tui.app.collector import QuietCollector
    from salve_tui.app.jobs import Job, JobFn, JobMessage, JobRunner
    from salve_tui.app.preload import SessionAssets


class SalveHost(Protocol):
    """The app's side of the screens' contract (``salve_tui.app.app.SalveApp`` implements it)."""

    sessions_folder: Path
    session: Session | None
    jobs: JobRunner
    job_events: Signal[JobMessage]
    log_events: Signal[Text]
    log_lines: list[Text]
    views: list[Any]  # the registered session views (``screens.base.SessionView``)
    shared: SessionAssets
    collector: QuietCollector

    def start_job(self, name: str, fn: JobFn) -> Job | None: ...

    def run_pipeline_job(self, stages: Sequence[str] | None, force: bool, name: str,
                         diagnostics: bool = False) -> Job | None: ...

    def running_job_lines(self) -> list[list[str]]: ...

    def open_view(self, name: str) -> None: ...

    def open_session(self, path: Path) -> bool: ...

    def adopt_session(self, session: Session) -> None: ...

    def back_to_sessions(self) -> None: ...
