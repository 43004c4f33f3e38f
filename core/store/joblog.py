"""The session's job log: every job's messages, kept beside the session file.

``<name>.joblog.json`` holds one entry per finished, failed or cancelled job (name, start and
end time, outcome, error, its log lines). It lives beside the HDF5 file rather than in it so
that logging never rewrites the session (a transaction copies the whole file); like every file
the tool writes it is replaced atomically (temp file, fsync, rename). A damaged log reads as
empty and is rewritten by the next job; the session itself never depends on it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

MAX_ENTRIES = 200  # oldest jobs are dropped beyond this
MAX_LINES_PER_JOB = 400


def job_log_path(session_path: str | os.PathLike) -> Path:
    path = Path(session_path)
    return path.with_name(f"{path.stem}.joblog.json")


def read_job_log(session_path: str | os.PathLike) -> list[dict[str, Any]]:
    """Every stored job entry, oldest first (empty when there is none or it is unreadable)."""
    try:
        data = json.loads(job_log_path(session_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [e for e in data.get("jobs", []) if isinstance(e, dict)] if isinstance(data, dict) else []


def append_job_log(session_path: str | os.PathLike, entry: dict[str, Any]) -> Path:
    """Add one job's entry (lines capped) and rewrite the log atomically; returns its path."""
    path = job_log_path(session_path)
    entry = {**entry, "lines": list(entry.get("lines", []))[-MAX_LINES_PER_JOB:]}
    jobs = [*read_job_log(session_path), entry][-MAX_ENTRIES:]
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump({"format": "salve-tui job log", "jobs": jobs}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
