"""The title bar and key footer every screen docks: Textual's, minus two leaks.

Both Textual widgets register watchers on a longer-lived object (the header on the app, each
footer key on its footer) that are dropped only when the watched value next changes. The
callbacks hold the widgets: every closed screen stayed alive with its header, and every
recompose of a footer (each binding refresh) left its old keys behind. After 20 screens opened
and closed: 504 detached widgets and 39k → 138k objects, which made each full garbage collection
slower (a 240–510 ms stall on one screen open in ten). These subclasses remove their own stale
watchers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.css.query import NoMatches
from textual.dom import DOMNode, NoScreen
from textual.events import Mount
from textual.widgets import Footer, Header, Static
from textual.widgets._header import HeaderIcon, HeaderTitle

from salve_tui.app.bindings import _is_listed
from salve_tui.app.format import format_duration

BAR_CELLS = 10
DONE_SHOWN_S = 8.0  # how long "✓ export done" stays in the header after a job ends


def _drop_watchers(obj: object, names: tuple[str, ...], keep: Callable[[DOMNode], bool]) -> None:
    """Filter ``obj``'s registered watchers (Textual keeps them in ``obj.__watchers``)."""
    watchers: dict[str, list[tuple[DOMNode, object]]] = getattr(obj, "__watchers", {})
    for name in names:
        entries = watchers.get(name)
        if entries:
            entries[:] = [entry for entry in entries if keep(entry[0])]


def bar_text(fraction: float, cells: int = BAR_CELLS) -> str:
    """``███▌      ``: a bar of ``cells`` cells filled to ``fraction`` in eighths of a cell."""
    eighths = round(max(0.0, min(1.0, fraction)) * cells * 8)
    full, part = divmod(eighths, 8)
    return ("█" * full + (" ▏▎▍▌▋▊▉"[part] if part else "")).ljust(cells)


#: A job with no progress report yet shows its elapsed time only after this many seconds.
STARTING_CLOCK_AFTER_S = 5.0


def job_summary(job: Any, now: float | None = None) -> Text:
    """The header's view of a running job: ``name ███▌ 45% ETA 1m02s``."""
    progress = job.latest
    text = Text()
    if job.cancelling:
        text.append("cancelling ", style="bold yellow")
    text.append(job.name.removeprefix("export: ")[:24], style="bold")
    if progress is None or progress.total <= 0:
        text.append(" starting…")
        if job.elapsed >= STARTING_CLOCK_AFTER_S:  # a clock only once a start takes a while
            text.append(f" {format_duration(job.elapsed)}")
    else:
        text.append(f" {bar_text(progress.fraction)}", style="cyan on grey23")
        text.append(f" {progress.fraction:.0%}")
        eta = progress.eta_seconds
        text.append(f" ETA {format_duration(eta)}" if eta is not None else " ETA …", style="bright_black")
    return text  # the footer says "c Cancel" while a job runs


