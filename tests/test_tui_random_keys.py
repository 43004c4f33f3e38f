"""Random keys, as a new user types them, never crash the app (seeded, so a failure replays).

Keys cover the command palette and paging, every screen's letters, dialogs (confirm/cancel,
number input), quit and ctrl+q. When the app quits normally it is started again and the keys go
on. Any exception ends ``run_test`` with it (Textual re-raises the app's error) and fails here.
The fast variant runs in the default suite; the long one (~300 keys per size) is marked slow.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
from test_tui_analysis import synth_app
from textual import events

KEYS = (list("mekxtsgdlrabvwnuiyo0123=+-<>[]{}") + ["A", "D", "/", "question_mark"]
        + ["ctrl+p", "pageup", "pagedown", "home", "end", "up", "down", "left", "right", "tab",
           "shift+tab", "enter", "escape", "escape", "space", "backspace", "q", "ctrl+q", "c"])
# Quit keys are rarer than the rest: a run that quits at once tests little.
WEIGHTS = [0.15 if key in ("q", "ctrl+q") else 1.0 for key in KEYS]


def random_keys(seed: int, count: int) -> list[str]:
    return random.Random(seed).choices(KEYS, weights=WEIGHTS, k=count)


async def type_keys(folder: Path, keys: list[str], size: tuple[int, int], burst: int) -> int:
    """Type ``keys`` into fresh apps (a new one after each normal quit); returns the apps used.

    Every ``burst``-th key is followed by a frame's pause; the others are queued at once, faster
    than a frame, as a quick typist does (that is how the palette's paging bug showed).
    """
    apps, index = 0, 0
    while index < len(keys):
        app = synth_app(folder)
        apps += 1
        async with app.run_test(size=size) as pilot:
            await pilot.pause(0.2)
            while index < len(keys) and app.is_running and not app._exit_renderables:
                app.post_message(events.Key(keys[index], None))
                index += 1
                if index % burst == 0:
                    await pilot.pause(0.02)
            await pilot.pause(0.1)
        assert app.return_code in (None, 0), f"the app ended with code {app.return_code}"
    return apps


def test_random_keys_are_seeded() -> None:
    assert random_keys(1, 50) == random_keys(1, 50)
    assert random_keys(1, 50) != random_keys(2, 50)
    assert set(random_keys(1, 2000)) == set(KEYS)  # every key gets typed


@pytest.mark.parametrize("size", [(80, 24), (40, 12)])
async def test_random_keys_fast(synth_session_folder: Path, size: tuple[int, int]) -> None:
    await type_keys(synth_session_folder, random_keys(7, 80), size, burst=3)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [1, 2, 3, 11, 15, 17])  # 11, 15, 17 crashed before their fixes
@pytest.mark.parametrize("size", [(80, 24), (40, 12)])
async def test_random_keys_long(synth_session_folder: Path, size: tuple[int, int], seed: int) -> None:
    await type_keys(synth_session_folder, random_keys(seed, 300), size, burst=4)


async def test_log_scale_key_before_the_sae_history_is_shown(synth_session_folder: Path) -> None:
    """Found by the random keys: ``l`` typed before the SAE plots were mounted raised NoMatches."""
    from salve_tui.app.screens.sae_training import SAETrainingScreen

    app = synth_app(synth_session_folder)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.2)
        for key in ("t", "l", "l", "l"):
            app.post_message(events.Key(key, None))
        await pilot.pause(0.2)
        screen = app.screen
        assert isinstance(screen, SAETrainingScreen)
        while not screen.loaded:
            await pilot.pause(0.05)
        await pilot.press("l")
        assert screen.log_scale is True  # the keys before loading were ignored, this one counts
    assert app.return_code in (None, 0)


async def test_a_modal_answered_twice_before_it_closed(synth_session_folder: Path) -> None:
    """Found by the random keys: a second key that closes help (or answers a dialog), handled
    before the first close took effect, set the modal's result twice (Textual's
    InvalidStateError ended the app). The second answer is now ignored."""
    from salve_tui.app.screens.confirm import ConfirmModal
    from salve_tui.app.screens.help import HelpScreen

    app = synth_app(synth_session_folder)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause(0.3)
        await pilot.press("question_mark")
        help_screen = app.screen
        assert isinstance(help_screen, HelpScreen)
        await pilot.press("ctrl+p")  # the palette over help, as typed keys can do
        await pilot.pause()
        help_screen.action_close()
        help_screen.action_close()  # a second close key reaching help before it has gone
        await pilot.pause()
        answers: list[bool | None] = []
        app.push_screen(ConfirmModal("really?"), answers.append)
        await pilot.pause()
        modal = app.screen
        modal.action_answer(True)
        modal.action_answer(False)
        await pilot.pause()
        assert answers == [True]
    assert app.return_code in (None, 0)
