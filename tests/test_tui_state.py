"""State you can trust, the edit stack and the first minute, driven with Pilot on real sessions.

Failures persist (✗ with the message on the dashboard and in the sessions list after reopening,
and in the job log); stages after a partial one read stale and analysis screens say what to run;
rerunning a done stage asks and names what becomes stale; cancel keeps a finished epoch; the ETA
counts only the current run; removing an edit changes what an export writes; identical exports
are reused; the dashboard says where to go next and keeps ``q Quit`` whole at 80 columns.
"""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

import safetensors.torch
import torch
from test_tui_helpers import make_session, tiny_config, wait_for, wait_or_cancelled
from textual.widgets import DataTable, Footer, Static

from core.config import DataConfig
from core.control.edit import replay_linear
from core.jobs import CancelToken, ProgressFn, ProgressReporter
from core.store.joblog import read_job_log
from core.store.session import Session, copy_session
from core.workflow.edits import build_spec, list_edits, record_edit
from core.workflow.inputs import load_inputs
from salve_tui.app.app import SalveApp
from salve_tui.app.jobs import JobCancelled, JobFailed, JobFinished, JobMessage
from salve_tui.app.screens.analysis_edits import EditStackScreen
from salve_tui.app.screens.analysis_exports import ExportsScreen
from salve_tui.app.screens.analysis_log import JobLogScreen
from salve_tui.app.screens.confirm import ConfirmModal
from salve_tui.app.screens.dashboard import DashboardScreen
from salve_tui.app.screens.sessions import SessionsScreen

SIZE = (80, 24)


