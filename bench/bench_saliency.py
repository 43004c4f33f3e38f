"""Grad-FAM throughput for all dominant features vs pytorch-grad-cam's Grad-CAM (issue 4).

Same model (torchvision ResNet-18, random init), batch, layer and machine, in the same run.
Grad-FAM is timed for 10 features on a batch of images (maps/s = images × features / s);
Grad-CAM is timed for the predicted class of each image (images/s, one map per image).

Run: .venv/bin/python bench/bench_saliency.py [--batch 32] [--size 64] [--repeats 5] [--write]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.validate.saliency import fast_path_applies, grad_fam  # noqa: E402

RESULTS = Path(__file__).with_name("RESULTS_visuals.md")


def best_of_interleaved(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Fastest of ``repeats`` timed calls per function after one warm-up each.

    Calls are interleaved (a, b, c, a, b, c, ...) so background load on a shared machine hits
    every method alike; the minimum is the run least disturbed by it.
    """
    for fn in fns.values():
        fn()
    best = dict.fromkeys(fns, float("inf"))
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def naive_grad_fam(model, encoder, images, features, layer):
    """The obvious implementation (paper A.5.2 pseudo-code): per feature, one full forward and a
    full ``backward()`` (parameter gradients included) with hooks on the target layer."""
    module = model.get_submodule(layer)
    store = {}
    handles = [
        module.register_forward_hook(lambda _m, _i, out: store.__setitem__("A", out)),
        module.register_full_backward_hook(lambda _m, _gi, go: store.__setitem__("G", go[0])),
        model.fc.register_forward_pre_hook(lambda _m, inp: store.__setitem__("a", inp[0])),
    ]
    maps = []
    try:
        for k in features:
            model.zero_grad()
            model(images)
            encoder(store["a"])[:, k].sum().backward()
            weights = store["G"].mean(dim=(2, 3), keepdim=True)
            raw = (weights * store["A"]).sum(1, keepdim=True).abs().detach()
            up = torch.nn.functional.interpolate(raw, size=images.shape[-2:], mode="bilinear")
            low = up.amin(dim=(2, 3), keepdim=True)
            maps.append((up - low) / (up.amax(dim=(2, 3), keepdim=True) - low + 1e-12))
    finally:
        for handle in handles:
            handle.remove()
    return torch.cat(maps, 1)


def run_grad_cam(grad_cam_class, model, layer, images, targets):
    """pytorch-grad-cam's GradCAM, its hooks registered only for this call (so they do not slow
    the other methods down); registering hooks costs microseconds."""
    with grad_cam_class(model, [model.get_submodule(layer)]) as cam:
        return cam(images, targets)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--features", type=int, default=10)
    parser.add_argument("--hidden", type=int, default=64, help="SAE latent count")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--write", action="store_true", help=f"write {RESULTS.name}")
    args = parser.parse_args()

    try:
        from pytorch_grad_cam import GradCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    except ImportError:
        sys.exit("pytorch-grad-cam is missing: install the dev extras (pip install -e '.[dev]')")

    torch.manual_seed(0)
    device = torch.device(args.device)
    model = torchvision.models.resnet18(num_classes=10).eval().to(device)
    encoder = torch.nn.Linear(512, args.hidden).to(device)
    images = torch.randn(args.batch, 3, args.size, args.size, device=device)
    features = list(range(args.features))
    with torch.no_grad():
        predicted = model(images).argmax(1).tolist()

    rows = []
    for layer in ("layer3", "layer4"):
        path = "fast (one forward)" if fast_path_applies(model, layer) else "autograd"
        targets = [ClassifierOutputTarget(c) for c in predicted]
        seconds = best_of_interleaved(
            {
                "fam": lambda layer=layer: grad_fam(model, encoder, images, features, layer),
                "naive": lambda layer=layer: naive_grad_fam(
                    model, encoder, images, features, layer
                ),
                "cam": lambda layer=layer, targets=targets: run_grad_cam(
                    GradCAM, model, layer, images, targets
                ),
            },
            args.repeats,
        )
        fam_s, naive_s, cam_s = seconds["fam"], seconds["naive"], seconds["cam"]
        fam_rate = args.batch * args.features / fam_s
        cam_rate = args.batch / cam_s
        naive_rate = args.batch * args.features / naive_s
        rows.append((layer, path, fam_rate, naive_rate, cam_rate, fam_rate / cam_rate))

    command = "python bench/bench_saliency.py " + " ".join(sys.argv[1:])
    lines = [
        f"Grad-FAM ({args.features} features) vs pytorch-grad-cam GradCAM, ResNet-18 random init, "
        f"batch {args.batch}, {args.size} px, {device.type} "
        f"({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads), "
        f"best of {args.repeats} interleaved runs, 1-min load average at the end "
        f"{os.getloadavg()[0]:.1f} (shared machine: absolute rates vary, ratios are same-run)",
        "",
        "| layer | Grad-FAM path | Grad-FAM maps/s | naive Grad-FAM maps/s "
        "| pytorch-grad-cam GradCAM images/s | Grad-FAM ÷ GradCAM |",
        "|---|---|---:|---:|---:|---:|",
        *(
            f"| {r[0]} | {r[1]} | {r[2]:.0f} | {r[3]:.0f} | {r[4]:.0f} | {r[5]:.1f}× |"
            for r in rows
        ),
        "",
        f"Command: `{command.strip()}`",
    ]
    table = "\n".join(lines)
    print(table)
    if args.write:
        RESULTS.write_text("# Validation visuals benchmarks\n\n" + table + "\n")


if __name__ == "__main__":
    main()
