"""Instant screens and the conventions of well-kept Textual apps, driven with Pilot.

* every analysis screen paints its loading notice (saying what it loads) before its ``load()``
  worker returns, keys act on that screen meanwhile, and the content replaces the notice;
* the session's shared items are loaded once in the background and reloaded when a stage changes;
* footers fit 80 columns idle and while a job runs; ``?`` lists the screen's and the global keys,
  not widget internals; the palette has no duplicates, finds words of descriptions ("alpha",
  "export") and leaves out what cannot run (Cancel with no job);
* ``esc`` on a filled new-session form asks first; the name field accepts what its hint says.

Loads are gated with a :class:`threading.Event` wrapped around the screen's real ``load()``, so
the loading state is observed deterministically, not by racing a timer.
"""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from test_tui_analysis import synth_app
from test_tui_helpers import (
    FIXED_TIME,
    held_job,
    line_with,
    make_session,
    screen_text,
    wait_for,
    wait_or_cancelled,
)
from textual.widgets import Footer, Input, Static
from textual.widgets._footer import FooterKey

from core.store.session import Session, copy_session
from core.workflow.feature_card import split_latents
from core.workflow.inputs import load_inputs
from salve_tui.app.app import SalveApp
from salve_tui.app.palette import matches_every_word, searchable
from salve_tui.app.preload import SessionAssets
from salve_tui.app.screens.analysis_alpha_crit import AlphaCritScreen
from salve_tui.app.screens.analysis_edit import EditPreviewScreen
from salve_tui.app.screens.analysis_exports import ExportsScreen, format_size, list_exports
from salve_tui.app.screens.analysis_feature import FeatureDetailScreen
from salve_tui.app.screens.analysis_matrix import MatrixScreen
from salve_tui.app.screens.base import LoadingNotice, SessionScreen
from salve_tui.app.screens.confirm import ConfirmModal
from salve_tui.app.screens.dashboard import DashboardScreen
from salve_tui.app.screens.help import HelpScreen, binding_rows
from salve_tui.app.screens.new_session import NewSessionScreen, name_problem, validate_form
from salve_tui.app.screens.sae_training import SAETrainingScreen
from salve_tui.app.screens.sessions import SessionsScreen

SIZE = (80, 24)
VIEW_KEYS = {"m": MatrixScreen, "e": EditPreviewScreen, "k": AlphaCritScreen, "x": ExportsScreen,
             "t": SAETrainingScreen}


@pytest.fixture
def synth_folder(synth_session_folder: Path) -> Path:
    return synth_session_folder  # conftest: the synthetic session in sessions/


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """``gate_load(cls)`` makes ``cls.load`` wait for the event; set on teardown at the latest."""
    event = threading.Event()
    yield event
    event.set()


def gate_load(monkeypatch: pytest.MonkeyPatch, cls: type[SessionScreen], event: threading.Event) -> None:
    real = cls.load

    def gated(self):  # noqa: ANN001, ANN202
        if not wait_or_cancelled(event):
            return None  # the app closed before the test opened the gate
        return real(self)

    monkeypatch.setattr(cls, "load", gated)


async def open_dashboard(pilot) -> None:  # noqa: ANN001
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, DashboardScreen), what="dashboard")


def notice_text(screen: SessionScreen) -> str:
    return str(screen.query_one(LoadingNotice).render())


# --------------------------------------------------------------------------- instant screens