class RecordingApp(SalveApp):
    """SalveApp that also records every job message it handles."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.received: list[JobMessage] = []

    def on_mount(self) -> None:
        self.job_events.subscribe(self, self.received.append)

    def ended(self, kind: type = (JobFinished, JobFailed, JobCancelled)) -> list[JobMessage]:  # type: ignore[assignment]
        return [m for m in self.received if isinstance(m, kind)]


def stage_cells(screen: DashboardScreen, stage: str) -> tuple[str, str]:
    table = screen.query_one("#stages", DataTable)
    return str(table.get_cell(stage, "state")), str(table.get_cell(stage, "detail"))


def copy_built(built: Path, folder: Path, name: str = "tiny") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.h5"
    copy_session(built, path)
    return path


async def open_dashboard(app: SalveApp, pilot) -> DashboardScreen:  # noqa: ANN001
    await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), 10, "the dashboard")
    await pilot.pause()
    return app.screen  # type: ignore[return-value]


# --------------------------------------------------------------------------- failures, stale, rerun


async def test_failed_stage_is_still_shown_after_reopening(tmp_path: Path) -> None:
    config = tiny_config("broken")
    config.data = DataConfig(kind="imagefolder", path=str(tmp_path / "nowhere"), image_size=32)
    make_session(tmp_path, "broken", config)
    app = RecordingApp(sessions_folder=tmp_path, start_session="broken")
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_dashboard(app, pilot)
        await pilot.press("a")
        await wait_for(pilot, lambda: app.ended(JobFailed), 60, "the data stage to fail")
        await pilot.pause()
        state, detail = stage_cells(screen, "data")
        assert state == "✗ failed" and "nowhere" in detail
    with Session.open(tmp_path / "broken.h5", read_only=True) as session:
        assert session.stages()["data"].state == "failed"
    [entry] = read_job_log(tmp_path / "broken.h5")
    assert entry["status"] == "failed" and "nowhere" in entry["error"]

    app = RecordingApp(sessions_folder=tmp_path)  # a fresh app: the sessions list first
    async with app.run_test(size=SIZE) as pilot:
        app.push_screen(SessionsScreen())
        await pilot.pause()
        detail = str(app.screen.query_one("#session-detail", Static).render())
        assert "✗ data failed:" in detail and "nowhere" in detail
        await pilot.press("enter")
        screen = await open_dashboard(app, pilot)
        state, detail = stage_cells(screen, "data")
        assert state == "✗ failed" and "nowhere" in detail
        next_step = str(screen.query_one("#next-step", Static).render())
        assert "✗ 'data' failed:" in next_step and "nowhere" in next_step  # the whole message
        await pilot.press("l")  # the job log keeps the failure across restarts
        await wait_for(pilot, lambda: isinstance(app.screen, JobLogScreen) and app.screen.loaded, 5)
        lines = "\n".join(line.text for line in app.screen.query_one("#joblog").lines)
        # a long temporary path wraps (its length depends on the machine): read it unwrapped
        assert "run all failed" in lines and "nowhere" in lines.replace("\n", "")


async def test_partial_upstream_makes_later_stages_stale_and_screens_say_what_to_run(
        tmp_path: Path, built_session_path: Path) -> None:
    path = copy_built(built_session_path, tmp_path)
    with Session.open(path) as session, session.transaction() as tx:  # a killed rerun's state
        tx.set_stage("activations", "partial", "train: 40/80 rows")
    app = RecordingApp(sessions_folder=tmp_path, start_session="tiny")
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_dashboard(app, pilot)
        assert stage_cells(screen, "sae")[0] == "~ stale"
        assert "'activations' is partial" in stage_cells(screen, "sae")[1]
        assert stage_cells(screen, "rankings")[0] == "~ stale"
        await pilot.press("e")  # the edit preview would wait on activations: it says so instead
        await pilot.pause()
        assert isinstance(app.screen, DashboardScreen)
        notes = [str(n.message) for n in app._notifications]
        assert any("activations (partial)" in n and "run 'activations'" in n for n in notes), notes


async def test_rerun_of_a_done_stage_asks_and_names_what_becomes_stale(
        tmp_path: Path, built_session_path: Path) -> None:
    path = copy_built(built_session_path, tmp_path)
    app = RecordingApp(sessions_folder=tmp_path, start_session="tiny")
    async with app.run_test(size=SIZE) as pilot:
        await open_dashboard(app, pilot)
        await pilot.press("down", "down", "down", "f")  # the SAE row
        await pilot.pause()
        assert isinstance(app.screen, ConfirmModal)
        assert "rankings will become stale" in app.screen.question
        await pilot.press("n")
        await pilot.pause()
        assert app.jobs.current is None  # "keep" started nothing
        await pilot.press("f")
        await pilot.pause()
        await pilot.press("y")
        await wait_for(pilot, lambda: app.ended(), 120, "the SAE rerun")
        assert app.ended(JobFinished)
        stages = app.session.stages()
        assert stages["sae"].state == "done" and stages["rankings"].state == "stale"
    with Session.open(path, read_only=True) as session:
        assert "was rerun" in session.stages()["rankings"].message


class GatedApp(RecordingApp):
    """Holds the backbone at the last batch of epoch 2 until the user's cancel arrives."""

    gate_at = 20  # batches: 160 images / batch 16 = 10 per epoch

    def start_job(self, name, fn):  # noqa: ANN001, ANN201
        def gated(progress: ProgressFn, cancel: CancelToken):  # noqa: ANN202
            def report(p) -> None:  # noqa: ANN001
                progress(p)
                if p.stage == "backbone" and p.done == self.gate_at and not cancel.cancelled:
                    cancel._event.wait(30)

            return fn(report, cancel)

        return super().start_job(name, gated)


