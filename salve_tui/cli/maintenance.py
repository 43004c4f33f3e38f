"""Maintenance commands: ``salve verify`` (checksums), ``salve copy`` and ``salve delete`` (a
session as one unit: its small file and its ``.data`` folder of array files)."""

from __future__ import annotations

import argparse
from typing import Any

from salve_tui.cli.common import emit, session_path


def cmd_verify(args: argparse.Namespace) -> int:
    from core.store.session import SessionError, verify_isolated

    path = session_path(args)
    if not path.exists():
        raise SessionError(f"session file {path} does not exist; list sessions with `salve list`")
    report = verify_isolated(path)  # a file that crashes HDF5 is reported as damage
    payload = {"session": str(path), "ok": report.ok, "checked": report.checked,
               "problems": report.problems, "unchecked": report.unchecked}

    def text(p: dict[str, Any]) -> str:
        if p["ok"]:
            lines = [f"{path}: ok, {p['checked']} datasets match their checksums"]
            if p["unchecked"]:
                lines.append(f"{len(p['unchecked'])} dataset(s) written before checksums existed cannot be "
                             f"checked (e.g. {p['unchecked'][0]}); rerun their stage to add checksums")
            return "\n".join(lines)
        lines = [f"{path}: DAMAGED, {len(p['problems'])} problem(s):"]
        lines += [f"  {problem}" for problem in p["problems"]]
        lines.append("Restore the file from a backup, or rerun the stages that wrote the damaged parts "
                     "(`salve run NAME STAGE --force`); exports from this session are refused until then.")
        return "\n".join(lines)

    emit(args, payload, text)
    return 0 if report.ok else 1


def cmd_copy(args: argparse.Namespace) -> int:
    from core.store.maintenance import copy_target
    from core.store.session import copy_session, session_bytes, sessions_dir

    src = session_path(args)
    dst = copy_target(src, args.target, sessions_dir(args.sessions_dir))
    copy_session(src, dst)
    emit(args, {"session": str(src), "copy": str(dst), "size_bytes": session_bytes(dst)},
         lambda p: f"copied {src} to {dst} ({p['size_bytes'] / 1e6:.1f} MB with its array files)")
    return 0


def _exports_note(plan: Any) -> str:
    """`` and the N file(s) salve-tui wrote in x.exports/`` for the confirmation (or nothing)."""
    if not plan.owned:
        return ""
    return f" and the {len(plan.owned)} file(s) salve-tui wrote in {plan.folder.name}/"


def _kept_lines(plan: Any) -> list[str]:
    """One line per item of the exports folder that a delete keeps, with the reason."""
    if not plan.kept:
        return []
    lines = [f"kept {len(plan.kept)} item(s) in {plan.folder} that salve-tui did not write "
             "(remove them yourself if you no longer need them):"]
    for path, reason in plan.kept[:20]:
        lines.append(f"  {path.relative_to(plan.folder) if path != plan.folder else path}: {reason}")
    if len(plan.kept) > 20:
        lines.append(f"  … and {len(plan.kept) - 20} more (see --json)")
    return lines


def cmd_delete(args: argparse.Namespace) -> int:
    from core.store.exports_cleanup import plan_exports
    from core.store.session import (
        SessionError,
        data_dir,
        delete_session,
        exports_dir,
        session_bytes,
    )

    path = session_path(args)
    size = session_bytes(path) if path.is_file() else 0
    if not args.yes:
        note = _exports_note(plan_exports(exports_dir(path)))
        raise SessionError(f"this deletes {path} and {data_dir(path).name}/ ({size / 1e6:.1f} MB){note}; "
                           "rerun with --yes to confirm")
    removed = delete_session(path)  # also finishes a delete that was interrupted
    kept = plan_exports(exports_dir(path))  # what the tool did not write stays, with the reason
    finished = "" if path in removed else " (finished an interrupted delete)"
    payload = {"deleted": str(path), "size_bytes": size, "removed": [str(p) for p in removed],
               "kept": [{"path": str(p), "reason": why} for p, why in kept.kept]}
    emit(args, payload, lambda p: "\n".join(
        [f"deleted {path} and its array files ({size / 1e6:.1f} MB){finished}", *_kept_lines(kept)]))
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the maintenance commands to the ``salve`` parser."""
    p = sub.add_parser("verify", parents=[common], help="check a whole session against its checksums")
    p.add_argument("session")
    p.set_defaults(func=cmd_verify)
    p = sub.add_parser("copy", parents=[common], help="copy a session with its array files")
    p.add_argument("session")
    p.add_argument("target", help="new session name (in the sessions folder) or path")
    p.set_defaults(func=cmd_copy)
    p = sub.add_parser("delete", parents=[common], help="delete a session with its array files")
    p.add_argument("session")
    p.add_argument("--yes", action="store_true", help="confirm the deletion")
    p.set_defaults(func=cmd_delete)
