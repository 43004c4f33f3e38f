"""``salve verify``: check every stored array and document of a session against its checksum."""

from __future__ import annotations

import argparse
from typing import Any

from salve_tui.cli.main import emit, session_path


def cmd_verify(args: argparse.Namespace) -> int:
    from core.store.session import SessionError, verify_session

    path = session_path(args)
    if not path.exists():
        raise SessionError(f"session file {path} does not exist; list sessions with `salve list`")
    report = verify_session(path)
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


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the maintenance commands to the ``salve`` parser."""
    p = sub.add_parser("verify", parents=[common], help="check a whole session against its checksums")
    p.add_argument("session")
    p.set_defaults(func=cmd_verify)