@pytest.mark.parametrize(("key", "cls", "what"), [
    ("m", MatrixScreen, "loading the feature–class matrix"),
    ("e", EditPreviewScreen, "loading the control inputs"),
    ("k", AlphaCritScreen, "loading the α_crit results"),
    ("x", ExportsScreen, "loading the list of exported files"),
    ("t", SAETrainingScreen, "loading the SAE training history"),
])
async def test_screen_paints_its_loading_state_before_the_worker_returns(
        synth_folder: Path, monkeypatch: pytest.MonkeyPatch, gate: threading.Event, key: str,
        cls: type[SessionScreen], what: str) -> None:
    gate_load(monkeypatch, cls, gate)
    app = synth_app(synth_folder)
    async with app.run_test(size=SIZE) as pilot:
        await open_dashboard(pilot)
        await pilot.press(key)
        await wait_for(pilot, lambda: isinstance(app.screen, cls), what=cls.__name__)
        screen = app.screen
        await pilot.pause(0.2)
        assert not screen.loaded
        notice = screen.query_one(LoadingNotice)
        assert notice.display and notice.region.height > 0  # laid out, on screen
        assert what in notice_text(screen)
        gate.set()
        await wait_for(pilot, lambda: screen.loaded, what="content")
        assert not screen.query_one(LoadingNotice).display


async def test_keys_during_a_load_act_on_that_screen(synth_folder: Path, monkeypatch: pytest.MonkeyPatch,
                                                     gate: threading.Event) -> None:
    """Content keys wait (greyed), esc leaves at once; the late result lands nowhere."""
    gate_load(monkeypatch, MatrixScreen, gate)
    app = synth_app(synth_folder)
    async with app.run_test(size=SIZE) as pilot:
        await open_dashboard(pilot)
        await pilot.press("m")
        await wait_for(pilot, lambda: isinstance(app.screen, MatrixScreen), what="matrix")
        matrix = app.screen
        await pilot.press("e", "enter", "n")  # need the matrix: nothing happens, nothing is queued
        assert app.screen is matrix and matrix.normalisation == "class"
        footer_keys = {k.key: k for k in matrix.query_one(Footer).query(FooterKey)}
        assert footer_keys["e"].has_class("-disabled")  # greyed while loading
        await pilot.press("escape")
        assert isinstance(app.screen, DashboardScreen)
        gate.set()
        await pilot.pause(0.3)
        assert isinstance(app.screen, DashboardScreen)  # no key landed on the next screen
        await pilot.press("m")
        await wait_for(pilot, lambda: isinstance(app.screen, MatrixScreen) and app.screen.loaded,
                       what="matrix content")
        await pilot.press("n")
        assert app.screen.normalisation == "feature"


async def test_load_failure_is_shown_in_place_of_the_content(synth_folder: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self):  # noqa: ANN001, ANN202
        raise ValueError("rankings/class_means is missing")

    monkeypatch.setattr(MatrixScreen, "load", broken)
    app = synth_app(synth_folder)
    async with app.run_test(size=SIZE) as pilot:
        await open_dashboard(pilot)
        await pilot.press("m")
        await wait_for(pilot, lambda: isinstance(app.screen, MatrixScreen) and app.screen.load_error,
                       what="failure")
        text = notice_text(app.screen)
        assert "could not load the feature–class matrix" in text and "class_means is missing" in text


