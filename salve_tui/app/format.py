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
