"""c cancels every session job the TUI starts from its palette, at the job's next unit of work.

The worker is held right after its first reported unit until the cancel arrives (else a job on
the tiny synthetic session could end before the key is handled), then the test counts the units
the job still reported: none. ``bench/bench_cancel.py`` measures the latency in seconds."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_tui_helpers import wait_for

from core.jobs import CancelToken, Progress, ProgressFn
from salve_tui.app.app import SalveApp
from salve_tui.app.jobs import JobCancelled
from salve_tui.app.screens.dashboard import DashboardScreen


class HeldApp(SalveApp):
    """Holds a job's worker after its first unit until the user cancels; records what follows."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.after_cancel: list[Progress] = []
        self.cancelled_jobs: list[str] = []

    def start_job(self, name, fn):  # noqa: ANN001, ANN201
        def held(progress: ProgressFn, cancel: CancelToken):  # noqa: ANN202
            def report(p: Progress) -> None:
                if cancel.cancelled:
                    self.after_cancel.append(p)
                progress(p)
                if p.done > 0 and not cancel.cancelled:
                    cancel._event.wait(60)  # released by the test's c (the wait never expires)

            return fn(report, cancel)

        return super().start_job(name, held)

    def on_job_cancelled(self, message: JobCancelled) -> None:
        self.cancelled_jobs.append(message.job.name)


@pytest.mark.parametrize("command", ["α_crit: compute", "α_crit: Sweeps + α_crit of all dominant",
                                     "SAE-seed robustness: train", "SAE training: search"])
async def test_c_cancels_a_palette_job_at_its_next_unit(synth_session_folder: Path, command: str) -> None:
    app = HeldApp(sessions_folder=synth_session_folder, start_session="synth", clock=lambda: 1_700_000_000.0)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), what="dashboard")
        run = next(c for c in app.get_system_commands(app.screen) if c.title.startswith(command))
        run.callback()
        await wait_for(pilot, lambda: app.jobs.current is not None and app.jobs.current.latest is not None
                       and app.jobs.current.latest.done > 0, what="the job's first unit")
        job = app.jobs.current
        await pilot.press("c")
        await wait_for(pilot, lambda: job.finished and app.cancelled_jobs, what="the cancel")
        assert app.cancelled_jobs == [job.name] and job.token.cancelled
        assert [(p.stage, p.done) for p in app.after_cancel if p.done > 0] == []
