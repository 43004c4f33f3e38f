"""``salve sweep | alpha-crit | edit | robustness``: the control commands of the CLI.

Torch is imported inside the command functions only, so registering these commands keeps
``salve info`` fast. Every command records its result in the session (``core.workflow``)
unless ``--no-record`` is given, which opens the session read-only (useful while the TUI or
another process holds it for writing).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Sequence
from typing import Any, overload

from core.config import MODULATIONS
from salve_tui.cli import validate as v
from salve_tui.cli.common import CliError, ProgressPrinter, cancel_on_sigint, emit, open_session


class RegisteredMethods(Sequence[str]):
    """The registry's method names (``core.control.methods.registry``), read when argparse
    first checks or lists them: building the parser imports no torch."""

    @staticmethod
    def _names() -> tuple[str, ...]:
        from core.control.methods.registry import method_names

        return method_names()

    @overload
    def __getitem__(self, index: int) -> str: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[str]: ...
    def __getitem__(self, index: int | slice) -> str | Sequence[str]:
        return self._names()[index]

    def __len__(self) -> int:
        return len(self._names())

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())

    def __contains__(self, value: object) -> bool:
        return value in self._names()


METHODS = RegisteredMethods()
MODES = ("suppress", "enhance")


def parse_alpha_grid(text: str) -> list[float]:
    """``START:STOP:N`` (N evenly spaced values, both ends included) or ``a,b,c``."""
    try:
        return v.parse_alpha_grid(text)
    except argparse.ArgumentTypeError as exc:
        raise CliError(f"--alphas {exc}") from None


def _open(args: argparse.Namespace):
    return open_session(args, read_only=args.no_record)


def _class_arg(inputs: Any, value: str | None) -> int | None:
    return None if value is None else inputs.class_index(value)


def _progress(args: argparse.Namespace) -> ProgressPrinter | None:
    return None if args.json else ProgressPrinter()


def _fmt(v: float | None, digits: int = 4) -> str:
    return "—" if v is None else f"{v:.{digits}g}"


# ----------------------------------------------------------------------------- sweep


def cmd_sweep(args: argparse.Namespace) -> int:
    from core.control.methods.registry import default_method
    from core.workflow.alpha_crit import alpha_crit_brief, run_alpha_crit
    from core.workflow.inputs import row_inputs_for
    from core.workflow.results import stale_report
    from core.workflow.sweeps import curve_alpha50, run_sweep, sweep_id

    if args.all_dominant:
        return cmd_sweep_all_dominant(args)
    if args.class_ is None and not args.feature:
        raise CliError("give --class C (its dominant feature is swept), --feature K or --all-dominant")
    alphas = parse_alpha_grid(args.alphas) if args.alphas else None
    with _open(args) as session:
        inputs = row_inputs_for(session, None, "test")  # left on disk past the memory budget
        target = _class_arg(inputs, args.class_)
        features = args.feature or None
        result = run_sweep(
            session, target, features, args.mode, args.method, args.modulation, alphas,
            args.n_alphas, args.sample, _progress(args), None, not args.no_record, inputs,
        )
        crit = []
        # the stored α_crit is the default method's (SALVE): its sweeps of one feature get it
        if default_method().name == result.method and len(result.features) == 1 and args.mode == "suppress":
            # Only the swept class: re-recording every class would pile up cross-class results.
            crit = run_alpha_crit(
                session, result.target_class, result.features[0], "suppress", args.modulation,
                curve=result,
                record=not args.no_record, inputs=inputs,
            )
        # the selectivity report's extra sweeps (train split, controls) need the splits in memory
        selectivity = None if inputs.streamed else sweep_selectivity(session, result, inputs)
        stale = stale_report(session, ("sweep",))  # stored sweeps older than a stage rerun
    names = inputs.class_names
    payload = sweep_payload(session.name, result, names, curve_alpha50(result))
    payload["alpha_crit"] = [alpha_crit_brief(r, names) for r in crit]
    payload["selectivity"] = selectivity
    payload["recorded"] = None if args.no_record else sweep_id(result)
    payload.update(stale)
    emit(args, payload, _sweep_text)
    return 0


def cmd_sweep_all_dominant(args: argparse.Namespace) -> int:
    """``salve sweep SESSION --all-dominant``: every class's dominant sweep and α_crit, one job."""
    from core.control.methods.registry import default_method
    from core.workflow.all_dominant import run_all_dominant

    default = default_method()
    clashing = [flag for flag, given in (("--class", args.class_ is not None), ("--feature", bool(args.feature)),
                                         ("--method", args.method not in (None, default.name)),
                                         ("--no-record", args.no_record), ("--sample", args.sample is not None))
                if given]
    if clashing:
        raise CliError(f"--all-dominant sweeps every class's dominant feature with {default.label} and records "
                       f"them; drop {', '.join(clashing)}")
    alphas = parse_alpha_grid(args.alphas) if args.alphas else None
    with _open(args) as session:
        outcome = run_all_dominant(session, args.mode, args.modulation, alphas, args.n_alphas,
                                   _progress(args), cancel_on_sigint(), redo=args.redo)
    payload = {"session": session.name, **outcome.to_dict()}

    def text(p: dict[str, Any]) -> str:
        lines = [f"dominant-feature {p['mode']} sweeps ({p['modulation']}) of {p['classes']} classes: "
                 f"{p['computed']} computed, {p['skipped']} already recorded, in {p['seconds']:.1f} s "
                 f"({p['commits']} commits)"]
        if p["no_feature"]:
            lines.append(f"no dominant feature (no training samples): classes {p['no_feature']}")
        if p["mode"] == "suppress":
            lines.append(f"α_crit of each: `salve alpha-crit {p['session']}`; recompute with --redo")
        return "\n".join(lines)

    emit(args, payload, text)
    return 0