async def test_feature_card_stays_on_the_feature_asked_for(tmp_path: Path, built_session_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """> > pressed quickly: the card ends on the feature asked for, not a stale result."""
    monkeypatch.setenv("SALVE_TUI_IMAGES", "halfblock")
    folder = tmp_path / "sessions"
    folder.mkdir()
    copy_session(built_session_path, folder / "tiny.h5")
    app = SalveApp(sessions_folder=folder, start_session="tiny", clock=lambda: FIXED_TIME)
    async with app.run_test(size=SIZE) as pilot:
        await open_dashboard(pilot)
        app.push_screen(FeatureDetailScreen(3, selected_class=1))
        await wait_for(pilot, lambda: isinstance(app.screen, FeatureDetailScreen) and app.screen.card is not None,
                       what="feature")
        screen = app.screen
        assert not screen.load_error
        await pilot.press("greater_than_sign", "greater_than_sign")
        await wait_for(pilot, lambda: screen.card is not None and screen.card.feature == 5, what="feature 5")
        await pilot.pause(0.3)
        assert screen.feature == 5 == screen.card.feature


# --------------------------------------------------------------------------- shared preloading


def test_shared_item_is_loaded_once_and_waited_for(tmp_path: Path) -> None:
    """A screen asking while the preloader loads waits for it; nobody loads the item twice."""
    path = make_session(tmp_path, "s")
    started, release = threading.Event(), threading.Event()
    calls: list[int] = []

    def slow(session):  # noqa: ANN001, ANN202
        calls.append(1)
        started.set()
        assert release.wait(10)
        return object()

    shared = SessionAssets({"inputs": slow})
    with Session.open(path, read_only=True) as session:
        preloader = threading.Thread(target=shared.begin(session))
        preloader.start()
        assert started.wait(10)
        results: list[object] = []
        reader = threading.Thread(target=lambda: results.append(shared.get("inputs")))
        reader.start()
        reader.join(0.2)
        assert reader.is_alive() and not results  # waiting, not loading a second copy
        release.set()
        reader.join(10)
        preloader.join(10)
        assert len(calls) == 1 and results[0] is shared.get("inputs")
        assert shared.status() == {"inputs": "ready"}


async def test_closed_screens_are_freed_without_waiting_for_a_job(synth_folder: Path) -> None:
    """Opening and closing screens between two jobs must not keep them all alive (the job-events
    subscription held each one until the next job's message)."""
    app = synth_app(synth_folder)
    async with app.run_test(size=SIZE) as pilot:
        await open_dashboard(pilot)
        for _ in range(8):
            await pilot.press("x")
            await wait_for(pilot, lambda: isinstance(app.screen, ExportsScreen) and app.screen.loaded)
            await pilot.press("escape")
            await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), what="back")
        await pilot.pause(0.2)
        gc.collect()
        alive = [o for o in gc.get_objects() if isinstance(o, ExportsScreen)]
        # the last one used to stay alive: Textual's executor thread kept its finished load
        # worker in a context variable until the thread's next worker
        assert not alive, f"{len(alive)} of 8 closed exports screens still alive"


async def test_closed_screens_leave_no_header_plot_or_footer_keys_behind(synth_folder: Path) -> None:
    """Textual's Header (app title watchers), PlotextPlot (theme signal) and Footer (each
    recompose's keys bound to the footer) kept every closed screen's widgets alive: full
    collections grew with them and stalled screen opens."""
    app = synth_app(synth_folder)
    async with app.run_test(size=SIZE) as pilot:
        await open_dashboard(pilot)
        opens = 6
        for _ in range(opens):
            await pilot.press("e")
            await wait_for(pilot, lambda: isinstance(app.screen, EditPreviewScreen) and app.screen.loaded,
                           timeout=60)
            await wait_for(pilot, lambda: bool(app.screen.query("PlotextPlot")), what="the curve plot")
            await pilot.press("escape")
            await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), what="back")
        await pilot.pause(0.3)
        gc.collect()
        from textual.widget import Widget
        from textual.widgets import Header
        from textual_plotext import PlotextPlot

        detached = [o for o in gc.get_objects() if isinstance(o, Widget) and not o.is_attached]
        headers = sum(isinstance(w, Header) for w in detached)
        plots = sum(isinstance(w, PlotextPlot) for w in detached)
        keys = sum(isinstance(w, FooterKey) for w in detached)
        live_keys = len(app.screen.query(FooterKey))
        # the last screen or two may still be held by their finished load worker
        assert headers <= 2, f"{headers} headers of {opens} closed screens still alive"
        assert plots <= 2, f"{plots} plots of {opens} closed screens still alive"
        assert keys <= 2 * live_keys + 2 * 20, f"{keys} footer keys detached ({live_keys} shown)"


