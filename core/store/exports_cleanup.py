"""Which files of a session's exports folder (``<name>.exports/``) the tool wrote, so that
deleting the session removes those and keeps, with a reason, everything else.

The tool writes, and nothing else: edited weights at the top (``*.pt``, ``*.pth``,
``*.safetensors``) with their ``<weights>.json`` sidecar and ``<weights>.README.txt``; PNGs in
``figures/`` and ``heatmaps/``; CSVs in ``tables/``; and the hidden temp files of its atomic
writer (``.<name>.<pid>-*.tmp``). Weights and their README count as the tool's only beside a
sidecar that says so. Links are never followed: a link is kept, whatever its name.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

from core.atomic import _process_alive
from core.store.limits import loads_bounded

#: ``format`` of the sidecar :mod:`core.workflow.export` writes beside each weight file.
SIDECAR_FORMAT = "salve-tui edited model"
WEIGHT_SUFFIXES = (".pt", ".pth", ".safetensors")
#: Subfolder → suffix of the files the tool writes there.
OWNED_SUBFOLDERS = {"figures": ".png", "heatmaps": ".png", "tables": ".csv"}
_SIDECAR_MAX_BYTES = 1 << 20  # a real sidecar is a few kB
_TEMP = re.compile(r"^\..+\.(\d+)-[^/]*\.tmp$")  # core.atomic.temp_path_for's names


@dataclass
class ExportsPlan:
    """What a delete does with an exports folder: files to remove, items to keep (with why)."""

    folder: Path
    owned: list[Path] = field(default_factory=list)
    kept: list[tuple[Path, str]] = field(default_factory=list)


def _lstat(path: Path) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except OSError:
        return None


def _ours_sidecar(path: Path) -> bool:
    """Whether ``path`` is a plain file holding a salve-tui weights sidecar (read without
    following a link, and only a small one)."""
    info = _lstat(path)
    if info is None or not stat.S_ISREG(info.st_mode) or info.st_size > _SIDECAR_MAX_BYTES:
        return False
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as handle:
            document = loads_bounded(handle.read(_SIDECAR_MAX_BYTES), "sidecar", max_bytes=_SIDECAR_MAX_BYTES)
    except (OSError, ValueError):
        return False
    return isinstance(document, dict) and document.get("format") == SIDECAR_FORMAT


def _temp_verdict(name: str) -> str | None:
    """``"dead"`` for a temp of a killed writer, ``"live"`` for one being written, else None."""
    match = _TEMP.match(name)
    if match is None:
        return None
    return "live" if _process_alive(int(match.group(1))) else "dead"


def _top_level_reason(path: Path) -> str | None:
    """Why a plain file at the top of the exports folder is kept (None: the tool wrote it)."""
    name = path.name
    if name.endswith(".json") and name[:-5].endswith(WEIGHT_SUFFIXES):
        return None if _ours_sidecar(path) else "a .json that is not a salve-tui weights sidecar"
    if name.endswith(".README.txt") and name[:-11].endswith(WEIGHT_SUFFIXES):
        if _ours_sidecar(path.with_name(name[:-11] + ".json")):
            return None
        return "a README without the salve-tui sidecar of its weights beside it"
    if name.endswith(WEIGHT_SUFFIXES):
        if _ours_sidecar(path.with_name(name + ".json")):
            return None
        return f"weights without a salve-tui sidecar ({name}.json) beside them"
    return "not a file salve-tui writes"


def _classify(path: Path, suffix: str | None, plan: ExportsPlan) -> None:
    """Sort one item of the exports folder (``suffix``: the subfolder's file type, None at the
    top) into ``plan``."""
    info = _lstat(path)
    if info is None:
        return
    if stat.S_ISLNK(info.st_mode):
        plan.kept.append((path, f"a symbolic link to {os.readlink(path)} (links are not followed)"))
        return
    if stat.S_ISDIR(info.st_mode):
        plan.kept.append((path, "a folder salve-tui does not write"))
        return
    if not stat.S_ISREG(info.st_mode):
        plan.kept.append((path, "not a plain file"))
        return
    verdict = _temp_verdict(path.name)
    if verdict == "dead":
        plan.owned.append(path)
        return
    if verdict == "live":
        plan.kept.append((path, "being written by a running process"))
        return
    reason = _top_level_reason(path) if suffix is None else (
        None if path.name.endswith(suffix) else f"not a {suffix} file (salve-tui writes only those here)")
    if reason is None:
        plan.owned.append(path)
    else:
        plan.kept.append((path, reason))


def plan_exports(folder: Path) -> ExportsPlan:
    """Sort everything under ``folder`` into what the tool wrote and what it keeps; nothing is
    read through a link and nothing is changed."""
    folder = Path(folder)
    plan = ExportsPlan(folder)
    info = _lstat(folder)
    if info is None:
        return plan
    if stat.S_ISLNK(info.st_mode):
        plan.kept.append((folder, f"a symbolic link to {os.readlink(folder)} (links are not followed; "
                                  "remove it with `rm` if you no longer need it)"))
        return plan
    if not stat.S_ISDIR(info.st_mode):
        plan.kept.append((folder, "not a folder"))
        return plan
    for path in sorted(folder.iterdir()):
        sub = OWNED_SUBFOLDERS.get(path.name)
        item = _lstat(path)
        if sub is not None and item is not None and stat.S_ISDIR(item.st_mode):
            for inner in sorted(path.iterdir()):
                _classify(inner, sub, plan)
        else:
            _classify(path, None, plan)
    return plan


def remove_exports(plan: ExportsPlan) -> list[Path]:
    """Remove the files ``plan`` owns, then the subfolders and the folder left empty; return
    what was removed. ``unlink`` and ``rmdir`` never follow a link."""
    removed: list[Path] = []
    for path in plan.owned:
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        removed.append(path)
    for folder in [*(plan.folder / name for name in OWNED_SUBFOLDERS), plan.folder]:
        info = _lstat(folder)
        if info is None or not stat.S_ISDIR(info.st_mode):
            continue
        try:
            folder.rmdir()  # only when empty
        except OSError:
            continue
        removed.append(folder)
    return removed
