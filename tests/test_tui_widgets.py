"""Half-block images, the view registry, help and palette contents."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rich.style import Style
from test_tui_helpers import add_sae_history, make_session, wait_for
from textual.app import App, ComposeResult

from salve_tui.app.app import SalveApp
from salve_tui.app.screens.base import session_view
from salve_tui.app.screens.dashboard import DashboardScreen
from salve_tui.app.screens.help import HelpScreen, binding_rows
from salve_tui.app.screens.sae_training import SAETrainingScreen, pick_series, summary_text
from salve_tui.app.widgets.image import (
    HalfBlockImage,
    ImageView,
    fit_pixels,
    halfblock_lines,
    image_backend,
)

RED, BLUE, GREEN, WHITE = (255, 0, 0), (0, 0, 255), (0, 255, 0), (255, 255, 255)


def test_sae_summary_keeps_every_value_within_80_columns() -> None:
    """The widest values .3g writes (``1.35e-05``) and the longest heading still fit 78 cells
    (80 minus the padding) on each of the two lines, with nothing left out."""
    small = np.array([[2.0, 1.35e-05]])
    history = {"loss": small, "recon": small, "sparsity": small, "l0": np.array([[9.0, 1234.5]]),
               "ev": small, "dead": np.array([[0.0, 16384.0]])}
    text = summary_text(history, "last checkpoint, 300 epochs")
    first, second = text.split("\n")
    assert first == "last checkpoint, 300 epochs: total 1.35e-05  recon 1.35e-05  sparsity 1.35e-05"
    assert second == "L0 1.23e+03  EV 1.35e-05  dead 1.64e+04"
    assert max(len(first), len(second)) <= 78


def test_halfblock_cell_shows_upper_pixel_as_fg_and_lower_as_bg() -> None:
    image = np.array([[RED, GREEN], [BLUE, WHITE]], dtype=np.uint8)  # 2×2 → one row of 2 cells
    lines = halfblock_lines(image, cols=2, rows=1)
    assert len(lines) == 1 and len(lines[0]) == 2
    first, second = lines[0]
    assert first.text == "▀" and first.style == Style(color="rgb(255,0,0)", bgcolor="rgb(0,0,255)")
    assert second.style == Style(color="rgb(0,255,0)", bgcolor="rgb(255,255,255)")


def test_downsampling_averages_blocks_and_keeps_the_aspect() -> None:
    image = np.zeros((8, 8, 3), dtype=np.uint8)
    image[:, 4:] = 200  # right half bright
    assert fit_pixels(8, 8, cols=4, rows=2) == (4, 4)  # 4 columns × 2 rows of half-blocks
    assert fit_pixels(64, 32, cols=80, rows=4) == (4, 8)  # tall image limited by the height
    lines = halfblock_lines(image, cols=4, rows=2)
    assert len(lines) == 2 and all(len(line) == 4 for line in lines)
    colours = [seg.style.color.triplet for seg in lines[0]]
    assert [c.red for c in colours] == [0, 0, 200, 200]  # BOX filter: exact 2×2 block means


def test_bad_image_is_refused_with_a_message() -> None:
    with pytest.raises(ValueError, match="H×W×3 uint8"):
        halfblock_lines(np.zeros((4, 4, 3), dtype=np.float32), 4, 4)


def test_halfblocks_can_be_forced(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SALVE_TUI_IMAGES", "halfblock")
    assert image_backend() == "halfblock"


async def test_image_view_renders_in_an_app(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SALVE_TUI_IMAGES", "halfblock")
    image = np.zeros((16, 16, 3), dtype=np.uint8)
    image[:8] = RED
    image[8:] = BLUE

    class Viewer(App):
        def compose(self) -> ComposeResult:
            yield ImageView(image, id="view")

    app = Viewer()
    async with app.run_test(size=(20, 10)) as pilot:
        await pilot.pause()
        widget = app.query_one(HalfBlockImage)
        top = widget.render_line(0)
        segments = list(top)
        assert segments[0].text == "▀"
        assert segments[0].style.color.triplet == (255, 0, 0)
        bottom = list(widget.render_line(7))[0]
        assert bottom.style.bgcolor.triplet == (0, 0, 255)
        app.query_one(ImageView).image = np.full((4, 4, 3), 7, dtype=np.uint8)
        await pilot.pause()
        assert list(widget.render_line(0))[0].style.color.triplet == (7, 7, 7)


def test_view_registry_refuses_dashboard_keys_and_duplicates() -> None:
    with pytest.raises(ValueError, match="used by the dashboard"):
        session_view(key="a", title="clash")(DashboardScreen)
    with pytest.raises(ValueError, match="already used by sae_training"):
        session_view(key="t", title="clash", name="other")(DashboardScreen)


def test_sae_history_series_pick_the_first_seed() -> None:
    history = {"explained_variance": np.array([[0.1, 0.5], [0.2, 0.6]])}
    assert pick_series(history, ("ev", "explained_variance")).tolist() == [0.1, 0.5]
    assert pick_series(history, ("l0",)) is None


async def test_help_palette_and_sae_view_on_the_dashboard(tmp_path: Path) -> None:
    path = make_session(tmp_path, "s", stages={"data": ("done", "ok")})
    history = add_sae_history(path, epochs=12)
    app = SalveApp(sessions_folder=tmp_path, start_session="s")
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), 5)
        rows = dict((description, key) for key, description in binding_rows(app.screen))
        assert rows["Run all"] == "a" and rows["SAE"] == "t" and rows["Help"] == "?"
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Open: SAE training (t)" in titles and "Run all (a)" in titles

        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        await pilot.press("t")
        await wait_for(pilot, lambda: isinstance(app.screen, SAETrainingScreen) and app.screen.loaded)
        screen = app.screen
        assert screen.source == "trained"
        assert pick_series(screen.history, ("loss",)).tolist() == history["loss"][0].tolist()
        summary = str(screen.query_one("#sae-summary").render())
        assert summary.startswith("final, 12 epochs")
        assert f"EV {history['ev'][0, -1]:.3g}" in summary