async def test_session_items_preload_in_the_background_and_reload_after_a_stage_change(
        synth_folder: Path) -> None:
    app = synth_app(synth_folder)
    async with app.run_test(size=SIZE) as pilot:
        await open_dashboard(pilot)
        await wait_for(pilot, lambda: app.shared.finished, timeout=60, what="background load")
        status = app.shared.status()
        assert status["inputs"] == status["card_inputs"] == status["thumbnails"] == "ready"
        inputs = app.shared.get("inputs")
        assert inputs is load_inputs(app.session)  # the core's cached object, not a copy
        data = app.session.config.data
        assert app.shared.get("thumbnails").shape == (data.n_test, data.image_size, data.image_size, 3)
        card_inputs = app.shared.get("card_inputs")
        np.testing.assert_array_equal(card_inputs.latents, split_latents(app.session, "test"))
        assert gc.get_freeze_count() > 0  # the loaded heap is out of the collector's full scans
        generation = app.shared.generation

        def rerun_rankings(progress, cancel):  # noqa: ANN001, ANN202 (a job that changes a stage)
            with app.session.transaction() as tx:
                tx.set_stage("rankings", "done", "recomputed")

        app.start_job("rerun rankings", rerun_rankings)
        await wait_for(pilot, lambda: app.shared.generation > generation, what="invalidation")
        await wait_for(pilot, lambda: app.shared.finished, timeout=60, what="reload")
        assert app.shared.get("inputs") is not inputs
    assert gc.get_freeze_count() == 0  # handed back when the app ends (tests run many apps)


async def test_open_screen_says_it_is_out_of_date_when_a_rerun_leaves_a_stage_undone(
        synth_folder: Path) -> None:
    app = synth_app(synth_folder)
    async with app.run_test(size=SIZE) as pilot:
        await open_dashboard(pilot)
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, EditPreviewScreen) and app.screen.loaded)
        edit = app.screen

        def interrupted_rerun(progress, cancel):  # noqa: ANN001, ANN202 (a stage left partial)
            with app.session.transaction() as tx:
                tx.set_stage("rankings", "partial", "interrupted")

        app.start_job("rerun rankings", interrupted_rerun)
        await wait_for(pilot, lambda: edit.load_error, what="failed reload")
        notice = edit.query_one(LoadingNotice)
        assert notice.display and notice.has_class("-error")
        text = notice_text(edit)
        assert text.startswith("out of date") and "'rankings' stage done" in text and "partial" in text


# --------------------------------------------------------------------------- footers and help


def rendered_text(widget: Static) -> str:
    """The plain text of a Static holding any Rich renderable (a table here)."""
    from rich.console import Console

    console = Console(width=80, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    console.print(widget.content)
    return console.export_text()


def footer_overflow(screen) -> list[str]:  # noqa: ANN001
    """Footer keys that are cut: past 80 columns or under the palette key docked at the right."""
    keys = list(screen.query_one(Footer).query(FooterKey))
    palette = [k for k in keys if k.action == "command_palette"]
    limit = palette[0].region.x if palette else screen.size.width
    return [f"{k.key_display} {k.description}" for k in keys
            if k not in palette and (k.region.right > limit or k.region.width < len(k.description))]


@pytest.mark.parametrize("busy", [False, True], ids=["idle", "job-running"])
async def test_every_footer_fits_80_columns(synth_folder: Path, busy: bool) -> None:
    stop = threading.Event()
    app = synth_app(synth_folder)
    async with app.run_test(size=SIZE) as pilot:
        await open_dashboard(pilot)
        if busy:
            app.start_job("wait", held_job(stop))
            await wait_for(pilot, lambda: app.jobs.busy, what="job")
        try:
            for key, cls in VIEW_KEYS.items():
                await pilot.press(key)
                await wait_for(pilot, lambda cls=cls: isinstance(app.screen, cls) and app.screen.loaded,
                               what=cls.__name__)
                await pilot.pause(0.1)
                keys = [k.key for k in app.screen.query_one(Footer).query(FooterKey)]
                assert ("c" in keys) == busy  # Cancel only while a job runs
                assert footer_overflow(app.screen) == [], cls.__name__
                await pilot.press("escape")
                await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen))
            await pilot.press("m")  # the feature card opens from the matrix
            await wait_for(pilot, lambda: isinstance(app.screen, MatrixScreen) and app.screen.loaded)
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, FeatureDetailScreen))
            await pilot.pause(0.2)
            assert footer_overflow(app.screen) == [], "FeatureDetailScreen"
        finally:
            stop.set()


