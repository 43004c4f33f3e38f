"""``salve saliency | actmax | top-samples | export | groundtruth``: validation visuals headless.

Torch and the visuals module are imported inside the command functions, so registering these
commands keeps ``salve info`` fast. Commands that only draw PNGs open the session read-only
(they work while the TUI holds it for writing); PNGs go to the session's export folder unless
``--out`` names a file. ``groundtruth`` stores its scores in the session unless ``--no-record``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from salve_tui.cli import validate as v
from salve_tui.cli.common import CliError, ProgressPrinter, emit, open_session


def _progress(args: argparse.Namespace) -> ProgressPrinter | None:
    return None if args.json else ProgressPrinter()


def _non_negative(what: str, value: int | None) -> None:
    if value is not None and value < 0:
        raise CliError(f"{what} must be ≥ 0, got {value}")


# ----------------------------------------------------------------------------- saliency


def cmd_saliency(args: argparse.Namespace) -> int:
    from core.workflow.assets import load_assets
    from core.workflow.saliency_maps import saliency_map, save_saliency

    if (args.feature is None) == (args.class_ is None):
        raise CliError("give exactly one of --feature K (Grad-FAM) or --class C (Grad-CAM)")
    _non_negative("--sample", args.sample)
    _non_negative("--feature", args.feature)
    with open_session(args, read_only=True) as session:
        assets = load_assets(session)
        result = saliency_map(
            session, args.sample, args.feature, args.class_, args.layer, assets
        )
        path = save_saliency(session, result, assets.class_names, args.out)
    names = assets.class_names
    payload = {
        "path": str(path),
        "sample": result.sample,
        "method": result.method,
        "feature" if result.method == "Grad-FAM" else "class": result.target,
        "layer": result.layer,
        "label": names[result.label],
        "prediction": names[result.prediction],
        "score": result.score,
    }
    what = "u" if result.method == "Grad-FAM" else "logit"
    emit(args, payload, f"wrote {path}  ({result.method}, layer {result.layer}, "
                        f"{what} {result.score:+.4g})")
    return 0


# ----------------------------------------------------------------------------- actmax


def cmd_actmax(args: argparse.Namespace) -> int:
    from core.workflow.actmax_images import default_actmax_config, run_actmax, save_actmax

    _non_negative("--feature", args.feature)
    sign = {"auto": None, "pos": 1, "neg": -1}[args.sign]
    with open_session(args, read_only=True) as session:
        config = default_actmax_config(
            session, args.feature, steps=args.steps, seed=args.seed, sign=sign
        )
        problems = config.validate()
        if problems:
            raise CliError("invalid activation-maximisation settings: " + "; ".join(problems))
        result = run_actmax(session, args.feature, config, _progress(args))
        path = save_actmax(session, result, config, args.out)
    start, final = float(result.start_activation[0]), float(result.final_activation[0])
    payload = {
        "path": str(path),
        "feature": args.feature,
        "steps": config.steps,
        "seed": config.seed,
        "sign": config.sign,
        "start_activation": start,
        "final_activation": final,
        "snapshot_steps": [step for step, _ in result.snapshots],
    }
    emit(args, payload, f"wrote {path}  (u_{args.feature}: {start:+.4g} → {final:+.4g})")
    return 0


# ----------------------------------------------------------------------------- top samples


def cmd_top_samples(args: argparse.Namespace) -> int:
    from core.workflow.figure_export import top_samples_png

    _non_negative("--feature", args.feature)
    if args.k < 1:
        raise CliError(f"-k must be ≥ 1, got {args.k}")
    with open_session(args, read_only=True) as session:
        path = top_samples_png(session, args.feature, args.out, k=args.k)
    emit(args, {"path": str(path), "feature": args.feature}, f"wrote {path}")
    return 0


# ----------------------------------------------------------------------------- export


def cmd_export(args: argparse.Namespace) -> int:
    from core.workflow.figure_export import export_figures, figure_gaps

    if not args.figures:
        raise CliError(
            "nothing to export: pass --figures (edited weights are exported by `salve edit`, "
            "α_crit tables by `salve alpha-crit --csv`)"
        )
    with open_session(args, read_only=True) as session:
        skipped = figure_gaps(session)
        written = export_figures(session, _progress(args))
        folder = session.exports_dir
    payload = {"exports_dir": str(folder), "written": [str(p) for p in written],
               "skipped": skipped}

    def text(p: dict[str, Any]) -> str:
        lines = list(p["written"])
        lines += [f"skipped {reason}" for reason in p["skipped"]]
        lines.append(f"{len(p['written'])} figure(s) in {p['exports_dir']}")
        return "\n".join(lines)

    emit(args, payload, text)
    return 0


# ----------------------------------------------------------------------------- ground truth


def _groundtruth_text(result: dict[str, Any]) -> str:
    def num(value: Any, fmt: str = ".3f") -> str:
        return "—" if value is None else format(value, fmt)

    lines = [f"ground truth on {result['n_images']} test images, saliency layer {result['layer']}"]
    lines.append(f"{'method':<10}{'hit rate':>10}{'chance':>9}{'ratio':>8}{'energy':>9}{'area':>8}")
    for key, label in (("grad_fam", "Grad-FAM"), ("grad_cam", "Grad-CAM")):
        s = result["pointing_game"][key]
        lines.append(
            f"{label:<10}{num(s['hit_rate']):>10}{num(s['chance_rate']):>9}"
            f"{num(s['ratio_to_chance'], '.2f') + '×':>8}{num(s['energy_inside']):>9}"
            f"{num(s['mask_area_share']):>8}"
        )
    lines.append("best latent per concept (AUROC of latent vs presence; ↓: latent falls with it):")
    for name, row in result["concepts"].items():
        arrow = "↑" if row["sign"] == 1 else "↓" if row["sign"] == -1 else " "
        lines.append(
            f"  {name:<11} latent {row['latent']:>4} {arrow}  AUROC {num(row['auroc'])}"
            f"  (strength {num(row['strength'])})"
        )
    shared = result["shared_part"]
    best = shared.get("best_latent")
    if best:
        per_class = ", ".join(f"{c} {num(v)}" for c, v in best["auroc_per_class"].items())
        verdict = "tracks it in both" if best["tracks_both"] else "does not track it in both"
        chosen = f", chosen on {best['selected_on']}" if best.get("selected_on") else ""
        lines.append(
            f"shared part '{shared['concept']}': latent {best['latent']} "
            f"(within-class AUROC {per_class}{chosen}) {verdict}"
        )
    elif "error" in shared:
        lines.append(f"shared part: {shared['error']}")
    return "\n".join(lines)


def cmd_groundtruth(args: argparse.Namespace) -> int:
    from core.workflow.ground_truth import run_groundtruth

    if args.max_samples is not None and args.max_samples < 1:
        raise CliError(f"--max-samples must be ≥ 1, got {args.max_samples}")
    with open_session(args, read_only=args.no_record) as session:
        result = run_groundtruth(
            session,
            _progress(args),
            layer=args.layer,
            max_samples=args.max_samples,
            record=not args.no_record,
        )
    emit(args, result, _groundtruth_text)
    return 0


def cmd_faithfulness(args: argparse.Namespace) -> int:
    from core.workflow.faithfulness import run_faithfulness

    for name in ("samples", "steps", "random_orders"):
        if getattr(args, name) < (2 if name == "steps" else 1):
            raise CliError(f"--{name.replace('_', '-')} is too small: {getattr(args, name)}")
    with open_session(args, read_only=True) as session:
        result = run_faithfulness(
            session, args.feature or None, args.samples, args.steps, args.random_orders,
            args.layer, _progress(args),
        )
    emit(args, result, _faithfulness_text)
    return 0


def _faithfulness_text(r: dict[str, Any]) -> str:
    lines = [f"deletion / insertion AUC vs random order (layer {r['layer']}, {r['steps']} steps, "
             f"{r['samples_per_feature']} samples each, scores / intact score)",
             f"{'class':<12}{'feature':>8}  {'FAM del':>8}{'rand':>7}  {'FAM ins':>8}{'rand':>7}"
             f"  {'CAM del':>8}{'rand':>7}"]
    for e in r["features"]:
        f, c = e["gradfam"], e["gradcam"]
        lines.append(f"{e['class_name']:<12}{e['feature']:>8}  {f['deletion']:>8.3f}"
                     f"{f['deletion_random']:>7.3f}  {f['insertion']:>8.3f}{f['insertion_random']:>7.3f}"
                     f"  {c['deletion']:>8.3f}{c['deletion_random']:>7.3f}")
    s = r["summary"]
    lines.append(f"Grad-FAM deletion below random: {s['gradfam']['deletion_below_random']}/"
                 f"{s['gradfam']['n']}; Grad-CAM: {s['gradcam']['deletion_below_random']}/"
                 f"{s['gradcam']['n']}")
    if r["figure"]:
        lines.append(f"figure: {r['figure']}")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- parser



def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the visuals commands to the ``salve`` parser."""
    _register_pictures(sub, common)
    _register_reports(sub, common)


