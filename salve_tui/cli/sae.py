"""``salve sae export | import``: SAE dictionaries in SAELens' format, in and out of a session."""

from __future__ import annotations

import argparse
from typing import Any

from salve_tui.cli.main import emit, open_session


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


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("sae", help="export or import the SAE dictionary (SAELens format)")
    actions = p.add_subparsers(dest="sae_action", required=True, metavar="{export,import}")
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