async def test_help_lists_this_screens_keys_and_the_global_ones(synth_folder: Path) -> None:
    app = synth_app(synth_folder)
    async with app.run_test(size=SIZE) as pilot:
        await open_dashboard(pilot)
        await pilot.press("k")
        await wait_for(pilot, lambda: isinstance(app.screen, AlphaCritScreen) and app.screen.loaded)
        crit = app.screen
        own = dict(binding_rows(crit, "screen"))
        everywhere = dict(binding_rows(crit, "global"))
        # Keys hidden from the footer to fit 80 columns are still listed.
        assert own["i"] == "Invert" and own["o"] == "Modulation" and own["esc"] == "Back"
        assert everywhere["?"] == "Help" and everywhere["q"] == "Quit" and "c" not in everywhere
        listed = set(own.values()) | set(everywhere.values())
        assert not listed & {"Cursor up", "Cursor down", "Copy selected text", "Page up", "Top"}
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = rendered_text(app.screen.query_one("#help-keys", Static))
        assert "Invert" in text and "Cursor up" not in text
        assert "Command palette" in rendered_text(app.screen.query_one("#help-global", Static))
        await pilot.press("escape")
        assert app.screen is crit


# --------------------------------------------------------------------------- palette


def titles(app: SalveApp) -> list[str]:
    return [c.title for c in app.get_system_commands(app.screen)]


def search(app: SalveApp, query: str) -> list[str]:
    """Titles the palette's search offers for ``query`` (same rule as SalveCommands.search)."""
    from textual.fuzzy import Matcher

    matcher = Matcher(query)
    return [c.title for c in app.get_system_commands(app.screen)
            if matcher.match(c.title) > 0 or matches_every_word(query, c.title, c.help)]


def test_search_spells_greek_letters_and_needs_every_word() -> None:
    assert searchable("Open: α_crit (k)") == "open: alpha_crit (k)"
    assert matches_every_word("alpha", "Open: α_crit (k)", "Critical suppression thresholds")
    assert matches_every_word("thresholds sample", "Open: α_crit", "thresholds per class and per sample")
    assert not matches_every_word("thresholds weights", "Open: α_crit", "thresholds per class")
    assert not matches_every_word("", "Open: α_crit", "")


async def test_palette_has_no_duplicates_finds_words_and_hides_what_cannot_run(synth_folder: Path) -> None:
    stop = threading.Event()
    app = synth_app(synth_folder)
    async with app.run_test(size=SIZE) as pilot:
        await open_dashboard(pilot)
        for key, cls in (("", DashboardScreen), *VIEW_KEYS.items()):
            if key:
                await pilot.press(key)
                await wait_for(pilot, lambda cls=cls: isinstance(app.screen, cls) and app.screen.loaded)
            names = titles(app)
            assert len(names) == len(set(names)), names
            assert sum("help" in n.lower() for n in names) == 1, names
            assert not any("cancel" in n.lower() for n in names), names  # no job runs
            assert "Open: α_crit (k)" in search(app, "alpha")
            assert "Open: Exports (x)" in search(app, "export")
            if cls is EditPreviewScreen:
                assert "Export (w)" in search(app, "export")
                assert "α+ coarse (+)" in search(app, "alpha")
            if key:
                await pilot.press("escape")
                await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen))
        app.start_job("wait", held_job(stop))
        await wait_for(pilot, lambda: app.jobs.busy, what="job")
        try:
            assert "Job: cancel the running job (c)" in search(app, "cancel")
        finally:
            stop.set()

        # The real palette, typed into: "alpha" offers the α_crit screen and Enter opens it.
        await pilot.press("ctrl+p")
        await pilot.pause(0.2)
        await pilot.press(*"alpha")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(app.screen, AlphaCritScreen), what="α_crit via palette")


