"""Ground-truth scores of the embedded demo session (SPEC §8), measured, not eyeballed.

On ``sessions/demo.h5`` (opened READ-ONLY: another process may hold it as the writer; the
script waits until every pipeline stage is done):

* pointing game of Grad-FAM on each class's dominant feature at the default saliency layer vs
  its chance rate (the share of the image the tolerant mask covers; must be ≥ 3×), beside
  Grad-CAM of the true class at the same layer, plus energy inside the mask; other layers for
  context;
* AUROC of the best latent per concept (latent value vs concept presence);
* shared-part tracking: does one latent follow the tower inside both of its classes?

Nothing is stored in the session (``record=False``). Prints markdown; ``--write`` also writes
``bench/RESULTS_demo_visuals.md``.

    python bench/bench_demo_visuals.py --write
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.store.session import PIPELINE_STAGES, Session  # noqa: E402

REQUIRED_RATIO = 3.0


def wait_for_pipeline(path: Path, timeout_s: float, poll_s: float = 15.0) -> None:
    """Block until every pipeline stage of the session at ``path`` is done."""
    deadline = time.monotonic() + timeout_s
    while True:
        if path.exists():
            with Session.open(path, read_only=True) as session:
                states = {s: st.state for s, st in session.stages().items()}
            pending = [s for s in PIPELINE_STAGES if states.get(s) != "done"]
            if not pending:
                return
            status = ", ".join(f"{s}={states.get(s, 'missing')}" for s in pending)
        else:
            status = "file missing"
        if time.monotonic() > deadline:
            raise SystemExit(f"{path}: pipeline not done after {timeout_s:.0f} s ({status})")
        print(f"waiting for {path.name}: {status}", file=sys.stderr)
        time.sleep(poll_s)


def fmt(value: object, spec: str = ".3f") -> str:
    return "—" if value is None else format(value, spec)


def pointing_rows(layer_label: str, result: dict) -> list[str]:
    rows = []
    for key, name in (("grad_fam", "Grad-FAM, dominant feature"), ("grad_cam", "Grad-CAM, true class")):
        s = result["pointing_game"][key]
        rows.append(
            f"| {layer_label} | {name} | {fmt(s['hit_rate'])} | {fmt(s['chance_rate'])} | "
            f"{fmt(s['ratio_to_chance'], '.2f')}× | {fmt(s['energy_inside'])} | "
            f"{fmt(s['mask_area_share'])} | {s['n_evaluated']} |"
        )
    return rows


def report(session: Session, default: dict, others: dict[str, dict], seconds: float) -> str:
    summary = session.summary()
    config = session.config
    fam = default["pointing_game"]["grad_fam"]
    ratio = fam["ratio_to_chance"] or 0.0
    verdict = "PASS" if ratio >= REQUIRED_RATIO else "FAIL"
    lines = [
        "# Ground truth on the demo session",
        "",
        f"Session `{session.path}` ({config.backbone.arch}, Shapes {config.data.image_size} px, "
        f"{config.data.n_train} train / {config.data.n_test} test images; backbone test "
        f"accuracy {summary.get('backbone', {}).get('test_accuracy', float('nan')):.3f}; SAE "
        f"h={config.sae.hidden}, EV {summary.get('sae', {}).get('explained_variance', float('nan')):.3f}). "
        f"All {default['n_images']} test images; pointing tolerance 15 px at 224 px scaled to "
        f"{fmt(fam['tolerance_px'], '.2f')} px; chance = share of the image the tolerant mask "
        f"covers. Machine: {platform.machine()}, {os.cpu_count()} CPUs (shared); the default-layer "
        f"scoring took {seconds:.1f} s.",
        "",
        f"**Grad-FAM pointing game at the default layer `{default['layer']}`: "
        f"{fmt(fam['hit_rate'])} vs chance {fmt(fam['chance_rate'])} = "
        f"{fmt(ratio, '.2f')}× (required ≥ {REQUIRED_RATIO:.0f}×): {verdict}.**",
        "",
        "## Pointing game and energy inside the class-shape mask",
        "",
        "| layer | method | hit rate | chance | ratio | energy in mask | mask area | images |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
        *pointing_rows(f"{default['layer']} (default)", default),
        *[row for layer, res in others.items() for row in pointing_rows(layer, res)],
        "",
        f"## Per class at `{default['layer']}`",
        "",
        "| class | dominant feature | its AUROC for the shape | Grad-FAM hit | Grad-CAM hit | "
        "chance | Grad-FAM energy | Grad-CAM energy |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in default["classes"].items():
        f, c = row.get("grad_fam") or {}, row.get("grad_cam") or {}
        lines.append(
            f"| {name} | {row['dominant_feature']} | {fmt(row.get('dominant_auroc_for_shape'))} | "
            f"{fmt(f.get('hit_rate'))} | {fmt(c.get('hit_rate'))} | {fmt(f.get('chance_rate'))} | "
            f"{fmt(f.get('energy_inside'))} | {fmt(c.get('energy_inside'))} |"
        )
    lines += [
        "",
        "## Best latent per concept (AUROC of latent value vs concept presence)",
        "",
        "AUROC < 0.5 means the latent falls when the concept is present (latents are signed); "
        "strength = max(AUROC, 1 − AUROC).",
        "",
        "| concept | latent | AUROC | strength |",
        "|---|---:|---:|---:|",
    ]
    for name, row in default["concepts"].items():
        lines.append(f"| {name} | {row['latent']} | {fmt(row['auroc'])} | {fmt(row['strength'])} |")
    shared = default["shared_part"]
    lines += ["", f"## Shared part `{shared['concept']}` ({' and '.join(shared['classes'])})", ""]
    best = shared.get("best_latent")
    if best:
        lines += [
            "Within-class AUROC: presence of the part vs the latent, computed inside one class at "
            f"a time (oriented by the latent's sign); 'tracks' needs ≥ {best['threshold']} in both.",
            "",
            "| latent | why | AUROC over both classes | "
            + " | ".join(f"within {c}" for c in shared["classes"])
            + " | tracks both |",
            "|---|---|---:|" + "---:|" * len(shared["classes"]) + "---|",
            f"| {best['latent']} | best for the part | {fmt(best['auroc_overall'])} | "
            + " | ".join(fmt(best["auroc_per_class"][c]) for c in shared["classes"])
            + f" | {'yes' if best['tracks_both'] else 'no'} |",
        ]
        for owner, row in shared.get("dominant_features", {}).items():
            lines.append(
                f"| {row['latent']} | {owner}'s dominant | — | "
                + " | ".join(fmt(row["auroc_per_class"][c]) for c in shared["classes"])
                + f" | {'yes' if row['tracks_both'] else 'no'} |"
            )
    else:
        lines.append(f"not scored: {shared.get('error')}")
    lines += ["", "Command: `python bench/bench_demo_visuals.py --write`", ""]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--session", type=Path, default=ROOT / "sessions" / "demo.h5")
    parser.add_argument("--layers", default="layer2,layer4",
                        help="extra saliency layers to score for context (comma list, or empty)")
    parser.add_argument("--wait", type=float, default=3600.0, help="seconds to wait for the demo")
    parser.add_argument("--write", action="store_true", help="write bench/RESULTS_demo_visuals.md")
    args = parser.parse_args()

    import torch

    from core.workflow.ground_truth import run_groundtruth

    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    wait_for_pipeline(args.session, args.wait)
    with Session.open(args.session, read_only=True) as session:
        started = time.perf_counter()
        default = run_groundtruth(session, record=False)
        seconds = time.perf_counter() - started
        others = {}
        for layer in [name for name in args.layers.split(",") if name.strip()]:
            if layer.strip() != default["layer"]:
                others[layer.strip()] = run_groundtruth(session, layer=layer.strip(), record=False)
        text = report(session, default, others, seconds)
    print(text)
    if args.write:
        (ROOT / "bench" / "RESULTS_demo_visuals.md").write_text(text)
    return 0 if (default["pointing_game"]["grad_fam"]["ratio_to_chance"] or 0) >= REQUIRED_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
