"""``ctrl+n``: the last messages (notifications) again, newest first.

Toasts vanish after a few seconds and may cover what a screen shows; every message is also kept
here (:class:`MessageHistory`), so a written path or an error can be read again at leisure.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Static

from salve_tui.app.screens.confirm import OnceModal

KEPT = 50
SEVERITY_STYLES = {"information": "", "warning": "yellow", "error": "bold red"}
READ_ONLY_FIX = ("to work on it, copy its .h5 file to a folder you can write to and open that copy "
                 "(esc, then the sessions list)")
READ_ONLY_NOTICE = ("This session's folder is read-only: you can look at everything, but running "
                    "stages, recording edits and exports are disabled; " + READ_ONLY_FIX)


@dataclass(frozen=True)
class Message:
    stamp: float
    title: str
    text: str
    severity: str


class MessageHistory:
    """The last :data:`KEPT` messages the app showed, oldest first."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    def add(self, text: str, title: str, severity: str, stamp: float | None = None) -> None:
        self.messages.append(Message(time.time() if stamp is None else stamp, title, text, severity))
        del self.messages[:-KEPT]

    def as_text(self) -> Text:
        text = Text()
        if not self.messages:
            return Text("no messages yet", style="dim")
        for message in reversed(self.messages):
            text.append(time.strftime("%H:%M:%S ", time.localtime(message.stamp)), style="bright_black")
            if message.title:
                text.append(f"{message.title}: ", style="bold")
            text.append(f"{message.text}\n", style=SEVERITY_STYLES.get(message.severity, ""))
        return text


class MessagesScreen(OnceModal[None]):
    """The message history as a scrollable list; esc or ctrl+n closes it."""

    BINDINGS: ClassVar[list[Binding]] = [Binding("escape,ctrl+n,q", "dismiss", "Close")]
    CSS_PATH = Path(__file__).with_suffix(".tcss")  # this module's screens

    def __init__(self, history: MessageHistory) -> None:
        super().__init__()
        self.history = history

    def compose(self) -> ComposeResult:
        with Vertical(id="messages-dialog"):
            yield Static("Messages, newest first (esc closes)", id="messages-title")
            with VerticalScroll(id="messages-body"):
                yield Static(self.history.as_text(), id="messages-text", markup=False)

    def action_dismiss(self) -> None:  # type: ignore[override]
        self.dismiss(None)


class StoreNotices(logging.Handler):
    """The store's notices (a schema migration) as a toast: jobs write from worker threads."""

    def __init__(self, app: App) -> None:
        super().__init__(logging.WARNING)
        self.app = app

    @classmethod
    def attach(cls, app: App) -> None:
        logger = logging.getLogger("salve")
        for handler in [h for h in logger.handlers if isinstance(h, cls)]:
            logger.removeHandler(handler)
        logger.addHandler(cls(app))

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        try:
            self.app.call_from_thread(self.app.notify, message, title="session", timeout=10)
        except RuntimeError:  # already on the app's thread
            self.app.notify(message, title="session", timeout=10)
