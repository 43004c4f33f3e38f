"""Helpers shared by the analysis views: test images for thumbnails, number formatting.

No view is registered here (the module is imported by view discovery like the other
``analysis_*`` modules, so it must stay free of module-level torch imports).

Model, SAE and dataset for previews come from :func:`core.workflow.assets.load_assets` (cached per
session, shared under ``core.workflow.assets.MODEL_LOCK``); Grad-FAM of one sample is
:func:`core.workflow.saliency_maps.saliency_map`, called in a screen thread worker because it is read-only and
need not wait for — or block — the session's single writer job.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
from rich.text import Text

if TYPE_CHECKING:
    from textual.screen import Screen

    from core.store.session import Session
    from core.workflow.saliency_maps import SaliencyResult


def sample_images(session: Session, indices: list[int] | np.ndarray) -> np.ndarray:
    """``(B, H, W, 3)`` uint8 test images (the split the activations and rankings index)."""
    from core.workflow.pipeline import load_data

    return load_data(session.config).test.raw_images(np.asarray(indices, dtype=np.int64))


def gradfam_with_overlay(
    session: Session, sample: int, feature: int
) -> tuple[SaliencyResult, np.ndarray]:
    """The core's Grad-FAM of ``feature`` on test ``sample`` and its blended overlay, computed
    together so a worker does all the work off the UI thread."""
    from core.workflow.figures import overlay
    from core.workflow.saliency_maps import saliency_map

    result = saliency_map(session, sample, feature=feature)
    return result, overlay(result.image, result.heat, 0.5)


def load_in_thread(screen: Screen, compute: Callable[[], Any], ready: Callable[[Any], None],
                   failed: Callable[[str], None], group: str) -> None:
    """Run ``compute`` in a thread worker; hand its result to ``ready`` (or its error message to
    ``failed``) on the UI thread, unless the screen was left or a newer load replaced it."""
    from textual.worker import get_current_worker

    def work() -> None:
        worker = get_current_worker()
        try:
            result = compute()
        except Exception as exc:  # shown on the screen; a load never crashes the app
            if not worker.is_cancelled:
                screen.app.call_from_thread(_if_attached, screen, failed, str(exc) or type(exc).__name__)
            return
        if not worker.is_cancelled:
            screen.app.call_from_thread(_if_attached, screen, ready, result)

    screen.run_worker(work, thread=True, exclusive=True, group=group, exit_on_error=False)


def _if_attached(screen: Screen, callback: Callable[[Any], None], value: Any) -> None:
    if screen.is_attached:
        callback(value)


def error_text(what: str, error: str) -> Text:
    """``cannot load …: error`` in red: the one way a screen says its content failed."""
    return Text(f"cannot {what}: {error}", style="red")


# --------------------------------------------------------------------------- formatting


def fmt_value(value: float | None, digits: int = 3) -> str:
    """Numbers for tables: ``—`` for missing/NaN, else ``digits`` significant figures."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:.{digits}g}"


def fmt_percent(value: float | None) -> str:
    """An accuracy in [0, 1] as ``87.5%`` (``—`` for a class without samples)."""
    if value is None or not math.isfinite(value):
        return "—"
    return f"{100 * value:.1f}%"


def delta_text(delta: float | None) -> Text:
    """Accuracy change in percentage points, red when it drops, green when it rises."""
    if delta is None or not math.isfinite(delta):
        return Text("—", style="dim")
    points = 100 * delta
    if abs(points) < 0.05:
        return Text("±0.0", style="dim")
    return Text(f"{points:+.1f}", style="bold red" if points < 0 else "bold green")


def class_name(names: list[str], index: int) -> str:
    return names[index] if 0 <= index < len(names) else f"class {index}"


def bar_text(value: float, scale: float, half_width: int = 10) -> Text:
    """A signed horizontal bar centred on zero: negative to the left (blue), positive right (red)."""
    if not math.isfinite(value) or scale <= 0:
        return Text(" " * (2 * half_width + 1))
    cells = round(min(1.0, abs(value) / scale) * half_width)
    left = " " * half_width
    right = " " * half_width
    if value < 0:
        left = " " * (half_width - cells) + "█" * cells
    else:
        right = "█" * cells + " " * (half_width - cells)
    text = Text()
    text.append(left, style="rgb(33,102,172)")
    text.append("│", style="dim")
    text.append(right, style="rgb(178,24,43)")
    return text
