"""The feature–class matrix at scale (issue 13): a virtualised heatmap and a jump prompt.

A synthetic session with 300 classes × 3,000 features (only what the matrix screen reads,
written by the bench's :func:`bench.bench_tui.write_matrix_session`) is opened in the real app.
The map is as high as the screen allows, draws the window around the cursor, and every drawn
cell has the colour of its array value; ``g`` goes to a typed class name, class or feature index.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from test_tui_helpers import tiny_config, wait_for
from textual.widgets import Static

from bench.bench_tui import write_matrix_session
from core.discover.rankings import display_scale
from core.store.session import Session
from salve_tui.app.app import SalveApp
from salve_tui.app.screens.analysis_matrix import MatrixScreen, parse_jump
from salve_tui.app.screens.dashboard import DashboardScreen
from salve_tui.app.screens.number_input import PromptModal
from salve_tui.app.widgets.heatmap import Heatmap, signed_colour, signed_colours

CLASSES, FEATURES = 300, 3000
SIZE = (80, 24)


@pytest.fixture
def big_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SALVE_TUI_IMAGES", "halfblock")
    folder = tmp_path / "sessions"
    write_matrix_session(folder, CLASSES, FEATURES, name="big", config=tiny_config("big"))
    return folder


def big_matrix(folder: Path) -> np.ndarray:
    with Session.open(folder / "big.h5", read_only=True) as session:
        return session.read_array("rankings/class_means")


async def open_matrix(pilot) -> tuple[MatrixScreen, Heatmap]:  # noqa: ANN001
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, DashboardScreen), what="dashboard")
    await pilot.press("m")
    await wait_for(pilot, lambda: isinstance(pilot.app.screen, MatrixScreen) and pilot.app.screen.loaded,
                   what="matrix")
    screen = pilot.app.screen
    return screen, screen.query_one(Heatmap)


def status(screen: MatrixScreen) -> str:
    return str(screen.query_one("#matrix-status", Static).render())


def drawn_colours(heatmap: Heatmap) -> dict[tuple[int, int], tuple[int, int, int]]:
    """(row, column) → background colour of every cell the widget draws now."""
    start, stop = heatmap.visible_range()
    first, last = heatmap.visible_row_range()
    cell = heatmap.cell_width()
    drawn = {}
    for y in range(1, last - first + 1):
        segments = list(heatmap.render_line(y))[1:]  # after the row label
        row = first + y - 1
        x = 0
        for segment in segments:
            column = start + x // cell
            if column < stop and segment.style is not None and segment.style.bgcolor is not None:
                drawn[(row, column)] = segment.style.bgcolor.get_truecolor()[:3]
            x += segment.cell_length
    return drawn


def test_vectorised_colours_equal_the_scalar_function() -> None:
    rng = np.random.default_rng(1)
    values = np.concatenate([rng.normal(0, 1, 500), [0.0, 1.0, -1.0, 3.0, np.nan, 0.5, -0.5]])
    for scale in (1.0, 0.7, 0.0):
        fast = signed_colours(values, scale)
        assert [tuple(rgb) for rgb in fast.tolist()] == [signed_colour(v, scale) for v in values]


def test_parse_jump_reads_names_and_indices() -> None:
    names = ["circle", "square", "star", "starfish", "n01440764"]
    assert parse_jump("square", names, 100) == (1, None)
    assert parse_jump("STAR", names, 100) == (2, None)  # exact beats the longer "starfish"
    assert parse_jump("circ", names, 100) == (0, None)  # an unambiguous start
    assert parse_jump("c3", names, 100) == (3, None)
    assert parse_jump("class 4", names, 100) == (4, None)
    assert parse_jump("42", names, 100) == (None, 42)
    assert parse_jump("f42", names, 100) == (None, 42)
    assert parse_jump("#7", names, 100) == (None, 7)
    assert parse_jump("feature 9", names, 100) == (None, 9)
    assert parse_jump("starfish f12", names, 100) == (3, 12)
    assert parse_jump("c1, 99", names, 100) == (1, 99)
    assert parse_jump("n01440764", names, 100) == (4, None)  # a name that looks like an index
    for text, message in (("c9", "class 9 does not exist: classes are 0–4"),
                          ("100", "feature 100 does not exist: features are 0–99"),
                          ("sta", "'sta' matches 2 classes (star, starfish)"),
                          ("dog", "no class named 'dog'"), ("  ", "type a class name")):
        with pytest.raises(ValueError, match=re.escape(message)):
            parse_jump(text, names, 100)


async def test_virtual_matrix_draws_the_window_around_the_cursor(big_folder: Path) -> None:
    M = big_matrix(big_folder)
    scale = display_scale(M, "class")
    app = SalveApp(sessions_folder=big_folder, start_session="big")
    async with app.run_test(size=SIZE) as pilot:
        screen, heatmap = await open_matrix(pilot)
        assert heatmap.shape == (CLASSES, FEATURES)
        # The map fits the screen: it is not 301 lines high, and draws only what is on it.
        assert heatmap.size.height <= SIZE[1] - screen.RESERVED_LINES
        assert heatmap.cursor == (0, 0)  # class 0's planted dominant feature is 0
        assert "μ = +5.000 · rank 1/3000 in class · dominant for class0000" in status(screen)

        await pilot.press("ctrl+end", "end")  # the last class, the last feature
        assert heatmap.cursor == (CLASSES - 1, FEATURES - 1)
        first, last = heatmap.visible_row_range()
        start, stop = heatmap.visible_range()
        assert first <= CLASSES - 1 < last and last == CLASSES and stop == FEATURES
        assert f"μ = {M[-1, -1]:+.3f}" in status(screen)
        assert f"classes {first}–{CLASSES - 1} of {CLASSES}" in status(screen)

        await pilot.press("shift+up", "up", "pageup", "left")
        row, column = heatmap.cursor
        assert (row, column) == (CLASSES - 1 - heatmap.visible_rows() - 1, FEATURES - 1 - 10 - 1)
        assert f"class{row:04d} · feature {column} · μ = {M[row, column]:+.3f}" in status(screen)

        # Every drawn cell has the colour of its value (÷ its class's max |μ|), cursor cell included.
        drawn = drawn_colours(heatmap)
        first, last = heatmap.visible_row_range()
        start, stop = heatmap.visible_range()
        assert len(drawn) == (last - first) * (stop - start)
        for (r, c), rgb in drawn.items():
            assert rgb == signed_colour(M[r, c] / scale[r, 0], 1.0), (r, c)

        await pilot.press("n")  # per feature
        scale = display_scale(M, "feature")
        for (r, c), rgb in drawn_colours(heatmap).items():
            assert rgb == signed_colour(M[r, c] / scale[0, c], 1.0), (r, c)

        await pilot.press("ctrl+home", "home")
        assert heatmap.cursor == (0, 0) and heatmap.visible_row_range()[0] == 0


async def test_jump_prompt_goes_to_the_typed_class_and_feature(big_folder: Path) -> None:
    M = big_matrix(big_folder)
    app = SalveApp(sessions_folder=big_folder, start_session="big")
    async with app.run_test(size=SIZE) as pilot:
        screen, heatmap = await open_matrix(pilot)

        async def jump(text: str) -> None:
            await pilot.press("g")
            await wait_for(pilot, lambda: isinstance(app.screen, PromptModal), what="prompt")
            await pilot.press(*text, "enter")
            await pilot.pause()

        await jump("c250 f2500")
        assert app.screen is screen and heatmap.cursor == (250, 2500)
        assert heatmap.visible_row_range()[0] <= 250 < heatmap.visible_row_range()[1]
        assert heatmap.visible_range()[0] <= 2500 < heatmap.visible_range()[1]
        assert f"class0250 · feature 2500 · μ = {M[250, 2500]:+.3f}" in status(screen)

        await jump("class0007")  # a name: the class changes, the feature stays
        assert heatmap.cursor == (7, 2500)
        await jump("123")  # a bare number is a feature
        assert heatmap.cursor == (7, 123)

        await jump("class025")  # ambiguous: the prompt says so and stays open
        modal = app.screen
        assert isinstance(modal, PromptModal)
        assert "matches 10 classes" in str(modal.query_one("#number-error", Static).render())
        await pilot.press("escape")
        assert app.screen is screen and heatmap.cursor == (7, 123)

        await pilot.press("d")  # the class's dominant feature: planted at 7·7
        assert heatmap.cursor == (7, 49)