async def test_cancel_keeps_the_epoch_that_finished_and_the_resume_eta_counts_this_run(
        tmp_path: Path) -> None:
    """Cancel on the last batch of epoch 2 of 3: epoch 2 is committed (it used to be dropped
    while its evaluation ran); the resumed run reports epoch 3 with epochs 1–2 as resumed work."""
    config = tiny_config("tiny", backbone_epochs=3, n_train=160, n_test=16)
    config.backbone.arch = "vit_tiny"
    make_session(tmp_path, "tiny", config)
    app = GatedApp(sessions_folder=tmp_path, start_session="tiny")
    async with app.run_test(size=SIZE) as pilot:
        await open_dashboard(app, pilot)
        await pilot.press("a")
        await wait_for(pilot, lambda: app.jobs.current is not None and app.jobs.current.latest is not None
                       and app.jobs.current.latest.stage == "backbone"
                       and app.jobs.current.latest.done >= GatedApp.gate_at, 120, "epoch 2's last batch")
        await pilot.press("c")
        await wait_for(pilot, lambda: app.ended(), 60, "the cancel")
        assert app.ended(JobCancelled)
        backbone = app.session.stages()["backbone"]
        assert backbone.state == "partial" and backbone.info["epoch"] == 2

    app = RecordingApp(sessions_folder=tmp_path, start_session="tiny")
    async with app.run_test(size=SIZE) as pilot:
        await open_dashboard(app, pilot)
        await pilot.press("down", "r")
        await wait_for(pilot, lambda: app.ended(), 120, "the resumed backbone")
        job = app.jobs.current
        first_done = job.metrics["backbone"][0][0]
        assert first_done == 21  # continued in epoch 3
        assert app.session.stages()["backbone"].state == "done"


async def test_eta_after_a_resume_uses_the_rate_of_this_run(tmp_path: Path) -> None:
    """58 of 100 units were done by an earlier run; this run did 2 in 2 s: 42 left → ~42 s
    (counting the resumed 58 gave '60% ETA 1s')."""
    make_session(tmp_path, "eta")
    release = threading.Event()

    def resumed(progress: ProgressFn, cancel: CancelToken) -> None:
        reporter = ProgressReporter("sae", 100, progress, start=58)
        reporter.started_at -= 2.0  # this run has been going for two seconds
        reporter.report(60, "epoch 60/100")
        wait_or_cancelled(release, cancel)

    app = RecordingApp(sessions_folder=tmp_path, start_session="eta")
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_dashboard(app, pilot)
        app.start_job("sae", resumed)
        line = screen.query_one("#job-line", Static)
        await wait_for(pilot, lambda: "ETA" in str(line.render()), 10, "the progress line")
        text = str(line.render())
        release.set()
        await wait_for(pilot, lambda: app.ended(), 10)
    seconds = int(re.search(r"ETA (\d+)s", text).group(1))
    assert 40 <= seconds <= 44, text


# --------------------------------------------------------------------------- the edit stack


def replayed_head(session: Session, edits) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: ANN001
    x = load_inputs(session)
    layer = torch.nn.Linear(x.W.shape[1], x.W.shape[0])
    with torch.no_grad():
        layer.weight.copy_(x.W)
        layer.bias.copy_(x.b)
    edited = replay_linear(layer, x.D, edits)
    return edited.weight.detach(), edited.bias.detach()


def exported_head(result) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: ANN001
    st = next(p for p in result.files if p.suffix == ".safetensors")
    state = safetensors.torch.load_file(str(st))
    return state["fc.weight"], state["fc.bias"]


