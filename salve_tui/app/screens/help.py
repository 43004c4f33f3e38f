"""``?``: the keys of the screen underneath, app-wide keys and a paragraph about that screen."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer, Static


def binding_rows(screen: Screen) -> list[tuple[str, str]]:
    """(key, description) for every described binding active on ``screen``, in footer order."""
    rows: list[tuple[str, str]] = []
    seen: set[tuple[str, str]] = set()
    # The screen's and app's own actions first; a focused widget's cursor keys after them.
    actives = sorted(screen.active_bindings.values(),
                     key=lambda a: 0 if a.node is screen or a.node is screen.app else 1)
    for active in actives:
        binding = active.binding
        if not binding.description:
            continue
        display = binding.key_display or screen.app.get_key_display(binding)
        if (display, binding.description) in seen:
            continue
        seen.add((display, binding.description))
        rows.append((display, binding.description))
    return rows


class HelpScreen(ModalScreen[None]):
    """Lists the keys of the screen it was opened from."""

    BINDINGS: ClassVar[list[Binding]] = [
        Binding("escape,question_mark,q", "close", "Close help"),
    ]

    def __init__(self, target: Screen) -> None:
        super().__init__()
        self.target = target

    def compose(self) -> ComposeResult:
        title = getattr(self.target, "SCREEN_TITLE", "") or type(self.target).__name__
        with Vertical(id="help-dialog"):
            yield Static(f"Help — {title}", id="help-title")
            with VerticalScroll(id="help-body"):
                about = getattr(self.target, "HELP_TEXT", "")
                if about:
                    yield Static(Text(about.strip()), id="help-about")
                yield Static(self._keys_table(), id="help-keys")
                yield Static(
                    Text("ctrl+p opens the command palette: type to search every action.\n"
                         "tab / shift+tab move between fields and panels.", style="italic"),
                    id="help-tips",
                )
        yield Footer(compact=True)

    def _keys_table(self) -> Table:
        table = Table(box=None, show_header=True, header_style="bold", pad_edge=False, expand=False)
        table.add_column("key", style="bold cyan", no_wrap=True)
        table.add_column("action")
        for key, description in binding_rows(self.target):
            table.add_row(key, description)
        return table

    def action_close(self) -> None:
        self.dismiss(None)