class JobIndicator(Static):
    """The running job (bar, %, ETA) on the right of every screen's header; after it ends, how it
    ended for a few seconds (instead of a toast that would cover results). Read-only sessions
    show a badge here."""

    DEFAULT_CSS = """
    JobIndicator { dock: right; width: auto; max-width: 65%; height: 1; padding: 0 1; text-wrap: nowrap; text-overflow: ellipsis; }
    """

    def __init__(self, text: str = "") -> None:
        super().__init__(text, markup=False)
        self.ended: tuple[str, str, float] | None = None  # (text, style, monotonic time)

    def on_mount(self) -> None:
        events = getattr(self.app, "job_events", None)
        if events is not None:
            events.subscribe(self, self._job_event)
        self.set_interval(0.5, self.redraw)
        self.redraw()

    def on_unmount(self) -> None:
        events = getattr(self.app, "job_events", None)
        if events is not None:
            events.unsubscribe(self)

    def _job_event(self, message: Any) -> None:
        from salve_tui.app.jobs import JobCancelled, JobFailed, JobFinished

        name = message.job.name
        if isinstance(message, JobFinished):
            self.ended = (f"✓ {name} done", "green", time.monotonic())
        elif isinstance(message, JobFailed):
            self.ended = (f"✗ {name} failed (ctrl+n: messages)", "bold red", time.monotonic())
        elif isinstance(message, JobCancelled):
            self.ended = (f"{name} cancelled", "yellow", time.monotonic())
        self.redraw()

    def redraw(self) -> None:
        text = Text()
        reason = getattr(self.app, "read_only_reason", None)
        if reason:
            text.append(" READ-ONLY ", style="bold black on yellow")
        jobs = getattr(self.app, "jobs", None)
        job = jobs.current if jobs is not None else None
        if job is not None and not job.finished:
            text.append(" " if text else "").append_text(job_summary(job))
        elif self.ended is not None and time.monotonic() - self.ended[2] < DONE_SHOWN_S:
            text.append(" " if text else "").append(self.ended[0], style=self.ended[1])
        self.update(text)


class ScreenHeader(Header):
    """A :class:`~textual.widgets.Header` that lets go of the app when its screen closes, and
    shows the global job indicator (and the read-only badge) on its right."""

    def compose(self) -> ComposeResult:
        yield HeaderIcon().data_bind(Header.icon)
        yield JobIndicator()
        yield HeaderTitle()

    def _on_mount(self, event: Mount) -> None:
        # Replaces Header's: its title watcher catches NoScreen but not NoMatches, which a title
        # change raises while the screen is being torn down (its HeaderTitle already gone) and
        # which then ends the app (random keys hit it about one run in three).
        event.prevent_default()

        async def set_title() -> None:
            try:
                self.query_one(HeaderTitle).update(self.format_title())
            except (NoScreen, NoMatches):
                pass

        for node in (self.app, self.screen):
            self.watch(node, "title", set_title)
            self.watch(node, "sub_title", set_title)

    def on_unmount(self) -> None:
        _drop_watchers(self.app, ("title", "sub_title"), lambda node: node is not self)


WIDE_FOOTER = 120  # from this many columns the footer adds the screen's other keys that fit
PALETTE_CELLS = 16  # kept free for "^p palette" at the right


def _cells(binding: Any, display: str, compact: bool) -> int:
    return len(display) + len(binding.description or "") + (2 if compact else 3)