# --------------------------------------------------------------------------- forms


@pytest.mark.parametrize(("name", "fragment"), [
    ("my run!", "not space, '!'"),
    ("a/b", "not '/'"),
    ("ünï", "not 'ü', 'ï'"),
    ("", "required"),
])
def test_name_must_be_letters_digits_dash_underscore(tmp_path: Path, name: str, fragment: str) -> None:
    problem = name_problem(name, tmp_path)
    assert fragment in problem
    _, errors = validate_form({"name": name}, tmp_path)
    assert errors["name"] == problem


def test_good_names_pass(tmp_path: Path) -> None:
    for name in ("run-1", "My_Run_2", "x"):
        assert name_problem(name, tmp_path) == ""


async def test_name_field_says_what_is_wrong_while_typing(tmp_path: Path) -> None:
    app = SalveApp(sessions_folder=tmp_path, clock=lambda: FIXED_TIME)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, NewSessionScreen))
        await pilot.press(*"my run!")
        message = app.screen.query_one("#error-name", Static)
        assert message.display and "only letters, digits, - and _" in str(message.render())
        await pilot.press("ctrl+s")
        assert isinstance(app.screen, NewSessionScreen) and not list(tmp_path.glob("*.h5"))


async def test_esc_asks_before_discarding_a_filled_form(tmp_path: Path) -> None:
    app = SalveApp(sessions_folder=tmp_path, clock=lambda: FIXED_TIME)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, NewSessionScreen))
        await pilot.press("escape")  # untouched: straight back
        assert isinstance(app.screen, SessionsScreen)
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(app.screen, NewSessionScreen))
        form = app.screen
        await pilot.press(*"run1")
        form.query_one("#field-epochs", Input).value = "3"
        await pilot.press("escape")
        assert isinstance(app.screen, ConfirmModal)
        await pilot.press("n")  # keep editing: nothing lost
        assert app.screen is form and form.values()["name"] == "run1" and form.values()["epochs"] == "3"
        await pilot.press("escape", "y")
        assert isinstance(app.screen, SessionsScreen)


# --------------------------------------------------------------------------- exports listing


def test_export_listing_counts_every_file_and_its_size(tmp_path: Path) -> None:
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "a.png").write_bytes(b"x" * 1500)
    (tmp_path / "w.pt").write_bytes(b"y" * 2_500_000)
    listing = list_exports(tmp_path)
    assert {p.name for p, _, _ in listing.files} == {"a.png", "w.pt"}
    assert listing.total_bytes == 2_501_500
    assert format_size(listing.total_bytes) == "2.5 MB" and format_size(999) == "999 B"
    assert list_exports(tmp_path / "missing").files == []


# --------------------------------------------------------------------------- snapshots (80×24)


@pytest.mark.parametrize(("key", "cls"), [
    ("m", MatrixScreen), ("e", EditPreviewScreen), ("k", AlphaCritScreen), ("x", ExportsScreen),
    ("t", SAETrainingScreen),
], ids=["matrix", "edit", "alpha-crit", "exports", "sae-training"])
def test_loading_state_snapshot(snap_compare, synth_folder: Path, monkeypatch: pytest.MonkeyPatch,
                                gate: threading.Event, key: str, cls: type[SessionScreen]) -> None:
    gate_load(monkeypatch, cls, gate)

    async def open_gated(pilot) -> None:  # noqa: ANN001
        await open_dashboard(pilot)
        await pilot.press(key)
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, cls))
        await pilot.pause(0.2)
        screen = pilot.app.screen
        assert not screen.loaded and screen.query_one(LoadingNotice).display
        # the notice is painted (not only mounted) while the gated load cannot have returned
        await wait_for(pilot, lambda: "⠋ loading the " in screen_text(pilot.app), what="the notice")
        assert not screen.loaded

    assert snap_compare(synth_app(synth_folder), terminal_size=SIZE, run_before=open_gated)


