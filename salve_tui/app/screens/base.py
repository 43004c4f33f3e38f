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

One loading pattern for every screen
-----------------------------------
A screen paints at once and reads the session in a thread worker. Declare what it loads and
split reading from drawing::

    class MatrixScreen(SessionScreen):
        LOADING = "the feature–class matrix"          # shown as "loading the feature–class matrix…"
        CONTENT_ACTIONS = frozenset({"edit_feature"})  # greyed out (and inert) until loaded

        def load(self) -> MatrixData:                  # worker thread: no widgets, no self.query
            return MatrixData(...session reads, numpy, torch...)

        def show(self, data: MatrixData) -> None:      # UI thread, with what load() returned
            ...update widgets...

:meth:`SessionScreen.refresh_from_session` (on mount, when the screen is shown again and after
every job) starts :meth:`load` again (:meth:`SessionScreen.reload`; a key that changes what is
loaded calls it too); the first time a :class:`LoadingNotice` covers the content and says what
is loading (with the seconds elapsed); later reloads keep the old content until the new one
arrives. A failure replaces the notice with the message, never a traceback (or, with
``LOAD_ERROR_IN_INFO``, the screen's ``INFO`` line says it). Keys work throughout: ``esc``
leaves while a load runs (the worker's result is then ignored) and the actions in
``CONTENT_ACTIONS`` wait for the content.

What a key asks for later (the map of a chosen sample, a recomputed curve) goes through the same
machinery: ``self.compute_in_thread(compute, ready, group="saliency-map")`` runs ``compute`` in a
thread worker and calls ``ready(result)`` on the UI thread; an exception becomes
``cannot <FAILED>: why`` on the ``INFO`` line (:meth:`SessionScreen.show_failure`). Both report
back with one :class:`WorkDone` message; a result superseded by a newer run of its group, or
arriving after the screen was left, is dropped. No screen calls ``run_worker`` itself.

CSS: widgets keep theirs beside them in ``DEFAULT_CSS``; each screen's CSS lives in a ``.tcss``
file beside its module, named like the module (``analysis_matrix.tcss``) and loaded with
``CSS_PATH`` (Textual scopes a screen's ``CSS_PATH`` to that screen); ``app.tcss`` holds only
what is app-wide.

Things many screens need (control inputs, model/SAE/data, test latents and thumbnails) come from
``self.salve.shared`` (:class:`salve_tui.app.preload.SessionAssets`), loaded once in the
background right after the session opens and reloaded when a job changes a stage they depend on.
A ``load()`` that asks for one of them waits for the preloader instead of loading it twice.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen

from salve_tui.app.jobs import JOB_END_MESSAGES, JobMessage, releasing_thread_context
from salve_tui.app.widgets.chrome import MIN_SIZE, TooSmallNotice, breadcrumb_text, too_small_text
from salve_tui.app.widgets.notices import LoadingNotice, StaleNotice  # noqa: F401 (re-exported)

if TYPE_CHECKING:
    from core.store.session import Session
    from salve_tui.app.host import SalveHost

# Keys the dashboard itself uses; a registered view may not take them.
RESERVED_KEYS = frozenset({"r", "f", "a", "c", "q", "escape", "enter", "question_mark", "up", "down",
                           "tab", "shift+tab", "ctrl+p", "ctrl+q", "ctrl+c"})
VIEW_MODULE_PREFIX = "analysis_"
BUILTIN_VIEW_MODULES = ("salve_tui.app.screens.sae_training",)
LOAD_GROUP = "screen-load"  # the worker group of SessionScreen.reload
# After a screen's first refresh, the terminal writer thread still has to write the frame: a
# garbage collection started before would hold it up (the GIL). Measured in tmux: ~10 ms.
FIRST_FRAME_WRITTEN_S = 0.03


class SalveScreen(Screen):
    """Common base: a help paragraph for ``?`` and palette commands derived from bindings."""

    HELP_TEXT: ClassVar[str] = ""
    SCREEN_TITLE: ClassVar[str] = ""
    BREADCRUMB_ROOT: ClassVar[bool] = False  # the sessions list and the dashboard: not repeated
    # Declared on the base so "? Help" comes first in every footer (narrow terminals cut the end).
    BINDINGS: ClassVar[list[Binding]] = [
        Binding("question_mark", "app.help", "Help", key_display="?"),
    ]

    @property
    def salve(self) -> SalveHost:
        return self.app  # type: ignore[return-value]  # SalveApp implements SalveHost

    def on_mount(self) -> None:
        # Textual calls on_mount along the MRO: this runs for every screen, before its own.
        if getattr(self.app, "session", None) is not None:  # the header: where am I
            self.title, self.sub_title = breadcrumb_text(self), ""
        self.fit_to(self.app.size.width, self.app.size.height)
        collector = getattr(self.app, "collector", None)
        if collector is not None:  # a pass a close left pending: once this frame is written
            self.call_after_refresh(self.set_timer, FIRST_FRAME_WRITTEN_S, collector.screen_shown)

    def fit_to(self, width: int, height: int) -> None:
        """Below :data:`MIN_SIZE` one notice says what size is needed (instead of cut text)."""
        small = width < MIN_SIZE[0] or height < MIN_SIZE[1]
        self.set_class(small, "-too-small")
        if small and self.is_attached:  # mounted the first time it is needed: no cost on the usual first paint
            notices = self.query(TooSmallNotice)
            if notices:
                notices.first().update(too_small_text(width, height))
            else:
                self.mount(TooSmallNotice(too_small_text(width, height)))

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return True if self.is_mounted else None  # keys typed in the frame that pushed it

    def action_open_filter(self) -> None:
        """``/``: open the filter field of a screen with a long list (it has ``apply_filter``)."""
        from salve_tui.app.widgets.filter import FilterBar

        for bar in self.query(FilterBar):
            bar.open()


    def run_worker(self, work: Any, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("thread") and callable(work) and not inspect.iscoroutinefunction(work):
            work = releasing_thread_context(work)
        return super().run_worker(work, *args, **kwargs)

    def palette_commands(self) -> Iterable[SystemCommand]:
        """One palette entry per described action of this screen that can run now.

        App-wide actions (``app.…``: help, cancel) are listed once by the app, not per screen;
        an action whose :meth:`check_action` says no (content still loading, nothing to act on)
        is left out, as the footer leaves it out or greys it.
        """
        seen: set[str] = set()
        for bindings in self._bindings.key_to_bindings.values():
            for binding in bindings:
                if (not binding.description or binding.action in seen or binding.action.startswith("app.")
                        or binding.action in PALETTE_SKIPPED_ACTIONS
                        or binding.action.startswith(PALETTE_SKIPPED_PREFIXES)):
                    continue
                seen.add(binding.action)
                name, parameters = _split_action(binding.action)
                if not self.check_action(name, parameters):
                    continue
                key = binding.key_display or self.app.get_key_display(binding)
                description = self.binding_description(binding)
                yield SystemCommand(
                    f"{description} ({key})",
                    f"{self.SCREEN_TITLE or type(self).__name__}: {binding.tooltip or description} "
                    f"(press {key})",
                    _runner(self, binding.action),
                )

    def binding_description(self, binding: Binding) -> str:
        """What a key does, as the palette lists it (a screen may word it for its state)."""
        return binding.description


# Listed by the app already (views as "Open: …") or Textual internals, so never per screen.
PALETTE_SKIPPED_ACTIONS = frozenset({"screen.copy_text", "copy_text"})
PALETTE_SKIPPED_PREFIXES = ("open_view(",)


def _split_action(action: str) -> tuple[str, tuple[object, ...]]:
    """``"move(0, -1)"`` → ``("move", (0, -1))`` (the parsed form :meth:`check_action` takes)."""
    from textual.actions import parse

    _, name, parameters = parse(action)
    return name, parameters


def _runner(screen: Screen, action: str) -> Callable[[], object]:
    async def run() -> None:
        await screen.run_action(action)

    return run


# --------------------------------------------------------------------------- loading pattern


def stale_warning(session: Session, kinds: tuple[str, ...]) -> str:
    """``warning: …`` naming the stored results of ``kinds`` that a stage rerun made out of
    date (and why), or "" when they are current."""
    if not kinds:
        return ""
    from core.workflow.results import stale_warnings

    lines = stale_warnings(session, kinds, short=True)
    return "warning: " + "; ".join(lines) + "; recompute them" if lines else ""


class WorkDone(Message):
    """Thread work of a screen (its :meth:`SessionScreen.load` or a
    :meth:`SessionScreen.compute_in_thread`) returned or raised; posted from the worker thread.
    ``callback(value)`` runs on the UI thread unless a newer run of ``group`` superseded it."""

    def __init__(self, group: str, generation: int, callback: Callable[[Any], None], value: Any) -> None:
        super().__init__()
        self.group = group
        self.generation = generation
        self.callback = callback
        self.value = value


class SessionScreen(SalveScreen):
    """A screen about the open session; re-reads it after jobs and when shown again."""

    BINDINGS: ClassVar[list[Binding]] = [
        Binding("escape", "back", "Back"),
        Binding("c", "app.cancel_job", "Cancel"),  # only while a job runs (SalveApp.check_action)
    ]
    LOADING: ClassVar[str] = ""  # what load() reads ("the feature–class matrix"); "" = no worker
    CONTENT_ACTIONS: ClassVar[frozenset[str]] = frozenset()  # actions that need the loaded content
    #: Kinds of stored results the screen shows (``core.workflow.results.RESULT_KINDS``): each
    #: load also checks them, and a :class:`StaleNotice` under the header says when a stage was
    #: rerun since they were computed.
    RESULT_KINDS: ClassVar[tuple[str, ...]] = ()
    INFO: ClassVar[str] = ""  # id of the screen's info line, where failed computations are said
    FAILED: ClassVar[str] = ""  # what a failure stops ("draw saliency maps"): "cannot draw …: why"
    #: True: a failed load is said on the info line too (where the screen's status lives) and
    #: the loading notice steps aside; False: the notice says it over the content.
    LOAD_ERROR_IN_INFO: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__()
        self._generations: dict[str, int] = {}
        self.loaded = not self.LOADING  # screens without a load() have their content at once
        self.load_error = ""
        self._resumed = False

    @property
    def session(self) -> Session:
        session = self.salve.session
        if session is None:
            raise RuntimeError("no session is open")
        return session

    def on_mount(self) -> None:
        # Along the MRO, subclass first (its tables are built); subclasses don't call super().
        if not self.is_attached:  # esc typed in the frame that pushed it: already gone
            return
        self.salve.job_events.subscribe(self, self._job_event)
        if self.LOADING:
            self.mount(LoadingNotice(self.loading_what()))
            # After the first frame: the worker's reads would delay its layout (the GIL).
            self.call_after_refresh(self.refresh_from_session)
        else:
            self.refresh_from_session()

    def on_unmount(self) -> None:
        # Textual drops a removed node's subscription only at the next publish, and the callback
        # (a bound method) keeps the whole popped screen alive until then: every screen opened
        # and closed between two jobs piled up (and made each full collection slower).
        self.salve.job_events.unsubscribe(self)
        self.salve.collector.closed(self)

    def on_screen_resume(self) -> None:
        if not self._resumed:  # the first resume comes with the push: on_mount loads already
            self._resumed = True
            return
        if self.salve.session is not None:
            self.refresh_from_session()

    def _job_event(self, message: JobMessage) -> None:
        if not self.is_attached or self.salve.session is None:
            return
        self.on_job_update(message)
        if isinstance(message, JOB_END_MESSAGES):
            self.refresh_from_session()

    def refresh_from_session(self) -> None:
        """Re-read what this screen shows. The default runs :meth:`load` in a worker; screens
        with fast synchronous reads may override it instead."""
        if self.LOADING:
            self.reload()

    # ----- the load pattern (see the module docstring)

    def loading_what(self) -> str:
        """What the loading notice names; :attr:`LOADING` unless a screen says more (its feature)."""
        return self.LOADING

    def load(self) -> Any:
        """Read what the screen shows; runs in a thread worker (no widget access). Override."""
        return None

    def show(self, data: Any) -> None:
        """Draw what :meth:`load` returned; runs on the UI thread. Override."""

    def show_error(self, error: str) -> None:
        """:meth:`load` failed: the notice says why, over the old content ("out of date") when
        a reload failed (e.g. a stage was rerun and is not done yet); with
        :attr:`LOAD_ERROR_IN_INFO` the info line says it instead."""
        notices = self.query(LoadingNotice)
        if self.LOAD_ERROR_IN_INFO:
            for notice in notices:
                notice.done()
            self.show_failure(error)
        elif notices:
            notices.first().failed(error, stale=self.loaded)
        else:
            self.notify(error, title=f"cannot refresh {self.SCREEN_TITLE}", severity="error")

    def show_failure(self, error: str) -> None:
        """A :meth:`compute_in_thread` failed: ``cannot <FAILED>: why`` in red on the
        :attr:`INFO` line (a notification on a screen without one)."""
        if not self.INFO:
            self.notify(error, title=f"cannot {self.FAILED or 'compute'}", severity="error")
            return
        from rich.text import Text
        from textual.widgets import Static

        self.query_one(f"#{self.INFO}", Static).update(
            Text(f"cannot {self.FAILED or 'compute'}: {error}", style="red"))

    def compute_in_thread(self, compute: Callable[[], Any], ready: Callable[[Any], None],
                          failed: Callable[[str], None] | None = None, group: str = "compute") -> None:
        """Run ``compute()`` in a thread worker (no widget access there) and hand its result to
        ``ready`` on the UI thread; an exception's text (:func:`salve_tui.app.jobs.error_text`)
        goes to ``failed`` (default :meth:`show_failure`). A newer call with the same ``group``
        supersedes a running one (its result is dropped), and so does leaving the screen.

        :meth:`reload` runs :meth:`load` through it; screens use it for what a key asks for
        later (the map of a chosen sample, a recomputed curve)."""
        generation = self._generations[group] = self._generations.get(group, 0) + 1
        on_error = failed or self.show_failure

        def body() -> None:
            from salve_tui.app.jobs import error_text

            try:
                result = compute()
            except Exception as exc:  # shown on the screen; a computation never crashes the app
                self.post_message(WorkDone(group, generation, on_error, error_text(exc)))
            else:
                self.post_message(WorkDone(group, generation, ready, result))

        self.run_worker(body, thread=True, exclusive=True, group=group, exit_on_error=False,
                        name=f"{group} {self.LOADING}".strip())

    def on_work_done(self, message: WorkDone) -> None:
        message.stop()
        if message.generation != self._generations.get(message.group) or not self.is_attached:
            return  # superseded by a newer run of its group, or the screen was left
        message.callback(message.value)

    def reload(self) -> None:
        """Start :meth:`load` in a worker; a newer reload supersedes a running one."""

        def body() -> tuple[Any, str]:
            data = self.load()
            return data, stale_warning(self.session, self.RESULT_KINDS)

        self.compute_in_thread(body, self._loaded, self._load_failed, group=LOAD_GROUP)

    def _loaded(self, loaded: tuple[Any, str]) -> None:
        data, warning = loaded
        first = not self.loaded
        self.loaded, self.load_error = True, ""
        self.show(data)
        if self.RESULT_KINDS:
            self._show_stale(warning)
        for notice in self.query(LoadingNotice):
            notice.done()
        if first:
            self.refresh_bindings()

    def _load_failed(self, error: str) -> None:
        self.load_error = error
        self.show_error(error)

    def _show_stale(self, warning: str) -> None:
        notices = self.query(StaleNotice)
        if notices:
            notices.first().warn(warning)
        elif warning:
            from textual.widgets import Header

            notice = StaleNotice()
            headers = self.query(Header)
            if headers:
                self.mount(notice, after=headers.first())
            else:
                self.mount(notice, before=0)
            notice.warn(warning)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if not super().check_action(action, parameters) or self.salve.session is None:
            return None  # not mounted yet, or the session closed under a key still queued
        if action in self.CONTENT_ACTIONS and not self.loaded:
            return None  # shown greyed in the footer; the key does nothing until the content is in
        return True

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


def preparse_screen_css(app: App) -> int:
    """Read every screen's ``.tcss`` into the stylesheet at once, while the dashboard is idle.

    Textual parses a screen's CSS_PATH (and re-applies the whole stylesheet) at its first push,
    ~25 ms under the key that opens it. Every rule in these files starts with its screen's type,
    so reading them early styles nothing else. Returns how many files were new."""
    stylesheet = app.stylesheet
    paths = [path for path in sorted(Path(__file__).parent.glob("*.tcss"))
             if not stylesheet.has_source(str(path), "")]
    for path in paths:
        stylesheet.read(path)
    if paths:
        stylesheet.reparse()
        stylesheet.update(app)
    return len(paths)