def _register_pictures(sub: Any, common: argparse.ArgumentParser) -> None:
    """``saliency``, ``actmax`` and ``top-samples``: one PNG about one feature or class."""
    p = sub.add_parser("saliency", parents=[common],
                       help="Grad-FAM of a feature or Grad-CAM of a class on a test sample (PNG)")
    p.add_argument("session")
    p.add_argument("--sample", type=v.index, required=True, help="test-split sample index")
    target = p.add_mutually_exclusive_group()
    target.add_argument("--feature", type=v.index, default=None, help="SAE feature → Grad-FAM")
    target.add_argument("--class", dest="class_", default=None,
                        help="class name or index → Grad-CAM")
    p.add_argument("--layer", default=None,
                   help="module name, e.g. layer3 (default: deepest ResNet stage with ≥ 4×4 maps)")
    p.add_argument("--out", type=Path, default=None,
                   help="PNG file to write (default: the session's export folder)")
    v.force_flag(p)
    p.set_defaults(func=cmd_saliency)

    p = sub.add_parser("actmax", parents=[common],
                       help="activation maximisation of an SAE feature (PNG of the snapshots)")
    p.add_argument("session")
    p.add_argument("--feature", type=v.index, required=True)
    p.add_argument("--out", type=Path, default=None,
                   help="PNG file to write (default: the session's export folder)")
    p.add_argument("--steps", type=v.integer(1, 100_000), default=None, help="gradient steps (default 256)")
    p.add_argument("--seed", type=v.index, default=None, help="noise/transform seed (default 0)")
    v.force_flag(p)
    p.add_argument("--sign", choices=["auto", "pos", "neg"], default="auto",
                   help="drive u_k up (pos) or down (neg); auto: the sign its class uses")
    p.set_defaults(func=cmd_actmax)

    p = sub.add_parser("top-samples", parents=[common],
                       help="test samples with the highest and lowest activation of a feature")
    p.add_argument("session")
    p.add_argument("--feature", type=v.index, required=True)
    p.add_argument("-k", type=v.integer(1, 16), default=8, help="samples per row (default 8, at most 16)")
    p.add_argument("--out", type=Path, default=None)
    v.force_flag(p)
    p.set_defaults(func=cmd_top_samples)


