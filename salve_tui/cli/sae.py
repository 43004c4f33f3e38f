"""``salve sae export | import``: SAE dictionaries in SAELens' format, in and out of a session."""

from __future__ import annotations

import argparse
from typing import Any

from salve_tui.cli.main import emit, open_session


def cmd_sae_export(args: argparse.Namespace) -> int:
    from core.workflow.sae_io import export_saelens

    with open_session(args, read_only=True) as session:
        result = export_saelens(session, args.out, force=args.force)
    emit(args, result, lambda r: f"wrote {r['files'][0]} and {r['files'][1]} "
         f"(d_in {r['d_in']}, d_sae {r['d_sae']}, activation {r['activation_fn']})")
    return 0


def cmd_sae_import(args: argparse.Namespace) -> int:
    from core.workflow.sae_io import import_sae

    with open_session(args) as session:
        result = import_sae(session, args.source)
    emit(args, result, lambda r: (
        f"imported a {r['kind']} SAE with {r['d_sae']} latents from {r['source']}: EV "
        f"{r['explained_variance']:.3f}, L0 {r['l0']:.1f} on the training activations.\n"
        f"next: salve run {args.session} rankings"))
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
    i.set_defaults(func=cmd_sae_import)
