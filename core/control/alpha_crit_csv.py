"""α_crit results as CSV rows (``salve alpha-crit --csv``): one summary row per class, one row
per sample; written atomically."""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence
from typing import Any, Protocol


class _Rows(Protocol):
    """What an α_crit result gives a CSV (``core.control.alpha_crit.AlphaCritResult``)."""

    def summary_row(self) -> dict[str, Any]: ...

    def sample_rows(self) -> list[dict[str, Any]]: ...



def summary_rows(results: Iterable[_Rows]) -> list[dict[str, Any]]:
    return [r.summary_row() for r in results]


def sample_rows(results: Iterable[_Rows]) -> list[dict[str, Any]]:
    return [row for r in results for row in r.sample_rows()]


def write_csv(path: str | os.PathLike[str], rows: Sequence[dict[str, Any]]) -> None:
    """Write dict rows with a header (union of keys, first-seen order); None → empty cell."""
    if not rows:
        raise ValueError(f"nothing to write to {path}: the table is empty")
    header: list[str] = []
    for row in rows:
        header += [k for k in row if k not in header]
    from core.atomic import atomic_write

    with atomic_write(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=header, restval="")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
