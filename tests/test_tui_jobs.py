"""Jobs: progress throttling, one job at a time, cancel → resumable session, quit asks first."""

from __future__ import annotations

import time
from pathlib import Path

from test_tui_helpers import make_session, tiny_config, wait_for

from core.jobs import CancelToken, JobFailed, ProgressFn, ProgressReporter
from core.store.session import Session
from salve_tui.app.app import SalveApp
from salve_tui.app.jobs import JobCancelled, JobFinished, JobMessage, JobProgress
from salve_tui.app.jobs import JobFailed as JobFailedMessage
from salve_tui.app.screens.confirm import ConfirmModal
from salve_tui.app.screens.dashboard import DashboardScreen


class RecordingApp(SalveApp):
    """SalveApp that also records every job message it handles."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.received: list[JobMessage] = []

    def on_mount(self) -> None:
        self.job_events.subscribe(self, self.received.append)


class GatedApp(RecordingApp):
    """Holds the worker inside backbone epoch 2 until the user's cancel arrives.

    Without the gate a tiny model can finish epoch 2 before the key press is handled, so the
    test would race; with it, the job stops exactly where a slow real job would be cancelled.
    """

    gate_after = 10  # progress units (batches) of the backbone stage

    def start_job(self, name, fn):
        def gated(progress: ProgressFn, cancel: CancelToken):
            def report(p):
                progress(p)
                if p.stage == "backbone" and p.done > self.gate_after and not cancel.cancelled:
                    cancel._event.wait(30)

            return fn(report, cancel)

        return super().start_job(name, gated)


def busy_loop(reports: int, sleep: float = 0.0):
    def body(progress: ProgressFn, cancel: CancelToken) -> int:
        reporter = ProgressReporter("loop", reports, progress)
        for i in range(reports):
            cancel.raise_if_cancelled()
            if sleep:
                time.sleep(sleep)
            reporter.report(i + 1, f"step {i + 1}", value=float(i))
        return reports

    return body


async def test_progress_is_throttled_but_keeps_every_metric(tmp_path: Path) -> None:
    app = RecordingApp(sessions_folder=tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        started = time.monotonic()
        job = app.start_job("loop", busy_loop(3000))
        await wait_for(pilot, lambda: any(isinstance(m, JobFinished) for m in app.received), 30)
        elapsed = time.monotonic() - started
        progress = [m for m in app.received if isinstance(m, JobProgress)]
        # ≤ 20 messages/s (+ the first report and the final one are always sent).
        assert len(progress) <= 20 * elapsed + 2, (len(progress), elapsed)
        assert progress[-1].progress.done == 3000  # the end of a stage is never dropped
        assert len(job.metrics["loop"]) == 3000  # curves see every report
        assert [m for m in app.received if isinstance(m, JobFinished)][0].result == 3000


async def test_one_job_at_a_time_and_failures_are_reported(tmp_path: Path) -> None:
    def failing(progress: ProgressFn, cancel: CancelToken) -> None:
        raise JobFailed("loss became NaN; lower the learning rate")

    app = RecordingApp(sessions_folder=tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        first = app.start_job("slow", busy_loop(200, sleep=0.01))
        assert first is not None
        assert app.start_job("second", busy_loop(1)) is None  # refused while one runs
        await pilot.pause()
        assert any("still running" in str(n.message) for n in app._notifications)
        await pilot.press("c")
        await wait_for(pilot, lambda: any(isinstance(m, JobCancelled) for m in app.received), 10)
        app.start_job("failing", failing)
        await wait_for(pilot, lambda: any(isinstance(m, JobFailedMessage) for m in app.received), 10)
        failed = [m for m in app.received if isinstance(m, JobFailedMessage)][0]
        assert failed.error == "loss became NaN; lower the learning rate"
        assert any("lower the learning rate" in str(line) for line in app.log_lines)


async def test_quit_during_a_job_asks_then_cancels_and_releases_the_session(tmp_path: Path) -> None:
    path = make_session(tmp_path, "q")
    app = RecordingApp(sessions_folder=tmp_path, start_session="q")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), 5)
        job = app.start_job("long", busy_loop(100_000, sleep=0.001))
        await pilot.press("q")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmModal)  # asks first
        assert "still running" in app.screen.question
        await pilot.press("n")
        await pilot.pause()
        assert not job.finished and app.is_running  # "keep running" really keeps it
        await pilot.press("q")
        await pilot.pause()
        await pilot.press("y")
        await wait_for(pilot, lambda: not app.is_running, 10, "the app to exit")
    assert job.finished and job.token.cancelled
    assert any(isinstance(m, JobCancelled) for m in app.received)
    Session.open(path).close()  # the writer lock was released


async def test_cancelled_pipeline_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    """Cancel the backbone in epoch 2 of 2: epoch 1 stays committed and a rerun continues from it.

    vit_tiny (a real torchvision VisionTransformer, ~0.1M parameters) keeps checkpoints small, so
    the test is quick; 10 batches per epoch leave ample time to cancel inside epoch 2.
    """
    config = tiny_config("tiny", backbone_epochs=2, n_train=160, n_test=16)
    config.backbone.arch = "vit_tiny"
    path = make_session(tmp_path, "tiny", config)
    app = GatedApp(sessions_folder=tmp_path, start_session="tiny")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), 5)
        await pilot.press("a")  # run all
        await wait_for(pilot, lambda: app.jobs.current is not None, 5)
        job = app.jobs.current
        steps_per_epoch = 10  # 160 images / batch 16
        await wait_for(pilot, lambda: job.latest is not None and job.latest.stage == "backbone"
                       and job.latest.done > steps_per_epoch, 120, "backbone epoch 2")
        await pilot.press("c")
        await wait_for(pilot, lambda: any(isinstance(m, JobCancelled) for m in app.received), 60)
        stages = app.session.stages()
        assert stages["data"].state == "done"
        assert stages["backbone"].state == "partial"
        assert stages["backbone"].info["epoch"] == 1
        assert "cancelled" in str(app.screen.query_one("#job-line").render())
    with Session.open(path, read_only=True) as session:  # the file reopens as it was committed
        assert session.stages()["backbone"].state == "partial"

    app = RecordingApp(sessions_folder=tmp_path, start_session="tiny")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), 5)
        await pilot.press("down", "r")  # run the backbone stage (cursor on row 2)
        await wait_for(pilot, lambda: any(isinstance(m, JobFinished) for m in app.received), 120)
        job = app.jobs.current
        first_report = job.metrics["backbone"][0][0]
        assert first_report == steps_per_epoch + 1  # continued in epoch 2, not from scratch
        stages = app.session.stages()
        assert stages["backbone"].state == "done"
        assert len(app.session.summary()["backbone"]["history"]) == 2
        assert "finished" in str(app.screen.query_one("#job-line").render())
