"""The edit preview's text, pure and tested without the UI: strength steps, written paths, the
compact confusion matrix after the edit and the line the export leaves in the status bar."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
from rich.text import Text

from salve_tui.app.format import cut_label
from salve_tui.app.screens.analysis_shared import class_name


def nice_step(step: float) -> float:
    """The largest 1, 2 or 5 × 10^k not above ``step``: + then moves α by a round amount that the
    header can state exactly (0.1046 became 0.1)."""
    if not math.isfinite(step) or step <= 0:
        return 1.0
    power = 10.0 ** math.floor(math.log10(step))
    mantissa = max(m for m in (1, 2, 5) if m * power <= step * (1 + 1e-9))
    return float(f"{mantissa * power:.12g}")


def display_path(path: str | Path) -> str:
    """A written path relative to the working directory when it lies below it."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def files_text(paths: list[str | Path]) -> str:
    """``a.pt, a.safetensors in exports/``: the folder once, not repeated for every file (the
    status line wraps to a second line at 80 columns rather than cutting the names)."""
    folders = {Path(p).parent for p in paths}
    if len(folders) != 1:
        return ", ".join(display_path(p) for p in paths)
    return ", ".join(Path(p).name for p in paths) + f" in {display_path(folders.pop())}/"


def export_status(result: Any) -> str:
    """What ``w`` did, from its :class:`ExportResult`: the edit's number in the stack (from 1, as
    the stack lists it), whether it was already the top one, and the files written or reused."""
    index = result.metadata.get("edit_index")
    number = "?" if index is None else index + 1
    verb = "reused" if getattr(result, "reused", False) else "wrote"
    if result.metadata.get("duplicate"):
        return (f"not recorded again: this edit is already #{number}, the top of the "
                f"edit stack (s); {verb} {files_text(result.files)}")
    return f"recorded edit #{number} in the edit stack (s); {verb} {files_text(result.files)}"


def confusion_text(before: np.ndarray, after: np.ndarray, names: list[str], target: int,
                   width: int = 45) -> Text:
    """Compact confusion matrix after the edit: rows true, columns predicted.

    Cells are as wide as the largest count needs (+1 space). Columns are numbered in class order
    and each row starts with its number, then its name cut to what is left of ``width`` (3–6
    characters): a name does not fit a count's cell ("ci… sq… tr…" told circle from crescent
    by nothing). Diagonal (correct) counts are green, cells that differ from before the edit
    yellow, the target class's row bold. When even 3-character names do not fit (many classes),
    only the target row is listed, as its most frequent predictions.
    """
    C = after.shape[0]
    number = len(str(C - 1))  # digits of the largest class number
    cell = max(3, len(str(int(max(after.max(initial=0), before.max(initial=0))))) + 1, number + 1)
    label = min(6, width - 1 - C * cell - number - 1)
    if label < 3:
        return _target_row_text(before[target], after[target], names, target)
    text = Text()
    text.append("after edit: rows true (#), cols predicted (#)\n", style="dim")
    text.append(" " * (number + label + 2) + "".join(f"{j:>{cell}}" for j in range(C)) + "\n", style="dim")
    for i in range(C):
        text.append(f"{i:>{number}} {cut_label(names[i], label):<{label}} ", style="bold" if i == target else "dim")
        for j in range(C):
            value = int(after[i, j])
            style = "yellow bold" if value != before[i, j] else ("green" if i == j else "")
            if value == 0 and style == "":
                style = "bright_black"
            text.append(f"{value:>{cell}}", style=style)
        text.append("\n")
    return text


def _target_row_text(row_before: np.ndarray, row_after: np.ndarray, names: list[str], target: int) -> Text:
    """The target class's six most frequent predictions after the edit (before in brackets)."""
    text = Text()
    text.append(f"{class_name(names, target)} predicted as (after, before):\n", style="bold")
    for j in np.argsort(-row_after, kind="stable")[:6]:
        style = "yellow" if row_after[j] != row_before[j] else ""
        text.append(f"  {cut_label(class_name(names, int(j)), 12):<12} {row_after[j]:4d}  ({row_before[j]})\n",
                    style=style)
    return text
