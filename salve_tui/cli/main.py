"""``salve``: the headless CLI over the same pipeline the TUI drives.

Heavy imports (torch, torchvision) happen inside commands, so ``salve info`` and ``salve list``
answer quickly. The pipeline commands live here; the others come from one module each, imported
here by name and added through their ``register(sub, common)``. What all commands share
(errors, output, sessions, progress, Ctrl-C) is ``salve_tui.cli.common``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from typing import Any

from core.config import BackboneConfig, DataConfig, SAEConfig, SessionConfig, demo_config
from core.jobs import CancelToken
from core.store.session import (
    PIPELINE_STAGES,
    Session,
    list_sessions,
    resolve_session_path,
    sessions_dir,
)
from salve_tui.cli import control, edits, maintenance, sae, visuals
from salve_tui.cli import validate as v
from salve_tui.cli.common import (
    CliError,
    ProgressPrinter,
    cancel_on_sigint,
    common_options,
    emit,
    open_session,
    run_command,
    session_path,
    show_store_notices,
)

COMMAND_MODULES = (control, visuals, edits, sae, maintenance)  # registered in this order, after ours


# --------------------------------------------------------------------------- commands


def _config_from_args(args: argparse.Namespace) -> SessionConfig:
    base = _preset_base(args)
    data = DataConfig(
        kind=args.data, path=args.data_path, image_size=args.image_size or base.data.image_size,
        seed=args.seed, n_train=args.n_train or base.data.n_train, n_test=args.n_test or base.data.n_test,
        max_per_class=args.max_per_class,
    )
    backbone = BackboneConfig(
        arch=args.arch, weights=args.weights, train=not args.no_train,
        epochs=args.epochs if args.epochs is not None else base.backbone.epochs,
        batch_size=args.batch_size or base.backbone.batch_size, lr=args.lr or base.backbone.lr,
        schedule=args.schedule or (
            "onecycle" if args.weights == "none" and args.preset != "paper" else base.backbone.schedule),
        augment=args.augment if args.augment is not None else base.backbone.augment,
    )
    sae = SAEConfig(
        kind=args.sae_kind, hidden=args.sae_hidden or base.sae.hidden,
        l1_coeff=args.l1 if args.l1 is not None else base.sae.l1_coeff, k=args.topk,
        lr=args.sae_lr or base.sae.lr, epochs=args.sae_epochs or base.sae.epochs,
        batch_size=args.sae_batch_size or base.sae.batch_size,
        lr_step_epochs=base.sae.lr_step_epochs if not args.sae_epochs else max(1, args.sae_epochs // 5),
        seed=args.seed, normalize=base.sae.normalize,
        early_stop_patience=args.sae_early_stop if args.sae_early_stop is not None else base.sae.early_stop_patience,
        auto_width=args.sae_width == "auto",
    )
    if isinstance(args.sae_width, int):
        sae.hidden = args.sae_width
    return SessionConfig(name=args.name, data=data, backbone=backbone, sae=sae, device=args.device, seed=args.seed)


def _sae_width(text: str) -> int | str:
    """``--sae-width``: a positive whole number or ``auto``."""
    return "auto" if text == "auto" else v.count(text)


def _preset_base(args: argparse.Namespace) -> SessionConfig:
    """Defaults for settings not given: the demo's, the paper's for the architecture (any
    dataset kind; h = 2·d from the architecture's head), or real data's (a small SAE, normalised)."""
    if args.preset == "paper":
        from core.config import paper_config
        from core.discover.backbone import head_input_dim

        return paper_config(args.name, args.arch, head_input_dim(args.arch, args.image_size or 224))
    from core.config import dataset_defaults

    # real data: a small SAE on normalised activations, its width from the number of classes
    return dataset_defaults(args.name, args.data, args.data_path, from_scratch=args.weights == "none")


def cmd_new(args: argparse.Namespace) -> int:
    config = _config_from_args(args)
    problems = config.validate()
    if problems:
        raise CliError("invalid settings: " + "; ".join(problems))
    path = resolve_session_path(args.name, sessions_dir(args.sessions_dir))
    from core.discover.backbone import check_image_size

    check_image_size(config.backbone.arch, config.data.image_size)  # the minimum, stated now
    if args.weights not in ("none", "pretrained"):  # a bad checkpoint is named now, not after the data stage
        from core.discover.backbone import load_checkpoint

        load_checkpoint(args.weights)
    with Session.create(path, config):
        pass
    emit(args, {"session": str(path), "config": config.to_dict()}, f"created session {path}")
    return 0


DISTRIBUTED_STAGES = ("activations", "sae")


def cmd_run_distributed(args: argparse.Namespace, ctx: Any) -> int:
    """``salve run`` under torchrun: every rank runs this; rank 0 alone writes the session."""
    from core.discover.distributed import shutdown

    if args.stage not in DISTRIBUTED_STAGES:
        raise CliError(f"under torchrun only the {' and '.join(DISTRIBUTED_STAGES)} stages run on "
                       f"several processes; run '{args.stage or 'all'}' in one process")
    progress = ProgressPrinter() if ctx.is_main else None
    try:
        if args.stage == "activations":
            from core.workflow.distributed_stages import run_activations_distributed

            run_activations_distributed(session_path(args), ctx, progress, cancel_on_sigint())
        else:
            from core.workflow.distributed_stages import run_sae_distributed

            run_sae_distributed(session_path(args), ctx, progress, cancel_on_sigint())
    finally:
        shutdown(ctx)
    if ctx.is_main:
        print(f"{args.stage:<12} done     on {ctx.world_size} processes")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from core.workflow.pipeline import run_pipeline

    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        from core.discover.distributed import init_from_env

        return cmd_run_distributed(args, init_from_env())
    stages = None if args.stage in (None, "all") else [args.stage]
    with open_session(args) as session:
        outcomes = run_pipeline(session, stages, ProgressPrinter(), cancel_on_sigint(), force=args.force)
        for o in outcomes:
            print(f"{o.stage:<12} {o.status:<8} {o.message}")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Create (or resume) the embedded demo session and run the whole pipeline headless."""
    from core.workflow.pipeline import run_pipeline

    if "/" in args.name or os.sep in args.name:
        raise CliError(f"--name {args.name!r} must be a session name, not a path; the demo lives in the "
                       "sessions folder (--sessions-dir)")
    path = resolve_session_path(args.name, sessions_dir(args.sessions_dir))
    if args.fresh:  # replaced under the writer lock, never deleted from outside the sessions folder
        session = Session.create(path, demo_config(args.name), overwrite=True)
    else:
        session = Session.open(path) if path.exists() else Session.create(path, demo_config(args.name))
    started = time.monotonic()
    with session:
        print(f"session {path}", file=sys.stderr)
        progress, cancel = ProgressPrinter(), cancel_on_sigint()
        run_pipeline(session, None, progress, cancel)
        _run_demo_diagnostics(session, progress, cancel)
        overview = session.overview()
    overview["elapsed_seconds"] = round(time.monotonic() - started, 1)
    emit(args, overview, _info_text)
    return 0


def _run_demo_diagnostics(session: Session, progress: Any, cancel: CancelToken) -> None:
    """After discovery: α_crit of every class's dominant feature and the Shapes ground truth
    (``core.workflow.build.run_diagnostics``, shared with the TUI's build)."""
    from core.workflow.build import run_diagnostics

    run_diagnostics(session, progress, cancel)


def _info_text(o: dict[str, Any]) -> str:
    lines = [f"session {o['name']}  ({o['path']}, {o['size_bytes'] / 1e6:.1f} MB, schema {o['schema_version']})"]
    cfg = o.get("config", {})
    lines.append(f"model {cfg.get('backbone', {}).get('arch')}  weights {cfg.get('backbone', {}).get('weights')}  "
                 f"data {cfg.get('data', {}).get('kind')} @ {cfg.get('data', {}).get('image_size')}px")
    for stage, st in _pipeline_order(o.get("stages", {})):
        lines.append(f"  {stage:<12} {st.get('state', '?'):<8} {st.get('message', '')}")
    if "backbone" in o:
        lines.append(f"backbone test accuracy: {o['backbone']['test_accuracy']:.3f}")
    if "sae" in o:
        s = o["sae"]
        lines.append(f"SAE: EV {s.get('explained_variance', float('nan')):.3f}  L0 {s.get('l0', float('nan')):.2f}  "
                     f"dead {s.get('dead', float('nan')):.0f}  ({s.get('engine', 'torch')} engine)")
    gt = o.get("groundtruth") or {}
    for method, pg in (gt.get("pointing_game") or {}).items():
        lines.append(f"pointing game ({method}, {gt.get('layer')}): hit {pg['hit_rate']:.3f} vs chance "
                     f"{pg['chance_rate']:.3f} ({pg['ratio_to_chance']:.2f}×), energy in mask {pg['energy_inside']:.3f}")
    shared = gt.get("shared_part")
    if shared:
        per_class = ", ".join(f"{c} {v:.2f}" for c, v in shared["auroc_per_class"].items())
        lines.append(f"shared part tracked by latent {shared['latent']}: AUROC {per_class} "
                     f"({'both classes' if shared['tracks_both'] else 'not both'})")
    from salve_tui.cli.sae import schedule_lines, search_table_lines

    lines += schedule_lines(o.get("sae")) + search_table_lines(o.get("sae_search"))
    if "dominant_features" in o:
        lines.append("dominant features: " + ", ".join(f"{c}→{k}" for c, k in o["dominant_features"].items()))
    lines += _alpha_crit_text(o.get("alpha_crit") or {})
    lines += _warning_text(o.get("warnings") or [])
    lines += o.get("stale_warnings") or []  # results computed before a stage was rerun
    return "\n".join(lines)


def _pipeline_order(stages: dict[str, Any]) -> list[tuple[str, Any]]:
    """The stages as the pipeline runs them (data → … → rankings), any other after, by name."""
    from core.store.session import PIPELINE_STAGES

    order = {stage: i for i, stage in enumerate(PIPELINE_STAGES)}
    return sorted(stages.items(), key=lambda item: (order.get(item[0], len(order)), item[0]))


def _alpha_crit_text(block: dict[str, Any]) -> list[str]:
    """α_crit of each class's dominant feature, per recorded setting (median over its samples)."""
    if not block:
        return ["α_crit: none recorded (salve alpha-crit NAME)"]
    lines = []
    for setting, per_class in block.items():
        def median(value: Any) -> str:
            return "—" if value is None else f"{value:.3g}"

        cells = [f"{name} {median(r.get('analytic_median'))} (f{r.get('feature')}, "
                 f"{r.get('qualifying')}/{r.get('n_samples')})" for name, r in per_class.items()]
        lines.append(f"α_crit ({setting}), analytic median per class (dominant feature, qualifying "
                     "samples): " + ", ".join(cells))
    return lines


def _warning_text(warnings: list[dict[str, Any]]) -> list[str]:
    from core.workflow.quality import warning_lines

    if not warnings:
        return ["quality: no warnings"]
    return [f"quality: {len(warnings)} warning(s)"] + [f"  {line}" for line in warning_lines(warnings)]


def cmd_info(args: argparse.Namespace) -> int:
    from core.workflow.quality import session_warnings

    with open_session(args, read_only=True) as session:
        overview = session.overview()
        # computed now, so sessions built before the gates existed get them too
        overview["warnings"] = [w.to_dict() for w in session_warnings(session)]
        from core.workflow.results import stale_report

        overview.update(stale_report(session))
        emit(args, overview, _info_text)
    return 0


def _human_bytes(n: float) -> str:
    if n < 1000:
        return f"{n:.0f} B"
    for unit in ("kB", "MB", "GB"):
        n /= 1000
        if n < 1000 or unit == "GB":
            break
    return f"{n:.1f} {unit}"


def cmd_list(args: argparse.Namespace) -> int:
    rows = list_sessions(sessions_dir(args.sessions_dir))

    def text(rows: list[dict[str, Any]]) -> str:
        if not rows:
            return f"no sessions in {sessions_dir(args.sessions_dir)}; create one with `salve new NAME` or `salve demo`"
        out = []
        for r in rows:
            if r.get("error"):
                out.append(f"{r['name']:<20} unreadable: {r['error']}")
            else:
                states = " ".join(f"{k}:{v}" for k, v in r["stages"].items())
                warn = f"  ⚠ {r['warnings']}" if r.get("warnings") else ""
                size = _human_bytes(r.get("size_bytes", 0))  # the file and its array folder
                out.append(f"{r['name']:<20} {r['model']:<10} {r['dataset']:<12} {size:>8} {states}{warn}")
        return "\n".join(out)

    emit(args, rows, text)
    return 0


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    common = common_options()
    parser = argparse.ArgumentParser(prog="salve", description="SALVE pipeline, headless.")
    sub = parser.add_subparsers(dest="command", required=True)
    _register_pipeline(sub, common)
    for module in COMMAND_MODULES:
        module.register(sub, common)
    return parser


def _register_pipeline(sub: Any, common: argparse.ArgumentParser) -> None:
    """``demo``, ``new``, ``run``, ``info`` and ``list``: the commands that build sessions."""
    p = sub.add_parser("demo", parents=[common], help="build the embedded demo session end to end")
    p.add_argument("--name", default="demo", type=v.session_name)
    p.add_argument("--fresh", action="store_true", help="delete an existing demo session first")
    p.set_defaults(func=cmd_demo)

    _register_new(sub, common)

    p = sub.add_parser("run", parents=[common], help="run a stage (or all) of a session")
    p.add_argument("session")
    p.add_argument("stage", nargs="?", default="all", choices=["all", *PIPELINE_STAGES])
    p.add_argument("--force", action="store_true", help="rerun stages that are already done")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("info", parents=[common], help="show a session's stages and results")
    p.add_argument("session")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("list", parents=[common], help="list sessions")
    p.set_defaults(func=cmd_list)


def _register_new(sub: Any, common: argparse.ArgumentParser) -> None:
    """``salve new``: a session from flags, each unset one taken from the preset."""
    p = sub.add_parser("new", parents=[common], help="create a session")
    p.add_argument("name", type=v.session_name)
    p.add_argument("--preset", choices=["demo", "paper"], default="demo",
                   help="defaults for unspecified settings (demo: fast CPU run; paper: paper A.3/A.4)")
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--weights", default="none", help="none | pretrained | PATH to a state_dict checkpoint")
    p.add_argument("--data", default="shapes", choices=["shapes", "imagefolder", "cifar100"])
    p.add_argument("--data-path", default=None)
    p.add_argument("--image-size", type=v.integer(16, 1024), default=None)
    p.add_argument("--n-train", type=v.integer(10), default=None)
    p.add_argument("--n-test", type=v.integer(10), default=None)
    p.add_argument("--max-per-class", type=v.count, default=None)
    p.add_argument("--epochs", type=v.index, default=None)
    p.add_argument("--no-train", action="store_true", help="use the weights as they are (no fine-tuning)")
    p.add_argument("--augment", choices=["none", "flip", "shift", "flip+shift"], default=None,
                   help="backbone training augmentation (default flip+shift; flips are wrong for digits or text)")
    p.add_argument("--batch-size", type=v.count, default=None)
    p.add_argument("--lr", type=v.positive, default=None)
    p.add_argument("--schedule", choices=["constant", "onecycle"], default=None,
                   help="learning-rate schedule (default: onecycle from scratch, constant when fine-tuning)")
    p.add_argument("--sae-kind", default="l1", choices=["l1", "topk"])
    p.add_argument("--sae-hidden", type=v.count, default=None)
    p.add_argument("--sae-width", type=_sae_width, default=None, metavar="H|auto",
                   help="SAE width (as --sae-hidden), or 'auto': search a grid of widths and L1 weights "
                        "on held-out data first (see `salve sae search`)")
    p.add_argument("--sae-early-stop", type=v.index, default=None, metavar="EPOCHS",
                   help="stop SAE training when EPOCHS epochs improve the best loss by < 0.1%% (0: off)")
    p.add_argument("--sae-epochs", type=v.count, default=None)
    p.add_argument("--sae-batch-size", type=v.count, default=None)
    p.add_argument("--sae-lr", type=v.positive, default=None)
    p.add_argument("--l1", type=v.non_negative, default=None)
    p.add_argument("--topk", type=v.count, default=8)
    p.add_argument("--device", default="auto", type=_device_setting)
    p.add_argument("--seed", type=v.index, default=0)
    p.set_defaults(func=cmd_new)


def _device_setting(text: str) -> str:
    from core.device import check_device_setting

    try:
        return check_device_setting(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    show_store_notices()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed its one-line error (or --help)
        return exc.code if isinstance(exc.code, int) else 2
    return run_command(args)


if __name__ == "__main__":
    sys.exit(main())