def _register_reports(sub: Any, common: argparse.ArgumentParser) -> None:
    """``export``, ``groundtruth`` and ``faithfulness``: figures and scores over the session."""
    p = sub.add_parser("export", parents=[common],
                       help="write figures (PNG) into the session's export folder")
    p.add_argument("session")
    p.add_argument("--figures", action="store_true",
                   help="feature–class matrix, top samples, Grad-FAM, curves, α_crit, confusion")
    v.force_flag(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("groundtruth", parents=[common],
                       help="Shapes ground truth: concept AUROC, pointing game, shared part")
    p.add_argument("session")
    p.add_argument("--layer", default=None, help="saliency layer (default per SPEC §6)")
    p.add_argument("--max-samples", type=v.count, default=None,
                   help="score a seeded random subset of the test split")
    p.add_argument("--no-record", action="store_true",
                   help="do not store the scores (opens the session read-only)")
    p.set_defaults(func=cmd_groundtruth)

    p = sub.add_parser("faithfulness", parents=[common],
                       help="deletion/insertion curves of Grad-FAM and Grad-CAM vs random order")
    p.add_argument("session")
    p.add_argument("--feature", type=int, action="append", default=None,
                   help="SAE feature (repeatable; default: every class's dominant feature)")
    p.add_argument("--samples", type=int, default=4, help="test samples per feature (default 4)")
    p.add_argument("--steps", type=int, default=20, help="points per curve − 1 (default 20)")
    p.add_argument("--random-orders", type=int, default=3, help="random orders averaged (default 3)")
    p.add_argument("--layer", default=None, help="saliency layer (default per SPEC §6)")
    p.set_defaults(func=cmd_faithfulness)
