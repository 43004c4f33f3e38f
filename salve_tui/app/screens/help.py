"""``?``: the keys of the screen underneath, app-wide keys and a paragraph about that screen;
``/`` narrows all of it to the lines with every typed word (searchable help)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Static

from salve_tui.app.bindings import (  # noqa: F401 (re-exported: their old home)
    OWN_WIDGET_PREFIX,
    TEXTUAL_INTERNAL_ACTIONS,
    _is_global,
    _is_listed,
    _own_actions,
)
from salve_tui.app.screens.confirm import OnceModal
from salve_tui.app.widgets.chrome import ScreenFooter
from salve_tui.app.widgets.filter import FilterBar, matches


def binding_rows(screen: Screen, scope: str = "all") -> list[tuple[str, str]]:
    """(key, description) of the described bindings active on ``screen``: ``scope`` ``screen``
    (its own and its widgets' keys), ``global`` (app-wide: help, palette, cancel, quit) or
    ``all`` (screen first). Keys of Textual's own widgets (cursor keys of a table) are left out."""
    rows: list[tuple[str, str]] = []
    seen: set[str] = set()
    actives = [a for a in screen.active_bindings.values() if a.binding.description and _is_listed(a, screen)]
    screen_keys = [a for a in actives if not _is_global(a, screen)]
    global_keys = [a for a in actives if _is_global(a, screen)]
    chosen = {"screen": screen_keys, "global": global_keys, "all": screen_keys + global_keys}[scope]
    # The screen's own keys before its widgets' (so ↑/↓ of a heatmap follow the screen's actions).
    chosen.sort(key=lambda a: 0 if a.node is screen or a.node is screen.app else 1)
    for active in chosen:
        binding = active.binding
        display = binding.key_display or screen.app.get_key_display(binding)
        if display in seen:  # one line per key (a key bound twice shows its active meaning)
            continue
        seen.add(display)
        rows.append((display, binding.description))
    return rows


class HelpScreen(OnceModal[None]):
    """Lists the keys of the screen it was opened from."""

    CSS_PATH = Path(__file__).with_suffix(".tcss")  # this module's screens
    AUTO_FOCUS = "#help-body"  # arrows scroll; the (hidden) search field gets focus only on /

    BINDINGS: ClassVar[list[Binding]] = [
        Binding("escape,question_mark,q", "close", "Close help"),
        Binding("slash", "open_filter", "Search help", key_display="/"),
    ]

    def __init__(self, target: Screen) -> None:
        super().__init__()
        self.target = target
        self.filter_text = ""  # /: only the views, keys and text with every typed word

    def compose(self) -> ComposeResult:
        title = getattr(self.target, "SCREEN_TITLE", "") or type(self.target).__name__
        with Vertical(id="help-dialog"):
            yield Static(f"Help — {title}", id="help-title")
            yield FilterBar()
            with VerticalScroll(id="help-body"):
                views = self._views_text()
                # every view one key away, before the longer text
                yield Static(views, id="help-views").set_class(not views.plain, "-empty")
                yield Static(self._about(), id="help-about").set_class(not self._about(), "-empty")
                yield Static(self._keys_table("screen", "keys of this screen"), id="help-keys")
                yield Static(self._keys_table("global", "everywhere"), id="help-global")
                yield Static(
                    Text("ctrl+p opens the command palette: type any word of an action.\n"
                         "tab / shift+tab move between fields and panels; esc goes back.",
                         style="italic"),
                    id="help-tips",
                )
        yield ScreenFooter(compact=True)

    def action_open_filter(self) -> None:
        self.query_one(FilterBar).open()

    def apply_filter(self, text: str) -> None:
        """Keep the views, key rows and paragraph that contain every word of ``text``."""
        self.filter_text = text.strip()
        views = self._views_text()
        self.query_one("#help-views", Static).update(views)
        self.query_one("#help-views").set_class(not views.plain, "-empty")
        self.query_one("#help-about", Static).update(self._about())
        self.query_one("#help-about").set_class(not self._about(), "-empty")
        self.query_one("#help-keys", Static).update(self._keys_table("screen", "keys of this screen"))
        self.query_one("#help-global", Static).update(self._keys_table("global", "everywhere"))

    def _about(self) -> str:
        about = getattr(self.target, "HELP_TEXT", "").strip()
        return about if matches(self.filter_text, about) else ""

    def _views(self) -> list[tuple[str, str, str]]:
        """(key, title, name) of every view of the open session; none before a session is open."""
        app = self.app
        if getattr(app, "session", None) is None or getattr(self.target, "BREADCRUMB_ROOT", False):
            return []  # no session yet, or the dashboard: its own keys are the views
        return [(view.key, view.title, view.name) for view in getattr(app, "views", [])
                if matches(self.filter_text, view.key, view.title, view.description)]

    def _views_text(self) -> Text:
        """Every view on a few lines at the top: its key here opens it (one keystroke away)."""
        views = self._views()
        text = Text()
        if not views:
            return text
        text.append("Views (press the key, here or on the dashboard): ", style="bold")
        for i, (key, title, _) in enumerate(views):
            text.append(" · " if i else "")
            text.append(key, style="bold cyan")
            text.append(f" {title}")
        text.append("\n")
        return text

    def on_key(self, event: events.Key) -> None:
        """A view's key opens that view (help closes first)."""
        if isinstance(self.focused, FilterBar):
            return  # typed into the search field
        view = next((name for key, _, name in self._views() if key == event.key), None)
        if view is None or self._answered:
            return
        event.stop()
        self.dismiss(None)
        self.app.call_later(self.app.open_view, view)  # type: ignore[attr-defined]

    def _keys_table(self, scope: str, title: str) -> Table:
        table = Table(box=None, show_header=True, header_style="bold", pad_edge=False, expand=False)
        table.add_column("key", style="bold cyan", no_wrap=True, min_width=7)
        table.add_column(title)
        rows = binding_rows(self.target, scope)
        if scope == "global":
            rows.append(("ctrl+p", "Command palette (search every action)"))
        for key, description in rows:
            if matches(self.filter_text, key, description):
                table.add_row(key, description)
        return table

    def action_close(self) -> None:
        self.dismiss(None)