def test_feature_card_loading_snapshot(snap_compare, synth_folder: Path, monkeypatch: pytest.MonkeyPatch,
                                       gate: threading.Event) -> None:
    gate_load(monkeypatch, FeatureDetailScreen, gate)

    async def open_gated(pilot) -> None:  # noqa: ANN001
        await open_dashboard(pilot)
        await pilot.press("m")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, MatrixScreen) and pilot.app.screen.loaded)
        await pilot.press("enter")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, FeatureDetailScreen))
        await pilot.pause(0.2)
        assert not pilot.app.screen.loaded
        assert "loading feature 1: latents, decoder, test images…" in screen_text(pilot.app)

    assert snap_compare(synth_app(synth_folder), terminal_size=SIZE, run_before=open_gated)


def test_exports_snapshot(snap_compare, synth_folder: Path) -> None:
    exports = synth_folder / "synth.exports" / "figures"
    exports.mkdir(parents=True)
    (exports / "feature_class_matrix.png").write_bytes(b"\x89PNG" + b"0" * 2000)

    async def open_exports(pilot) -> None:  # noqa: ANN001
        await open_dashboard(pilot)
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, ExportsScreen) and pilot.app.screen.loaded)
        await pilot.pause(0.1)
        text = screen_text(pilot.app)
        assert "export folder: sessions/synth.exports/ · 1 file, 2.0 kB" in text  # 2,004 bytes
        assert line_with(text, "figures/")[0] == "figures/feature_class_matrix.png"

    os.utime(exports / "feature_class_matrix.png", (FIXED_TIME, FIXED_TIME))
    assert snap_compare(synth_app(synth_folder), terminal_size=SIZE, run_before=open_exports)


async def test_help_leaves_out_keys_our_tables_inherit_from_textual(synth_folder: Path) -> None:
    """The dashboard's stage table and the sessions table are DataTable subclasses of ours: help
    lists the Enter they declare, not DataTable's paging and scrolling keys."""
    inherited = {"Page down", "Page up", "Page Left", "Page Right", "Top", "Bottom", "Cursor up"}
    app = synth_app(synth_folder)
    async with app.run_test(size=SIZE) as pilot:
        await open_dashboard(pilot)
        rows = dict(binding_rows(app.screen, "screen"))
        assert rows["⏎"] == "Run stage" and rows["r"] == "Run" and not inherited & set(rows.values())
        await pilot.press("escape")
        await wait_for(pilot, lambda: type(app.screen).__name__ == "SessionsScreen", what="sessions")
        rows = dict(binding_rows(app.screen, "screen"))
        assert rows["⏎"] == "Open" and rows["n"] == "New" and not inherited & set(rows.values())


def test_help_on_matrix_snapshot(snap_compare, synth_folder: Path) -> None:
    async def open_help(pilot) -> None:  # noqa: ANN001
        await open_dashboard(pilot)
        await pilot.press("m")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, MatrixScreen) and pilot.app.screen.loaded)
        # the status line under the map is drawn after the first content frame (fixed pauses
        # here made the snapshot flaky under load)
        await wait_for(pilot, lambda: "in class" in screen_text(pilot.app), what="the matrix status line")
        await pilot.press("question_mark")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, HelpScreen)
                       and "Help — Feature–class matrix" in screen_text(pilot.app), what="help")
        # The matrix's status line shows at the help's left edge: wait until no worker (the
        # preloader, a reload) can redraw it, and it is there (in a full run it was caught blank).
        matrix = pilot.app.screen_stack[-2]
        await wait_for(pilot, lambda: not [w for w in pilot.app.workers if w.is_running]
                       and "in class" in str(matrix.query_one("#matrix-status").render()),
                       what="the matrix settled under help")
        await pilot.pause()
        keys = {row[0] for row in binding_rows(pilot.app.screen_stack[-2])}
        assert {"d", "e", "g", "n"} <= keys  # the matrix's own keys are listed

    assert snap_compare(synth_app(synth_folder), terminal_size=SIZE, run_before=open_help)


