"""The quiet collector: full garbage collections after a screen closes and at idle, not under
a key, and frozen garbage reclaimed once the user is idle (salve_tui/app/collector.py)."""

from __future__ import annotations

import gc
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_tui_analysis import synth_app
from test_tui_conventions import open_dashboard
from test_tui_helpers import wait_for

from salve_tui.app import collector as collector_module
from salve_tui.app.collector import FULL_EVERY, QuietCollector
from salve_tui.app.screens.analysis_exports import ExportsScreen
from salve_tui.app.screens.dashboard import DashboardScreen


@pytest.fixture(autouse=True)
def clean_gc() -> Iterator[None]:
    threshold = gc.get_threshold()
    gc.unfreeze()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.fixture
def synth_folder(synth_session_folder: Path) -> Path:
    return synth_session_folder  # conftest: the synthetic session in sessions/


class Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the collector frees it


def test_start_makes_automatic_full_passes_rarer_and_stop_restores_them() -> None:
    before = gc.get_threshold()
    quiet = QuietCollector(lambda: True, lambda: 1)
    quiet.start()
    assert gc.get_threshold() == (before[0], before[1], FULL_EVERY)
    quiet.stop()
    assert gc.get_threshold() == before


def test_a_screen_closing_home_runs_a_pass_and_freezes_what_survives() -> None:
    depth = [3]
    quiet = QuietCollector(lambda: depth[0] == 2, lambda: depth[0])
    quiet.touched()  # the user is typing: no idle pass
    quiet.tick()
    gc.collect(1)  # something promoted since the last full pass
    quiet.tick()
    assert quiet.passes == 0  # not home, not idle
    garbage = weakref.ref(Node())
    survivor = Node()
    depth[0] = 2  # the screen closed back to the dashboard
    quiet.tick()  # noticed; the pass waits HOME_DELAY_S for the repaint
    assert quiet.passes == 0
    time.sleep(collector_module.HOME_DELAY_S)
    quiet.tick()
    assert quiet.passes == 0  # a key came just now (the esc): the next one usually follows
    quiet.last_input -= collector_module.CLOSE_IDLE_S  # no key since
    quiet.tick()
    assert quiet.passes == 1
    assert garbage() is None
    assert gc.get_freeze_count() > 0
    assert not any(o is survivor for o in gc.get_objects())  # frozen: out of later passes
    quiet.tick()
    assert quiet.passes == 1  # nothing promoted since: no second pass


def test_a_key_after_a_close_gets_its_first_frame_before_the_pass() -> None:
    """esc then at once another screen: the pass the close left runs once the new screen's
    first frame is out (not under the key), and freezes nothing (that screen is alive)."""
    depth = [3]
    quiet = QuietCollector(lambda: depth[0] == 2, lambda: depth[0])
    quiet.touched()
    quiet.tick()
    node = Node()
    gc.collect(1)  # promoted to the oldest generation, where only a full pass finds it
    garbage = weakref.ref(node)
    del node
    depth[0] = 2  # closed back home ...
    quiet.tick()
    quiet.touched()  # ... and the next key at once
    depth[0] = 3
    time.sleep(collector_module.HOME_DELAY_S)
    quiet.tick()
    assert quiet.passes == 0 and garbage() is not None  # not while the key is handled
    quiet.screen_shown()  # the new screen's first frame is written
    assert quiet.passes == 1 and garbage() is None
    assert gc.get_freeze_count() == 0
    quiet.screen_shown()
    assert quiet.passes == 1  # one pass per close


def test_one_idle_pass_per_pause(monkeypatch: pytest.MonkeyPatch) -> None:
    """A screen filling in while nobody types used to be collected on every tick (50 ms)."""
    monkeypatch.setattr(collector_module, "IDLE_S", 0.0)
    quiet = QuietCollector(lambda: False, lambda: 4)
    quiet._depth = 4
    gc.collect(1)
    quiet.tick()
    gc.collect(1)  # more promoted while the screen fills in
    quiet.tick()
    assert quiet.passes == 1
    quiet.touched()  # a key: a new pause can have its pass
    quiet.tick()
    assert quiet.passes == 2