async def test_edit_removal_changes_what_export_writes(tmp_path: Path, built_session_path: Path,
                                                       monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = copy_built(built_session_path, tmp_path / "sessions")
    with Session.open(path) as session:
        x = load_inputs(session)
        first = build_spec(x, target_class=0, alpha=4.0)
        second = build_spec(x, "steer", target_class=1, alpha=0.5)
        record_edit(session, first)
        record_edit(session, second)
    app = RecordingApp(sessions_folder=path.parent, start_session="tiny")
    async with app.run_test(size=SIZE) as pilot:
        await open_dashboard(app, pilot)
        await pilot.press("s")
        await wait_for(pilot, lambda: isinstance(app.screen, EditStackScreen) and app.screen.stack is not None,
                       30, "the edit stack")
        screen = app.screen
        assert screen.query_one(DataTable).row_count == 2
        assert "composition #1+#2" in str(screen.query_one("#stack-composition", Static).render())

        async def run(key: str, count: int) -> JobMessage:
            await pilot.press(key)
            await wait_for(pilot, lambda: len(app.ended()) >= count, 60, f"the job of '{key}'")
            await pilot.pause(0.3)
            return app.ended()[-1]

        both = (await run("w", 1)).result
        assert not both.reused
        assert [e["method"] for e in both.metadata["edits"]] == ["salve", "steer"]
        session = app.session
        assert all(torch.equal(a, b) for a, b in zip(exported_head(both), replayed_head(session, [first, second]), strict=True))

        await run("d", 2)  # the cursor is on #1: the SALVE edit goes
        await wait_for(pilot, lambda: screen.stack is not None and len(screen.stack.rows) == 1, 30)
        assert list_edits(session) == [second]
        only = (await run("w", 3)).result
        assert only.files != both.files
        assert [e["method"] for e in json.loads(only.sidecar.read_text())["edits"]] == ["steer"]
        assert all(torch.equal(a, b) for a, b in zip(exported_head(only), replayed_head(session, [second]), strict=True))
        files_before = sorted(p.name for p in session.exports_dir.iterdir())
        again = (await run("w", 4)).result
        assert again.reused and again.files == only.files
        assert sorted(p.name for p in session.exports_dir.iterdir()) == files_before
        assert "reused" in str(screen.query_one("#stack-status", Static).render())

        await run("u", 5)  # undo the removal: both edits are back, as recorded
        await wait_for(pilot, lambda: screen.stack is not None and len(screen.stack.rows) == 2, 30)
        assert list_edits(session) == [first, second]
        await pilot.press("v", "down", "v")  # compare #1 and #2 side by side
        await pilot.pause(0.3)
        compare = app.screen
        assert compare.query_one(DataTable).row_count == x.num_classes
        assert "#1" in str(compare.query_one("#stack-status", Static).render())
        await pilot.press("escape", "escape", "x")  # the exports screen shows the folder's size
        await wait_for(pilot, lambda: isinstance(app.screen, ExportsScreen), 10)
        await pilot.pause(0.3)
        folder_line = str(app.screen.query_one("#exports-folder", Static).render())
        assert re.search(r"\d+ files, \d+(\.\d)? MB", folder_line), folder_line


# --------------------------------------------------------------------------- the first minute


async def test_finished_build_says_where_to_go_next_and_the_footer_keeps_quit(
        tmp_path: Path, built_session_path: Path) -> None:
    copy_built(built_session_path, tmp_path)
    app = RecordingApp(sessions_folder=tmp_path, start_session="tiny")
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_dashboard(app, pilot)
        next_step = str(screen.query_one("#next-step", Static).render())
        assert "m shows the features each class uses" in next_step and "e suppresses one" in next_step
        footer = screen.query_one(Footer)
        await pilot.pause()
        keys = {key.key: key for key in footer.query("FooterKey")}
        quit_key = keys["q"]
        assert quit_key.description == "Quit"
        assert quit_key.region.right <= SIZE[0]  # drawn whole inside 80 columns


async def test_tui_build_records_what_every_screen_shows(tmp_path: Path) -> None:
    """``salve-tui NAME --build`` (``make demo`` in a terminal) runs the pipeline and then α_crit
    for every class and the Shapes ground truth, as ``salve demo`` does; then says what's next."""
    make_session(tmp_path, "fresh", tiny_config("fresh", sae_epochs=4))
    app = RecordingApp(sessions_folder=tmp_path, start_session="fresh", build=True)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_dashboard(app, pilot)
        await wait_for(pilot, lambda: app.ended(), 300, "the build")
        assert app.ended(JobFinished), [getattr(m, "error", "") for m in app.ended()]
        session = app.session
        names = session.read_json("class_names")
        crit = session.summary()["alpha_crit"]["suppress-linear"]
        present = {names[c] for c in set(session.read_array("activations/test/labels").tolist())}
        assert set(crit) == present  # every class with test samples
        assert session.has("groundtruth/results")
        await pilot.pause(0.3)
        assert "ready:" in str(screen.query_one("#next-step", Static).render())
