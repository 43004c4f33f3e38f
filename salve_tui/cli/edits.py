"""``salve edits``: list the session's edit stack, remove / disable / undo / redo, compare, export.

Edits are numbered from 1 as listed. A change (``--remove``, ``--clear``, ``--undo``, ...) opens
the session as its writer; a plain listing opens it read-only, so it works while the TUI holds
the session. Torch is imported inside the command only.
"""

from __future__ import annotations

import argparse
from typing import Any

from salve_tui.cli.common import CliError, emit, open_session

CHANGES = ("remove", "clear", "undo", "redo", "enable", "disable")


def _pts(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:+.1f} pts"


def stack_text(payload: dict[str, Any]) -> str:
    """The human listing of ``salve edits`` (one row per edit, then the composition)."""
    lines = []
    for note in payload.get("done", []):
        lines.append(note)
    edits = payload["edits"]
    if not edits:
        lines.append("no edits recorded; preview one with `salve edit` (or e → w in the TUI)")
    else:
        lines.append(f"{'#':>3} {'on':<3}{'edit':<36}{'Δ overall':>11}  {'worst class':<22}exports")
        for row in edits:
            worst = (f"{_pts(row['worst_class_delta'])} {row['worst_class'] or ''}".strip()
                     if row["worst_class_delta"] < -0.0005 else "none lost")
            lines.append(f"{row['number']:>3} {'✓' if row['active'] else '·':<3}{row['label'][:35]:<36}"
                         f"{_pts(row['overall_delta']):>11}  {worst[:21]:<22}{len(row['exports'])}")
        comp = payload["composition"]
        active = payload["active"]
        if comp is None:
            lines.append("no edit is active: an export of the stack has nothing to apply")
        else:
            lines.append(
                f"composition of #{', #'.join(str(n) for n in active)}: overall "
                f"{comp['overall_before']:.1%} → {comp['overall_after']:.1%} "
                f"({_pts(comp['overall_delta'])}), worst class "
                + (f"{comp['worst_class']} {_pts(comp['worst_class_delta'])}"
                   if comp["worst_class_delta"] < -0.0005 else "none lost"))
    if payload.get("undo"):
        lines.append(f"undo (--undo): {payload['undo']}")
    if payload.get("redo"):
        lines.append(f"redo (--redo): {payload['redo']}")
    if payload.get("compare"):
        lines.append(_compare_text(payload["compare"]))
    if payload.get("export"):
        export = payload["export"]
        verb = "reused" if export["reused"] else "wrote"
        lines.append(f"{verb} " + ", ".join(export["files"]))
    lines += payload.get("stale_warnings") or []  # edits recorded on an SAE or backbone since rerun
    return "\n".join(lines)


def _compare_text(compare: dict[str, Any]) -> str:
    first, second = compare["first"], compare["second"]
    width = max(5, *(len(r["class"]) for r in compare["per_class"])) + 1
    lines = [f"#{first['number']}: {first['label']}   vs   #{second['number']}: {second['label']}",
             f"{'class':<{width}}{'before':>8}{'#' + str(first['number']):>8}{'#' + str(second['number']):>8}"]
    for row in compare["per_class"]:
        cells = "".join(f"{'—' if v != v else f'{v:.1%}':>8}"
                        for v in (row["before"], row["after_first"], row["after_second"]))
        lines.append(f"{row['class']:<{width}}{cells}")
    return "\n".join(lines)


def cmd_edits(args: argparse.Namespace) -> int:
    from core.workflow import edits as stack
    from core.workflow.export import export_edited_model
    from core.workflow.inputs import load_inputs

    changes = [name for name in CHANGES if getattr(args, name) not in (None, False)]
    if len(changes) > 1:
        raise CliError(f"give one change at a time, got --{' and --'.join(changes)}")
    writes = bool(changes) or args.export
    done: list[str] = []
    with open_session(args, read_only=not writes) as session:
        if args.remove is not None:
            spec = stack.remove_edit(session, args.remove)
            done.append(f"removed #{args.remove}: {stack.describe_spec(spec)}")
        elif args.clear:
            count = len(stack.edit_records(session))
            stack.clear_edits(session)
            done.append(f"cleared {count} edit(s) (--undo brings them back)")
        elif args.undo or args.redo:
            step = stack.undo_edit(session) if args.undo else stack.redo_edit(session)
            verb = "undid" if args.undo else "redid"
            if step is None:
                raise CliError(f"nothing to {'undo' if args.undo else 'redo'}")
            done.append(f"{verb}: {step}")
        elif args.enable is not None or args.disable is not None:
            number = args.enable if args.enable is not None else args.disable
            stack.set_edit_active(session, number, args.enable is not None)
            done.append(f"{'enabled' if args.enable is not None else 'disabled'} #{number}")
        inputs = load_inputs(session)
        current = stack.edit_stack(session, inputs)
        payload: dict[str, Any] = {"session": session.name, **current.to_dict(), "done": done}
        from core.workflow.results import stale_report

        payload.update(stale_report(session, ("edit",)))
        if args.compare:
            payload["compare"] = stack.compare_edits(current, *args.compare)
        if args.export:
            if not current.active_numbers:
                raise CliError("no edit is active: there is nothing to export")
            result = export_edited_model(session)
            stack.note_exports(session, result.files, current.active_numbers)
            payload.update(stack.edit_stack(session, inputs).to_dict())
            payload["export"] = result.to_dict()
    emit(args, payload, stack_text)
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``salve edits`` to the ``salve`` parser."""
    p = sub.add_parser("edits", parents=[common],
                       help="the session's edit stack: list, remove, undo/redo, compare, export")
    p.add_argument("session")
    p.add_argument("--remove", type=int, default=None, metavar="N", help="remove edit #N")
    p.add_argument("--clear", action="store_true", help="remove every edit (undoable)")
    p.add_argument("--undo", action="store_true", help="undo the last change to the stack")
    p.add_argument("--redo", action="store_true", help="redo the last undone change")
    p.add_argument("--disable", type=int, default=None, metavar="N",
                   help="keep edit #N but leave it out of the composition")
    p.add_argument("--enable", type=int, default=None, metavar="N", help="put edit #N back in")
    p.add_argument("--compare", type=int, nargs=2, default=None, metavar=("A", "B"),
                   help="per-class accuracy of edits #A and #B side by side")
    p.add_argument("--export", action="store_true",
                   help="export the model with the active edits (reuses an identical export)")
    p.set_defaults(func=cmd_edits)
