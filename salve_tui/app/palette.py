"""Command palette provider: every word of the query is looked for in a command's title *and*
its description, with Greek letters spelled out, so "alpha" finds α_crit and "export" finds
both the exports screen and "Record+export".

Textual's own system-commands provider fuzzy-matches the title only; this one keeps that
ranking for title matches and adds the word matches after them. The commands themselves come
from :meth:`salve_tui.app.app.SalveApp.get_system_commands` (deduplicated, only what can run).
"""

from __future__ import annotations

from collections.abc import Iterator

from textual.app import SystemCommand
from textual.command import CommandList, DiscoveryHit, Hit, Hits
from textual.system_commands import SystemCommandsProvider

SPELLED_OUT = {"α": "alpha", "β": "beta", "μ": "mu", "Δ": "delta", "δ": "delta", "λ": "lambda",
               "–": "-", "—": "-"}
WORD_MATCH_SCORE = 0.3  # below any fuzzy title match Textual reports for a real match


def searchable(text: str) -> str:
    """Lower case with Greek letters spelled out (``α_crit`` → ``alpha_crit``)."""
    text = text.lower()
    for letter, spelled in SPELLED_OUT.items():
        text = text.replace(letter, spelled)
    return text


def matches_every_word(query: str, title: str, help_text: str) -> bool:
    """Whether every whitespace-separated word of ``query`` occurs in the title or the help."""
    haystack = searchable(f"{title} {help_text}")
    words = searchable(query).split()
    return bool(words) and all(word in haystack for word in words)


class SalveCommands(SystemCommandsProvider):
    """The app's commands, found by fuzzy title match or by every word of title + description."""

    async def discover(self) -> Hits:
        for command in sorted(self.app.get_system_commands(self.screen), key=lambda c: c.title):
            if command.discover:
                yield DiscoveryHit(command.title, command.callback, help=command.help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for command in self.app.get_system_commands(self.screen):
            score = matcher.match(command.title)
            if score > 0:
                yield Hit(score, matcher.highlight(command.title), command.callback, help=command.help)
            elif matches_every_word(query, command.title, command.help):
                yield Hit(WORD_MATCH_SCORE, command.title, command.callback, help=command.help)


PAGE_WAIT_REFRESHES = 5


def guard_option_list_paging() -> None:
    """Work around Textual's ``OptionList._move_page`` ``KeyError: 0`` (Textual 8.2).

    Paging reads ``_index_to_line[highlighted]``, which is empty until the list has been laid out
    with a width: the palette fills and highlights its list a frame before that, so ctrl+p then
    PageDown typed quickly ended the app. Paging now waits for that layout (a refresh unrelated
    to the list may come first: up to :data:`PAGE_WAIT_REFRESHES` of them), and is ignored if
    the list still has no lines then.
    """
    from textual.widgets import OptionList

    original = OptionList._move_page
    if getattr(original, "salve_guarded", False):
        return

    def move_page(self: OptionList, direction: int) -> None:
        if self.highlighted is None or self.highlighted in self._index_to_line:
            original(self, direction)
            return

        def later(refreshes_left: int) -> None:
            if self.highlighted is not None and self.highlighted in self._index_to_line:
                original(self, direction)
            elif refreshes_left and self.is_attached:
                self.call_after_refresh(later, refreshes_left - 1)

        self.call_after_refresh(later, PAGE_WAIT_REFRESHES - 1)

    move_page.salve_guarded = True  # type: ignore[attr-defined]
    OptionList._move_page = move_page  # type: ignore[method-assign]


def everywhere_commands(app, screen) -> Iterator[SystemCommand]:  # noqa: ANN001 (SalveApp, Screen)
    """A view's ``PALETTE_EVERYWHERE`` actions from any screen ("all dominant" from the dashboard):
    the command opens the view and runs the action there. Views whose stages are not done, and the
    view already shown (its own commands list them), are left out."""
    from functools import partial

    for view in app.views:
        cls = view.factory
        actions = getattr(cls, "PALETTE_EVERYWHERE", ())
        if not actions or isinstance(screen, cls) or app.view_missing_stages(view.name):
            continue
        for binding in (b for b in cls.BINDINGS if b.action in actions):
            key = binding.key_display or binding.key
            yield SystemCommand(f"{view.title}: {binding.tooltip or binding.description} ({view.key}, then {key})",
                                f"Open {view.title} and run: {binding.tooltip or binding.description}",
                                partial(_open_and_run, app, view.name, cls, binding.action))


def _open_and_run(app, view_name: str, cls: type, action: str) -> None:  # noqa: ANN001
    app.open_view(view_name)
    screen = app.screen
    if isinstance(screen, cls):  # queued behind the screen's own compose and mount
        screen.call_later(screen.run_action, action)


def guard_palette_search() -> None:
    """Work around Textual's palette search failing when the palette closed before it started.

    ``CommandPalette._gather_commands`` (a worker) begins with ``query_one(CommandList)``; with
    ctrl+p then esc typed within a frame the palette is gone by then, the worker raises
    ``NoMatches`` and the failed worker ended the app. A search of a closed palette now ends
    quietly.
    """
    from textual import work
    from textual.command import CommandPalette
    from textual.css.query import NoMatches

    original = CommandPalette._gather_commands
    if getattr(original, "salve_guarded", False):
        return
    plain = original.__wrapped__  # the coroutine under Textual's @work

    @work(exclusive=True, group=CommandPalette._GATHER_COMMANDS_GROUP)
    async def gather(self: CommandPalette, search_value: str) -> None:
        try:
            await plain(self, search_value)
        except NoMatches:
            if self.is_attached and self.query(CommandList):
                raise  # not the closed-palette case: let Textual report it

    gather.salve_guarded = True  # type: ignore[attr-defined]
    CommandPalette._gather_commands = gather  # type: ignore[method-assign]


def guard_textual() -> None:
    """Both palette work-arounds above (idempotent; called when the app module loads)."""
    guard_option_list_paging()
    guard_palette_search()
