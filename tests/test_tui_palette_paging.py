"""The command palette survives paging before its list is laid out (a Textual ``OptionList`` bug).

Textual 8's ``OptionList._move_page`` reads ``_index_to_line[highlighted or 0]``. The palette
fills and highlights its list one frame before that list gets a width, so PageUp/PageDown typed
right after ctrl+p raised ``KeyError: 0`` and ended the app
(:func:`salve_tui.app.palette.guard_option_list_paging` defers the page to after the layout).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from textual import events
from textual.command import CommandList, CommandPalette

from salve_tui.app.app import SalveApp


@pytest.mark.parametrize("key", ["pageup", "pagedown"])
async def test_paging_right_after_ctrl_p_does_not_crash(tmp_path: Path, key: str) -> None:
    """The user's sequence, typed faster than a frame: both keys queued before any refresh."""
    app = SalveApp(sessions_folder=tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        app.post_message(events.Key("ctrl+p", None))
        app.post_message(events.Key(key, None))
        await pilot.pause(0.3)
        assert CommandPalette.is_open(app)
        await pilot.press("escape")
    assert app.return_code in (None, 0)


async def test_page_in_the_frame_the_list_is_filled(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Deterministic: page exactly when the palette has just filled and highlighted its list
    (no layout yet); the page then happens after the layout, so the highlight still moves."""
    real = CommandPalette._refresh_command_list
    paged: list[tuple[int, bool]] = []

    def fill_then_page(self, command_list, commands, clear_current):  # noqa: ANN001, ANN202
        real(self, command_list, commands, clear_current)
        if not paged and command_list.option_count > 3:
            paged.append((command_list.option_count, 0 in command_list._index_to_line))
            self._action_command_list("page_down")

    monkeypatch.setattr(CommandPalette, "_refresh_command_list", fill_then_page)
    app = SalveApp(sessions_folder=tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("ctrl+p")
        await pilot.pause(0.4)
        assert paged, "the palette never filled its list"
        assert paged[0][1] is False, "the list already had lines: this did not hit the bug's window"
        command_list = app.screen.query_one(CommandList)
        assert command_list.highlighted == command_list.option_count - 1  # a page covers them all
        await pilot.press("escape")
    assert app.return_code in (None, 0)