class ScreenFooter(Footer):
    """A :class:`~textual.widgets.Footer` whose recompose does not keep the keys it replaced, and
    that uses the width it has: at :data:`WIDE_FOOTER`+ columns it also shows the screen's keys
    that are otherwise only in help (``?``), as many as fit."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._wide = False

    async def recompose(self) -> None:
        await super().recompose()
        _drop_watchers(self, ("compact",), lambda node: not (node._closing or node._closed))

    def on_resize(self) -> None:
        wide = self.app.size.width >= WIDE_FOOTER
        if wide != self._wide:
            self._wide = wide
            self.call_after_refresh(self.recompose)

    def shown_bindings(self) -> list[tuple[Any, bool, str]]:
        """(binding, enabled, tooltip) to show: those marked ``show``, then at wide terminals the
        screen's other described keys while they fit."""
        actives = list(self.screen.active_bindings.values())
        shown = [(a.binding, a.enabled, a.tooltip) for a in actives if a.binding.show]
        width = self.app.size.width
        if width < WIDE_FOOTER:
            return shown
        used = sum(_cells(b, self.app.get_key_display(b), self.compact) for b, _, _ in shown)
        actions = {b.action for b, _, _ in shown}
        for active in actives:
            binding = active.binding
            if (binding.show or not binding.description or binding.action in actions
                    or binding.action.startswith("app.") or not _is_listed(active, self.screen)):
                continue
            cells = _cells(binding, self.app.get_key_display(binding), self.compact)
            if used + cells > width - PALETTE_CELLS:
                break
            used += cells
            actions.add(binding.action)
            shown.append((binding, active.enabled, active.tooltip))
        return shown

    def compose(self) -> ComposeResult:
        """Textual's footer layout over :meth:`shown_bindings` (it reads only ``show`` keys)."""
        from collections import defaultdict
        from itertools import groupby

        from textual.widgets._footer import FooterKey, FooterLabel, KeyGroup

        if not self._bindings_ready:
            return
        self._wide = self.app.size.width >= WIDE_FOOTER
        by_action: defaultdict[str, list[tuple[Any, bool, str]]] = defaultdict(list)
        for binding, enabled, tooltip in self.shown_bindings():
            by_action[binding.action].append((binding, enabled, tooltip))
        self.styles.grid_size_columns = len(by_action)
        for group, items in groupby(by_action.values(), lambda multi: multi[0][0].group):
            multi = list(items)
            if group is not None and len(multi) > 1:
                with KeyGroup(classes="-compact" if group.compact else ""):
                    for binding, enabled, tooltip in (m[0] for m in multi):
                        yield FooterKey(binding.key, self.app.get_key_display(binding), "", binding.action,
                                        disabled=not enabled, tooltip=tooltip or binding.description,
                                        classes="-grouped").data_bind(compact=Footer.compact)
                yield FooterLabel(group.description)
                continue
            for binding, enabled, tooltip in (m[0] for m in multi):
                yield FooterKey(binding.key, self.app.get_key_display(binding), binding.description,
                                binding.action, disabled=not enabled,
                                tooltip=tooltip).data_bind(compact=Footer.compact)
        if self.show_command_palette and self.app.ENABLE_COMMAND_PALETTE:
            active = self.screen.active_bindings.get(self.app.COMMAND_PALETTE_BINDING)
            if active is not None:
                binding = active.binding
                yield FooterKey(binding.key, self.app.get_key_display(binding), binding.description,
                                binding.action, classes="-command-palette", disabled=not active.enabled,
                                tooltip=binding.tooltip or binding.description)


MIN_SIZE = (80, 24)  # every screen is laid out for at least this many columns and rows


def too_small_text(width: int, height: int) -> str:
    return (f"This terminal is {width}×{height}; salve-tui needs at least {MIN_SIZE[0]}×{MIN_SIZE[1]}.\n"
            "Enlarge the window (or make the font smaller). q quits.")


class TooSmallNotice(Static):
    """Covers the whole screen while the terminal is below :data:`MIN_SIZE`."""

    SCOPED_CSS = False  # the rule depends on the screen's class
    DEFAULT_CSS = """
    TooSmallNotice { display: none; }
    .-too-small TooSmallNotice {
        display: block; position: absolute; offset: 0 0; width: 100%; height: 100%; padding: 1 2;
        background: $panel; color: $warning; text-style: bold; layer: too-small;
    }
    """

    def __init__(self, text: str = "") -> None:
        super().__init__(text, markup=False)


def breadcrumb_text(screen: Any) -> str:
    """``demo › Edit preview › Confusion before/after``: the session, then the screens from the
    dashboard to ``screen`` (roots such as the dashboard are not repeated; more than three parts
    keep the first and the last). The header shows it."""
    app = screen.app
    session = getattr(app, "session", None)
    parts = [session.name] if session is not None else []
    stack = list(app.screen_stack)
    below = stack[: stack.index(screen) + 1] if screen in stack else [*stack, screen]
    for shown in below:
        title = getattr(shown, "SCREEN_TITLE", "")
        if title and not getattr(shown, "BREADCRUMB_ROOT", False):
            parts.append(title)
    own = getattr(screen, "SCREEN_TITLE", "")
    if len(parts) == 1 and own:  # the dashboard: demo › Pipeline dashboard
        parts.append(own)
    if len(parts) > 3:  # the header has one line
        parts = [parts[0], "…", parts[-1]]
    return " › ".join(parts) or own