def test_discard_form_snapshot(snap_compare, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    Path("sessions").mkdir()

    async def fill_and_leave(pilot) -> None:  # noqa: ANN001
        await pilot.press("n")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, NewSessionScreen))
        await pilot.press(*"my run!")
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(pilot.app.screen, ConfirmModal))
        await pilot.pause(0.1)
        text = screen_text(pilot.app)
        assert "Discard the settings typed into this form?" in text
        assert "only letters, digits, - and _ are allowed" in text  # the name's refusal stays shown
        assert list(Path("sessions").iterdir()) == []  # nothing was created

    app = SalveApp(sessions_folder=Path("sessions"), clock=lambda: FIXED_TIME)
    assert snap_compare(app, terminal_size=SIZE, run_before=fill_and_leave)


async def test_edit_preview_footer_names_each_methods_strength(synth_folder: Path) -> None:
    """The footer said "+- α" for steering (β) and ROME (a target logit value) too."""
    from textual.widgets._footer import FooterLabel

    app = synth_app(synth_folder)
    async with app.run_test(size=SIZE) as pilot:
        await open_dashboard(pilot)
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, EditPreviewScreen) and app.screen.loaded,
                       timeout=60)
        screen = app.screen

        def labels() -> list[str]:
            return [str(label.render()).strip() for label in screen.query_one(Footer).query(FooterLabel)]

        seen = {}
        for _ in range(3):
            await wait_for(pilot, lambda: bool(labels()), what="the footer")
            await pilot.pause(0.1)
            seen[screen.method] = labels()
            rows = dict(binding_rows(screen, "screen"))
            name = {"salve": "α", "rome": "target", "steer": "β"}[screen.method]
            assert rows["+"] == f"{name}+ coarse" and rows["]"] == f"fine {name}+", rows
            before = screen.alpha
            await pilot.press("plus")
            await wait_for(pilot, lambda b=before: screen.alpha > b, what=f"+ in {screen.method}")
            method = screen.method
            await pilot.press("m")
            await wait_for(pilot, lambda m=method: screen.method != m, what="next method")
        assert seen == {"salve": ["α"], "rome": ["target"], "steer": ["β"]}


async def test_the_heatmap_reports_its_cursor_again_when_its_size_changes() -> None:
    """The matrix's status line names the rows and columns on screen ("classes 0–k of 10") and
    was recomputed only when the cursor moved, so a status drawn before the map's first layout
    kept naming the rows of a smaller map (the help-on-matrix snapshot caught it one run in
    three). The map now reports its cursor again whenever its size changes."""
    import numpy as np
    from textual.app import App, ComposeResult

    from salve_tui.app.widgets.heatmap import Heatmap

    class MapOnly(App):
        def __init__(self) -> None:
            super().__init__()
            self.reports: list[tuple[int, int, int]] = []

        def compose(self) -> ComposeResult:
            yield Heatmap()

        def on_mount(self) -> None:
            self.query_one(Heatmap).set_data(np.ones((10, 16)), [f"c{i}" for i in range(10)])

        def on_heatmap_cursor_moved(self, message: Heatmap.CursorMoved) -> None:
            self.reports.append((message.heatmap.size.width, message.row, message.column))

    app = MapOnly()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        assert app.reports and app.reports[-1] == (80, 0, 0)  # its first layout, cursor unmoved
        await pilot.resize_terminal(60, 24)
        await pilot.pause()
        await pilot.pause()
        assert app.reports[-1] == (60, 0, 0)
