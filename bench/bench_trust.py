"""Issue 11 "must reach" on a session (default sessions/demo.h5), read-only, nothing recorded:

1. SALVE selective window per class (target < 10% while every other class keeps ≥ 80% of its
   baseline), and the control curves (lowest-association feature, random direction of the
   dominant feature's decoder norm) at the dominant feature's α50: target still above 50%?
2. Activation maximisation (Fourier parametrisation, default settings) of each class's dominant
   feature: is the final image classified as the class, and does its u_k (signed by the class's
   sign) exceed the 99th percentile of u_k over the natural test images?
3. Grad-FAM deletion AUC below the random order for each dominant feature (faithfulness).

    .venv/bin/python bench/bench_trust.py [SESSION] [--skip-actmax] [--skip-faithfulness]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.store.session import Session  # noqa: E402
from core.workflow.inputs import load_inputs  # noqa: E402
from core.workflow.selectivity import selectivity_report  # noqa: E402
from core.workflow.sweeps import run_sweep  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def fmt(v: float | None) -> str:
    return "—" if v is None else f"{v:.0%}"


def selectivity_part(session: Session) -> list[str]:
    x = load_inputs(session)
    rows, windows, low_ok, rand_ok = [], 0, 0, 0
    for c in range(x.num_classes):
        result = run_sweep(session, target_class=c, n_alphas=400, record=False, inputs=x)
        r = selectivity_report(session, result, x)
        ctrl = r["controls"]
        low = ctrl["low_association"]["target_accuracy_at_main_alpha50"]
        rnd = ctrl["random"]["target_accuracy_at_main_alpha50"]
        windows += r["has_selective_window"]
        low_ok += low is not None and low > 0.5
        rand_ok += rnd is not None and rnd > 0.5
        w = ", ".join(f"{a:.3g}–{b:.3g}" for a, b in r["selective_window"]) or "none"
        rows.append(f"| {x.class_names[c]} | {result.features[0]} | {w} | "
                    f"{'—' if r['target_alpha50'] is None else format(r['target_alpha50'], '.3g')} | "
                    f"f{ctrl['low_association']['feature']} {fmt(low)} | {fmt(rnd)} |")
    n = x.num_classes
    return ["| class | dominant | selective window (α) | α50 | low-association control at α50 "
            "| random direction at α50 |", "|---|---:|---|---:|---:|---:|", *rows, "",
            f"**Selective window: {windows}/{n} classes. Target above 50% at α50: "
            f"low-association control {low_ok}/{n}, random direction {rand_ok}/{n}.**"]


def actmax_part(session: Session) -> list[str]:
    from core.validate.actmax import activation_maximization
    from core.workflow.actmax_images import default_actmax_config, feature_sign
    from core.workflow.assets import load_assets
    from core.workflow.pipeline import load_activations

    assets = load_assets(session)
    names = assets.class_names
    dominant = [int(k) for k in session.read_array("rankings/dominant")]
    test = load_activations(session, "test")
    with torch.no_grad():
        u = assets.sae.encode(torch.from_numpy(np.asarray(test["a"], dtype=np.float32))).numpy()
    hits = above = 0
    rows = []
    started = time.perf_counter()
    for c, k in enumerate(dominant):
        config = default_actmax_config(session, k)
        result = activation_maximization(assets.model, assets.sae, k, config)
        image = result.images.to(assets.device)
        mean = torch.tensor(config.mean).view(1, 3, 1, 1)
        std = torch.tensor(config.std).view(1, 3, 1, 1)
        with torch.no_grad():
            pred = int(assets.model((image - mean) / std).argmax(1)[0])
        sign = feature_sign(session, k)
        p99 = float(np.percentile(sign * u[:, k], 99))
        final = float(sign * result.final_activation[0])
        hits += pred == c
        above += final > p99
        rows.append(f"| {names[c]} | {k} | {names[pred]} | {final:.3g} | {p99:.3g} |")
    seconds = time.perf_counter() - started
    n = len(dominant)
    return ["| class | feature | final image classified as | s·u_k of the image | 99th pct "
            "over test images |", "|---|---:|---|---:|---:|", *rows, "",
            f"**Act-max: {hits}/{n} classified as their class; u_k above the 99th percentile "
            f"{above}/{n}** ({ActMaxSteps.text()}, {seconds:.0f} s for all {n})."]


class ActMaxSteps:
    @staticmethod
    def text() -> str:
        from core.validate.actmax import ActMaxConfig

        c = ActMaxConfig()
        return f"{c.parametrization} parametrisation, {c.steps} steps, lr {c.lr}"


def faithfulness_part(session: Session) -> list[str]:
    from core.workflow.faithfulness import run_faithfulness

    r = run_faithfulness(session, figure=False)
    s = r["summary"]
    rows = [f"| {e['class_name']} | {e['feature']} | {e['gradfam']['deletion']:.3f} | "
            f"{e['gradfam']['deletion_random']:.3f} | {e['gradcam']['deletion']:.3f} | "
            f"{e['gradcam']['deletion_random']:.3f} |" for e in r["features"]]
    return ["| class | feature | Grad-FAM deletion AUC | random | Grad-CAM deletion AUC | random |",
            "|---|---:|---:|---:|---:|---:|", *rows, "",
            f"**Grad-FAM deletion AUC below random: {s['gradfam']['deletion_below_random']}/"
            f"{s['gradfam']['n']}** (Grad-CAM {s['gradcam']['deletion_below_random']}/"
            f"{s['gradcam']['n']}; layer {r['layer']}, {r['samples_per_feature']} samples per "
            f"feature, {r['steps']} steps, {r['random_orders']} random orders)."]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("session", nargs="?", default=str(ROOT / "sessions" / "demo.h5"))
    parser.add_argument("--skip-actmax", action="store_true")
    parser.add_argument("--skip-faithfulness", action="store_true")
    args = parser.parse_args()
    path = Path(args.session)
    if not path.exists():
        raise SystemExit(f"session {path} does not exist; build it with `salve demo` first")
    lines = []
    with Session.open(path, read_only=True) as session:
        lines += ["### Selectivity and controls (SALVE, linear, 400-point grid)", ""]
        lines += selectivity_part(session)
        if not args.skip_faithfulness:
            lines += ["", "### Grad-FAM faithfulness (deletion vs random order)", ""]
            lines += faithfulness_part(session)
        if not args.skip_actmax:
            lines += ["", "### Activation maximisation of dominant features", ""]
            lines += actmax_part(session)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