def test_the_preloaders_freeze_waits_until_only_home_is_shown() -> None:
    """The preloader finishes in its thread whenever its data is in, often under an open
    screen; frozen then, that screen stayed allocated and every later pass grew."""
    home = [False]
    quiet = QuietCollector(lambda: home[0], lambda: 3)
    quiet._depth = 3
    quiet.freeze_when_safe()
    quiet.tick()
    assert gc.get_freeze_count() == 0  # a screen is open
    home[0] = True
    quiet.tick()
    assert gc.get_freeze_count() > 0


def test_idle_pass_anywhere_but_no_freeze_away_from_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(collector_module, "IDLE_S", 0.0)
    quiet = QuietCollector(lambda: False, lambda: 4)
    quiet._depth = 4
    gc.collect(1)
    garbage = weakref.ref(Node())
    quiet.tick()
    assert quiet.passes == 1 and garbage() is None
    assert gc.get_freeze_count() == 0  # a screen is open: what it holds must stay collectable


def test_garbage_frozen_by_mistake_is_reclaimed_when_idle_at_home(monkeypatch: pytest.MonkeyPatch) -> None:
    quiet = QuietCollector(lambda: True, lambda: 2)
    caught = Node()  # e.g. a closed screen a worker thread still held when the survivors froze
    garbage = weakref.ref(caught)
    gc.freeze()
    del caught
    gc.collect()
    assert garbage() is not None  # frozen: out of the collector's reach
    monkeypatch.setattr(collector_module, "RECLAIM_IDLE_S", 0.0)
    quiet._frozen_after_reclaim = gc.get_freeze_count()
    quiet.tick()
    assert quiet.reclaims == 0  # the frozen heap has not grown since the last reclaim
    quiet._frozen_after_reclaim = int(gc.get_freeze_count() / collector_module.RECLAIM_GROWTH) - 1
    quiet.tick()
    assert quiet.reclaims == 1 and garbage() is None
    assert gc.get_freeze_count() > 0  # the survivors are frozen again


async def test_closing_a_screen_in_the_app_collects_and_freezes(synth_folder: Path) -> None:
    app = synth_app(synth_folder)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_dashboard(pilot)
        await wait_for(pilot, lambda: app.shared.finished, timeout=60, what="background load")
        assert gc.get_threshold()[2] == FULL_EVERY
        await pilot.press("x")
        await wait_for(pilot, lambda: isinstance(app.screen, ExportsScreen) and app.screen.loaded)
        passes = app.collector.passes
        gc.collect(1)  # make sure something counts as promoted
        await pilot.press("escape")
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), what="back")
        await wait_for(pilot, lambda: app.collector.passes > passes, timeout=5, what="the pass after closing")
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0  # the session closed: everything handed back


def test_nothing_is_frozen_while_a_closed_screen_is_still_alive(monkeypatch: pytest.MonkeyPatch) -> None:
    """Textual removes a popped screen some time after it leaves the stack: frozen meanwhile,
    it would stay allocated until the session closes."""
    monkeypatch.setattr(collector_module, "IDLE_S", 0.0)
    quiet = QuietCollector(lambda: True, lambda: 2)
    screen = Node()
    quiet.closed(screen)
    gc.collect(1)
    quiet.tick()
    assert quiet.passes == 1 and gc.get_freeze_count() == 0  # collected, not frozen
    del screen
    gc.collect(1)
    quiet.touched()  # the next pause
    quiet.tick()
    assert quiet.passes == 2 and gc.get_freeze_count() > 0


def test_the_pass_after_a_close_waits_for_screen_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(collector_module, "HOME_DELAY_S", 0.0)
    busy = [True]
    depth = [3]
    quiet = QuietCollector(lambda: depth[0] == 2, lambda: depth[0], lambda: not busy[0])
    quiet.touched()
    quiet.tick()
    depth[0] = 2
    gc.collect(1)
    quiet.tick()
    assert quiet.passes == 0  # a worker of the dashboard is still running
    busy[0] = False
    quiet.last_input -= collector_module.CLOSE_IDLE_S  # and no key since the close
    quiet.tick()
    assert quiet.passes == 1 and gc.get_freeze_count() > 0
