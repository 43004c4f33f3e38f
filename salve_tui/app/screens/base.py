"""Base screens and the registry of session views.

Every screen derives from :class:`SalveScreen` (help text, command-palette entries built from its
bindings). Screens that show an open session derive from :class:`SessionScreen`: they re-read the
session file (the source of truth) in :meth:`SessionScreen.refresh_from_session` when mounted,
when they come back to the top of the stack and whenever a job ends, and get live job updates in
:meth:`SessionScreen.on_job_update`.

A screen reachable from the pipeline dashboard registers itself with :func:`session_view`::

    @session_view(key="m", title="Feature–class matrix", requires=("rankings",))
    class MatrixScreen(SessionScreen): ...

Modules named ``salve_tui/app/screens/analysis_*.py`` are imported by :func:`discover_views`, so a
new screen needs no edit anywhere else: the dashboard gets a key for it, the command palette an
entry, and the help screen lists it. View modules must not import torch at module level (the
app imports them at start-up); import it inside the functions or workers that need it.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from textual.app import SystemCommand
from textual.binding import Binding
from textual.screen import Screen

from salve_tui.app.jobs import JOB_END_MESSAGES, JobMessage

if TYPE_CHECKING:
    from core.store.session import Session
    from salve_tui.app.app import SalveApp

# Keys the dashboard itself uses; a registered view may not take them.
RESERVED_KEYS = frozenset({"r", "f", "a", "c", "q", "escape", "enter", "question_mark", "up", "down",
                           "tab", "shift+tab", "ctrl+p", "ctrl+q", "ctrl+c"})
VIEW_MODULE_PREFIX = "analysis_"
BUILTIN_VIEW_MODULES = ("salve_tui.app.screens.sae_training",)


class SalveScreen(Screen):
    """Common base: a help paragraph for ``?`` and palette commands derived from bindings."""

    HELP_TEXT: ClassVar[str] = ""
    SCREEN_TITLE: ClassVar[str] = ""
    # Declared on the base so "? Help" comes first in every footer (narrow terminals cut the end).
    BINDINGS: ClassVar[list[Binding]] = [
        Binding("question_mark", "app.help", "Help", key_display="?"),
    ]

    @property
    def salve(self) -> SalveApp:
        return self.app  # type: ignore[return-value]

    def palette_commands(self) -> Iterable[SystemCommand]:
        """One palette entry per described binding of this screen (so the palette lists actions)."""
        seen: set[str] = set()
        for bindings in self._bindings.key_to_bindings.values():
            for binding in bindings:
                if not binding.description or binding.action in seen:
                    continue
                seen.add(binding.action)
                key = binding.key_display or self.app.get_key_display(binding)
                yield SystemCommand(
                    f"{binding.description} ({key})",
                    f"{self.SCREEN_TITLE or type(self).__name__}: press {key}",
                    _runner(self, binding.action),
                )


def _runner(screen: Screen, action: str) -> Callable[[], object]:
    async def run() -> None:
        await screen.run_action(action)

    return run


class SessionScreen(SalveScreen):
    """A screen about the open session; re-reads it after jobs and when shown again."""

    BINDINGS: ClassVar[list[Binding]] = [
        Binding("escape", "back", "Back"),
        Binding("c", "app.cancel_job", "Cancel job"),
    ]

    @property
    def session(self) -> Session:
        session = self.salve.session
        if session is None:
            raise RuntimeError("no session is open")
        return session

    def on_mount(self) -> None:
        # Textual calls on_mount along the MRO, subclass first: a subclass's on_mount (building
        # tables) has run when this refresh happens. Subclasses must not call super().on_mount().
        self.salve.job_events.subscribe(self, self._job_event)
        self.refresh_from_session()

    def on_screen_resume(self) -> None:
        if self.salve.session is not None:
            self.refresh_from_session()

    def _job_event(self, message: JobMessage) -> None:
        if not self.is_attached or self.salve.session is None:
            return
        self.on_job_update(message)
        if isinstance(message, JOB_END_MESSAGES):
            self.refresh_from_session()

    def refresh_from_session(self) -> None:
        """Re-read what this screen shows from the session file. Override."""

    def on_job_update(self, message: JobMessage) -> None:
        """Live job messages (progress, start, end). Override to show them."""

    def action_back(self) -> None:
        self.app.pop_screen()


# --------------------------------------------------------------------------- view registry


@dataclass(frozen=True)
class SessionView:
    """A screen the dashboard can open: ``key`` on the dashboard, ``title`` in footer and palette."""

    name: str
    key: str
    title: str
    factory: Callable[[], Screen]
    requires: tuple[str, ...] = ()
    description: str = ""
    order: int = 100
    footer: str = ""  # short label for the 80-column footer (defaults to the title)
    in_footer: bool = True  # False: the key works and help/palette list it, the footer does not


_VIEWS: dict[str, SessionView] = {}


def session_view(*, key: str, title: str, requires: tuple[str, ...] = (), description: str = "",
                 order: int = 100, name: str | None = None,
                 footer: str | None = None,
                 in_footer: bool = True) -> Callable[[type[Screen]], type[Screen]]:
    """Class decorator registering a screen as a dashboard view (see the module docstring)."""

    def register(cls: type[Screen]) -> type[Screen]:
        view_name = name or cls.__name__
        if key in RESERVED_KEYS:
            raise ValueError(f"view {view_name}: key '{key}' is used by the dashboard; pick another")
        for other in _VIEWS.values():
            if other.key == key and other.name != view_name:
                raise ValueError(f"view {view_name}: key '{key}' is already used by {other.name}")
        _VIEWS[view_name] = SessionView(view_name, key, title, cls, tuple(requires), description, order,
                                        footer or title, in_footer)
        return cls

    return register


def discover_views() -> list[SessionView]:
    """Import the built-in and ``analysis_*`` view modules once; return the views in order."""
    import salve_tui.app.screens as package

    modules = list(BUILTIN_VIEW_MODULES)
    modules += sorted(
        f"{package.__name__}.{info.name}"
        for info in pkgutil.iter_modules(package.__path__)
        if info.name.startswith(VIEW_MODULE_PREFIX)
    )
    for module in modules:
        importlib.import_module(module)
    return sorted(_VIEWS.values(), key=lambda v: (v.order, v.title))


def get_view(name: str) -> SessionView:
    return _VIEWS[name]
