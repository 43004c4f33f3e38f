"""``salve sae export | import | search``: SAE dictionaries in SAELens' format, in and out of a
session, and the width/λ search (``core.workflow.sae_search_session``)."""

from __future__ import annotations

import argparse
from typing import Any

from salve_tui.cli.common import emit, open_session


def cmd_sae_export(args: argparse.Namespace) -> int:
    from core.workflow.sae_io import export_saelens

    with open_session(args, read_only=True) as session:
        result = export_saelens(session, args.out, force=args.force)
    emit(args, result, lambda r: "\n".join(
        [f"wrote {r['files'][0]} and {r['files'][1]}: a {r['kind']} SAE as SAELens "
         f"'{r['architecture']}' (d_in {r['d_in']}, d_sae {r['d_sae']}); load it with "
         f"SAE.load_from_disk('{r['folder']}')"] + [f"note: {n}" for n in r["notes"]]))
    return 0


def cmd_sae_import(args: argparse.Namespace) -> int:
    from core.workflow.sae_io import import_sae

    with open_session(args) as session:
        result = import_sae(session, args.source, input_scale=args.input_scale)
    emit(args, result, lambda r: "\n".join(
        [f"imported a SAELens '{r['architecture']}' SAE as salve kind {r['kind']} with {r['d_sae']} "
         f"latents from {r['source']}: EV {r['explained_variance']:.3f}, L0 {r['l0']:.1f} on the "
         "training activations"] + [f"warning: {n}" for n in r["notes"]]
        + [f"next: salve run {args.session} rankings"]))
    return 0


def search_table_lines(record: dict[str, Any] | None) -> list[str]:
    """The width search's table for ``salve info`` and ``salve sae search`` (empty: no search)."""
    if not record:
        return []
    chosen = record["chosen"]
    lines = [f"SAE width search: chose h={chosen['hidden']}, λ={chosen['l1_coeff']:.3g} "
             f"({len(record['rows'])} candidates, {record['epochs']} of {record['epochs_full']} epochs each; "
             f"{record['cost']['note']})",
             "     h        λ  EV test   L0  distinct  dom.ratio  windows  controls ok",]
    for r in record["rows"]:
        mark = "→" if r.get("chosen") else " "
        lines.append(f"  {mark}{r['hidden']:>4} {r['l1_coeff']:>8.3g} {r['ev_test']:>8.3f} {r['l0']:>5.1f} "
                     f"{r['distinct_dominants']:>5}/{r['n_classes']:<3} {r['dominance_ratio_median']:>9.2f} "
                     f"{r['selective_windows']:>8} {r['controls_ok']:>12}")
    lines.append(f"  rule: {record['rule']}")
    return lines


def schedule_lines(sae: dict[str, Any] | None) -> list[str]:
    """One line when SAE training stopped early on a plateau (``summary.sae.schedule``)."""
    schedule = (sae or {}).get("schedule") or {}
    if not schedule.get("stopped_early"):
        return []
    return [f"SAE stopped early after {schedule['epochs_run']} of {schedule['epochs_planned']} epochs: "
            f"{schedule['early_stop']['rule']}"]


def cmd_sae_search(args: argparse.Namespace) -> int:
    from core.workflow.sae_search_session import run_search

    with open_session(args) as session:
        record = run_search(session, apply=not args.no_apply)
        if args.figure:
            from core.discover.sae_search import save_search_figure

            record["figure"] = str(save_search_figure(record, args.figure))
    emit(args, record, lambda r: "\n".join(search_table_lines(r) + (
        [f"figure: {r['figure']}"] if r.get("figure") else []) + (
        [] if args.no_apply else [f"next: salve run {args.session} (trains the chosen SAE)"])))
    return 0


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("sae", help="export or import the SAE dictionary (SAELens format)")
    actions = p.add_subparsers(dest="sae_action", required=True, metavar="{export,import,search}")
    e = actions.add_parser("export", parents=[common], help="write cfg.json + sae_weights.safetensors")
    e.add_argument("session")
    e.add_argument("out", metavar="DIR", help="folder to write (created if missing)")
    e.add_argument("--format", choices=["saelens"], default="saelens")
    e.add_argument("--force", action="store_true", help="overwrite existing files in DIR")
    e.set_defaults(func=cmd_sae_export)
    i = actions.add_parser("import", parents=[common], help="use a dictionary trained elsewhere")
    i.add_argument("session")
    i.add_argument("source", metavar="DIR|FILE", help="SAELens folder or .safetensors file")
    i.add_argument("--input-scale", type=float, default=None, metavar="S",
                   help="norm scaling factor of an 'expected_average_only_in' SAE (folded in)")
    i.set_defaults(func=cmd_sae_import)
    s = actions.add_parser("search", parents=[common],
                           help="train a grid of SAE widths and L1 weights, score them on held-out data, pick one")
    s.add_argument("session")
    s.add_argument("--no-apply", action="store_true", help="record the table only; keep the SAE settings")
    s.add_argument("--figure", metavar="PNG", help="also draw the table as a figure")
    s.set_defaults(func=cmd_sae_search)