def sweep_selectivity(session: Any, result: Any, inputs: Any) -> dict[str, Any] | None:
    """Side effects, selective window, train-vs-test and controls of a sweep (None: no target)."""
    from core.workflow.selectivity import selectivity_report

    if result.target_class is None:
        return None
    return selectivity_report(session, result, inputs)


def sweep_payload(session: str, result: Any, names: list[str], a50: list) -> dict[str, Any]:
    """The documented JSON of ``salve sweep``."""
    d = result.to_dict()
    target = result.target_class
    return {
        "session": session,
        "method": result.method,
        "features": d["features"],
        "mode": result.mode,
        "modulation": result.modulation,
        "target_class": target,
        "target_class_name": None if target is None else names[target],
        "param_name": result.param_name,
        "alphas": d["alphas"],
        "class_names": names,
        "class_counts": d["class_counts"],
        "per_class_accuracy": {n: row for n, row in zip(names, d["per_class_accuracy"], strict=True)},
        "target_prediction": d["target_prediction"],
        "curve_alpha50": {n: v for n, v in zip(names, a50, strict=True)},
        "extra": d["extra"],
    }


def _sweep_text(p: dict[str, Any]) -> str:
    alphas = p["alphas"]
    picks = sorted({0, len(alphas) // 4, len(alphas) // 2, 3 * len(alphas) // 4, len(alphas) - 1})
    feats = ",".join(str(k) for k in p["features"]) or "—"
    head = (f"{p['method']} {p['mode']} sweep, feature(s) {feats}, target "
            f"{p['target_class_name']}, {len(alphas)} values of {p['param_name']}")
    width = max(len(n) for n in p["class_names"]) + 2
    lines = [head, f"{'class':<{width}}" + "".join(f"{alphas[i]:>10.3g}" for i in picks)
             + f"{'50% at':>10}"]
    for name in p["class_names"]:
        row = p["per_class_accuracy"][name]
        mark = "*" if name == p["target_class_name"] else " "
        cells = "".join(f"{'—' if row[i] is None else f'{row[i]:.1%}':>10}" for i in picks)
        lines.append(f"{mark}{name:<{width - 1}}{cells}{_fmt(p['curve_alpha50'][name]):>10}")
    if p.get("selectivity"):
        from core.workflow.selectivity import selectivity_lines

        lines.append("")
        lines += selectivity_lines(p["selectivity"])
    if p["alpha_crit"]:
        lines.append("")
        lines.append(_crit_table(p["alpha_crit"]))
    if p["recorded"]:
        lines.append(f"\nrecorded as control/sweeps/{p['recorded']}")
    lines += p.get("stale_warnings") or []
    return "\n".join(lines)


# ----------------------------------------------------------------------------- alpha-crit


def _crit_table(rows: list[dict[str, Any]]) -> str:
    """Qualify counts as in the JSON: analytic (z > 0, S > 0) and numerical (a root kept)."""
    width = max(len(r["class_name"]) for r in rows) + 2
    lines = [f"{'class':<{width}}{'feature':>8}{'analytic':>18}{'numerical':>20}"
             f"{'α50':>9}{'max rel Δ':>11}"]
    for r in rows:
        shown = r.get("numerical_shown", r["numerical_median"])
        numerical = "—" if shown is None else _fmt(shown)
        lines.append(
            f"{r['class_name']:<{width}}{r['feature']:>8}"
            f"{_fmt(r['analytic_median']):>10} {r['qualifying']:>3}/{r['n_samples']:<3}"
            f"{numerical:>12} {r.get('qualifying_numerical', r['qualifying']):>3}/{r['n_samples']:<3}"
            f"{_fmt(r['alpha50']):>9}{_fmt(r['max_relative_difference'], 2):>11}"
        )
    ablated = [f"{r['class_name']} {r['total_ablation']}" for r in rows if r.get("total_ablation")]
    if ablated:
        off = next((r["alpha_off"] for r in rows if r.get("alpha_off") is not None), None)
        rule = "α ≥ α_off, 95% of |D[:,k]| switched off" if off is not None else "total ablation"
        lines.append(f"excluded (root only at {rule}): " + ", ".join(ablated))
    lines += [f"{r['class_name']}: numerical median withheld: {r['withheld_reason']}"
              for r in rows if r.get("withheld_reason")]
    lines += sorted({f"note: {r['note']}" for r in rows if r.get("note")})
    return "\n".join(lines)


def cmd_alpha_crit(args: argparse.Namespace) -> int:
    from core.workflow.alpha_crit import alpha_crit_brief, run_alpha_crit
    from core.workflow.export import alpha_crit_csv_paths, export_alpha_crit_csv
    from core.workflow.inputs import row_inputs_for

    if args.csv:
        alpha_crit_csv_paths(args.csv)  # a bad or existing target is refused before any work
    from core.workflow.results import stale_report

    with _open(args) as session:
        inputs = row_inputs_for(session, None, "test")  # left on disk past the memory budget
        target = _class_arg(inputs, args.class_)
        results = run_alpha_crit(
            session, target, args.feature, args.mode, args.modulation,
            progress=_progress(args), record=not args.no_record, inputs=inputs,
        )
        stale = stale_report(session, ("alpha-crit",))  # stored results older than a stage rerun
    names = inputs.class_names
    briefs = [alpha_crit_brief(r, names) for r in results]
    written = None
    if args.csv:
        written = [str(p) for p in export_alpha_crit_csv(results, names, args.csv)]
    payload = {
        "session": session.name,
        "mode": args.mode,
        "modulation": args.modulation,
        "classes": briefs,
        "summaries": [r.summary() for r in results],
        "csv": written,
        **stale,
    }
    text = _crit_table(briefs) + (f"\nwrote {written[0]} and {written[1]}" if written else "")
    text += "".join(f"\n{line}" for line in stale["stale_warnings"])
    emit(args, payload, text)
    return 0


# ----------------------------------------------------------------------------- edit


def cmd_edit(args: argparse.Namespace) -> int:
    from core.workflow.edits import build_spec, preview_edit, record_edit
    from core.workflow.export import check_export_target, export_edited_model
    from core.workflow.inputs import load_inputs

    if not args.feature and args.class_ is None:
        raise CliError("give --feature K (repeatable) or --class C (the target; methods with features "
                       "edit its dominant feature)")
    if args.alpha is None:
        raise CliError("give the edit strength with --alpha A")
    if args.out is not None:
        check_export_target(args.out)  # a bad or existing target is refused before any work
    with _open(args) as session:
        inputs = load_inputs(session)
        target = _class_arg(inputs, args.class_)
        spec = build_spec(
            inputs, args.method, args.feature or None, target, args.mode, args.alpha,
            args.modulation, args.sample,
        )
        effect = preview_edit(session, spec, inputs)
        exported = export_edited_model(session, spec, args.out)
        index = None
        if not args.no_record:
            index = record_edit(session, spec, exports=[str(p) for p in exported.files])
    d = effect.to_dict()
    names = inputs.class_names
    payload = {
        "session": session.name,
        "edit": spec.to_dict(),
        "edit_index": None if index is None else index + 1,  # 1-based, as `salve edits` lists them
        "class_names": names,
        "accuracy_before": dict(zip(names, d["accuracy_before"], strict=True)),
        "accuracy_after": dict(zip(names, d["accuracy_after"], strict=True)),
        "accuracy_delta": dict(zip(names, d["accuracy_delta"], strict=True)),
        "confusion_before": d["confusion_before"],
        "confusion_after": d["confusion_after"],
        "export": exported.to_dict(),
    }

    def text(p: dict[str, Any]) -> str:
        width = max(len(n) for n in names) + 2
        lines = [f"{'class':<{width}}{'before':>9}{'after':>9}{'Δ':>9}"]
        for n in names:
            b, a, dl = p["accuracy_before"][n], p["accuracy_after"][n], p["accuracy_delta"][n]
            cells = "".join(f"{'—' if v is None else f'{v:+.1%}' if i == 2 else f'{v:.1%}':>9}"
                            for i, v in enumerate((b, a, dl)))
            lines.append(f"{n:<{width}}{cells}")
        lines.append("wrote " + ", ".join(p["export"]["files"] + p["export"]["sidecars"]))
        return "\n".join(lines)

    emit(args, payload, text)
    return 0


# ----------------------------------------------------------------------------- robustness


def cmd_robustness(args: argparse.Namespace) -> int:
    from core.workflow.inputs import load_inputs
    from core.workflow.robustness import robustness_to_json, run_seed_robustness

    if args.seeds < 1:
        raise CliError(f"--seeds must be at least 1, got {args.seeds}")
    with _open(args) as session:
        inputs = load_inputs(session)
        target = _class_arg(inputs, args.class_)
        results = run_seed_robustness(
            session, args.seeds, target, args.mode, args.modulation, n_alphas=args.n_alphas,
            epochs=args.epochs, progress=_progress(args), record=not args.no_record,
        )
    payload = {"session": session.name, "mode": args.mode, "modulation": args.modulation,
               **robustness_to_json(results, inputs.class_names)}

    def text(p: dict[str, Any]) -> str:
        lines = [f"{p['n_seeds']} SAE seeds; accuracy at the largest α (mean ± std)"]
        for c in p["classes"]:
            t_m, t_s = c["target_accuracy_mean"][-1], c["target_accuracy_std"][-1]
            o_m, o_s = c["others_accuracy_mean"][-1], c["others_accuracy_std"][-1]
            lines.append(f"{c['class_name']:<16} features {c['features_per_seed']}  target "
                         f"{t_m:.1%} ± {t_s:.1%}  others {o_m:.1%} ± {o_s:.1%}")
        return "\n".join(lines)

    emit(args, payload, text)
    return 0


# ----------------------------------------------------------------------------- registration


def _shared(p: argparse.ArgumentParser) -> None:
    p.add_argument("session")
    p.add_argument("--no-record", action="store_true",
                   help="do not store results in the session (opens it read-only)")



def _method_args(p: argparse.ArgumentParser) -> None:
    """``--method`` (the registered editing methods) and ``--sample`` (a method option)."""
    p.add_argument("--method", choices=METHODS, default=None, metavar="METHOD",
                   help="editing method: %(choices)s (default: the first)")
    p.add_argument("--sample", "--rome-sample", dest="sample", type=v.index, default=None,
                   help="build the edit from this test sample (ROME: its key instead of the class mean)")


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the control commands to the ``salve`` parser."""
    p = sub.add_parser("sweep", parents=[common], help="per-class accuracy vs edit strength")
    _shared(p)
    p.add_argument("--class", dest="class_", default=None, help="target class (name or index)")
    p.add_argument("--feature", type=v.index, action="append", default=[],
                   help="SAE feature to edit (repeat for several); default: the class's dominant")
    p.add_argument("--mode", choices=MODES, default="suppress")
    _method_args(p)
    p.add_argument("--modulation", choices=MODULATIONS, default="linear")
    p.add_argument("--alphas", default=None, type=v.alpha_grid,
                   help="START:STOP:N or a,b,c (default: automatic)")
    p.add_argument("--n-alphas", type=v.integer(2, 100_000), default=200, help="points of the automatic grid")
    p.add_argument("--all-dominant", action="store_true",
                   help="every class's dominant feature (and its α_crit) as one resumable job")
    p.add_argument("--redo", action="store_true",
                   help="with --all-dominant: recompute classes already recorded")
    p.set_defaults(func=cmd_sweep)

    p = sub.add_parser("alpha-crit", parents=[common], help="critical suppression thresholds")
    _shared(p)
    p.add_argument("--class", dest="class_", default=None, help="one class (default: all)")
    p.add_argument("--feature", type=v.index, default=None, help="default: each class's dominant")
    p.add_argument("--mode", choices=MODES, default="suppress")
    p.add_argument("--modulation", choices=MODULATIONS, default="linear")
    p.add_argument("--csv", default=None, metavar="FILE",
                   help="write the per-class summary to FILE and per-sample rows beside it")
    v.force_flag(p)
    p.set_defaults(func=cmd_alpha_crit)

    p = sub.add_parser("edit", parents=[common], help="edit the classifier and export it")
    _shared(p)
    p.add_argument("--feature", type=v.index, action="append", default=[],
                   help="SAE feature to edit (repeat for several at once)")
    p.add_argument("--class", dest="class_", default=None,
                   help="target class (ROME/steering; SALVE: its dominant feature)")
    p.add_argument("--mode", choices=MODES, default="suppress")
    p.add_argument("--alpha", type=v.finite, default=None,
                   help="the method's strength: α (salve), β (steer), the target logit (rome), ...")
    _method_args(p)
    p.add_argument("--modulation", choices=MODULATIONS, default="linear")
    p.add_argument("--out", default=None, metavar="FILE",
                   help=".pt or .safetensors (default: both, in the session's export folder)")
    v.force_flag(p)
    p.set_defaults(func=cmd_edit)

    p = sub.add_parser("robustness", parents=[common],
                       help="suppression curves over several SAE seeds (mean ± std)")
    _shared(p)
    p.add_argument("--seeds", type=v.integer(1, 1000), default=5)
    p.add_argument("--class", dest="class_", default=None, help="one class (default: all)")
    p.add_argument("--mode", choices=MODES, default="suppress")
    p.add_argument("--modulation", choices=MODULATIONS, default="linear")
    p.add_argument("--n-alphas", type=v.integer(2, 100_000), default=200)
    p.add_argument("--epochs", type=v.count, default=None, help="SAE epochs (default: the session's)")
    p.set_defaults(func=cmd_robustness)
