"""Small text formatting helpers shared by screens (stage glyphs, times, durations)."""

from __future__ import annotations

import time

from rich.text import Text

# One glyph + colour per committed stage state, so five stages fit in a narrow table column.
STAGE_GLYPHS: dict[str, tuple[str, str]] = {
    "done": ("✓", "green"),
    "partial": ("◐", "yellow"),
    "failed": ("✗", "red"),
    "stale": ("~", "magenta"),
    "pending": ("·", "bright_black"),
    "running": ("▶", "cyan"),
}

STAGE_LEGEND = "✓ done  ◐ partial  ~ stale  ✗ failed  · pending"


def stage_glyphs(states: dict[str, str], order: tuple[str, ...]) -> Text:
    """``✓✓◐··`` coloured: one glyph per stage in pipeline order."""
    text = Text()
    for stage in order:
        glyph, colour = STAGE_GLYPHS.get(states.get(stage, "pending"), ("?", "red"))
        text.append(glyph, style=colour)
    return text


def stage_state_text(state: str) -> Text:
    glyph, colour = STAGE_GLYPHS.get(state, ("?", "red"))
    return Text(f"{glyph} {state}", style=colour)


def format_timestamp(seconds: float) -> str:
    """Local date and minute; empty for 'never'."""
    if not seconds:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(seconds))


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = max(0, int(round(seconds)))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def format_metric(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


# CLI advice in core's messages, said in the TUI's keys and screens (first match per pattern).
TUI_WORDS: tuple[tuple[str, str], ...] = (
    (r"; use --mode suppress", ": switch to suppress with s"),
    (r" \(CLI: --no-record\)", ""),
    (r" or pass record=False", ""),
    (r"\. Copy it to a writable folder \(--sessions-dir\), or pass --no-record to compute without saving",
     ". Copy its .h5 file to a folder you can write to and open that copy"),
    (r"; pass --force to replace it or choose another name", "; answer Replace to replace it"),
    (r"\(?`salve run [^`]*--force`\)?", "rerun that stage on the dashboard (f)"),
    (r"`salve run [^`]*`", "run the pending stages on the dashboard (a)"),
    (r"`salve sweep [^`]*`", "the α_crit screen (k)"),
    (r"`salve alpha-crit[^`]*`", "the α_crit screen (k)"),
    (r"`salve robustness [^`]*`", "the robustness screen"),
    (r"`salve edit [^`]*`( or w in the TUI)?", "w in the edit preview (e)"),
    (r" with `salve info`", " from a shell (salve info)"),
)


def tui_words(message: str) -> str:
    """``message`` with CLI flags and commands replaced by the TUI's keys and screens."""
    import re

    for pattern, replacement in TUI_WORDS:
        message = re.sub(pattern, replacement, message)
    return message


def elide_path(path: str, width: int) -> str:
    """``path`` in at most ``width`` cells: the folders are shortened in the middle first, so the
    file name stays whole (a name longer than the width keeps its start and its extension)."""
    if width <= 1 or len(path) <= width:
        return path if width > 1 else path[:max(width, 0)]
    folder, _, name = path.rpartition("/")
    if len(name) + 2 <= width and folder:
        room = width - len(name) - 2  # "…" and "/"
        head = room // 2
        return f"{folder[:head]}…{folder[len(folder) - (room - head):] if room - head else ''}/{name}"
    keep = width - 1
    return f"{name[:keep - keep // 2]}…{name[len(name) - keep // 2:] if keep // 2 else ''}"


def cut_label(label: str, width: int) -> str:
    """``label`` in ``width`` cells, with "…" as the last cell when it had to be shortened."""
    if len(label) <= width:
        return label
    return label[:max(width - 1, 0)] + "…" if width > 0 else ""
