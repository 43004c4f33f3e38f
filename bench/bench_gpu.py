"""GPU measurements in one run (issue 13, item 5): everything `bench/gpu.sh` records.

1. SAE epoch time on the device: the project trainer (``train_sae``, torch engine on CUDA)
   against the obvious loop (``bench_sae.train_obvious``: DataLoader, Adam, backward) on the same
   data, schedule and batch, in the same run.
2. Activation extraction images/s for ResNet-18 and ViT-B/16 at 224 px: the project's capture
   path (``iter_activations``: uint8 source, on-the-fly normalisation, hook on the final linear,
   copy to host) against a bare forward pass over the same batches.
3. Grad-FAM maps/s (10 features, one call) against pytorch-grad-cam's GradCAM images/s and the
   obvious per-feature Grad-FAM loop, ResNet-18 at 224 px.

Random-init torchvision models and synthetic data: no hub, no dataset download. Writes a
markdown report (``--out``, default bench/RESULTS_gpu.md) with the command, device and versions.
``--quick`` shrinks every size so the script can be smoke-tested on a CPU.

    python bench/bench_gpu.py [--device cuda] [--quick] [--out bench/RESULTS_gpu.md]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torchvision

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_sae import train_obvious  # noqa: E402
from bench_saliency import naive_grad_fam, run_grad_cam  # noqa: E402

from core.config import SAEConfig  # noqa: E402
from core.discover.activations import iter_activations  # noqa: E402
from core.discover.data import ArrayImageSource  # noqa: E402
from core.discover.sae_train import train_sae  # noqa: E402
from core.validate.saliency import grad_fam  # noqa: E402


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Best wall time of ``repeats`` calls after one warm-up call."""
    fn()
    sync(device)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - start)
    return best


# ----------------------------------------------------------------------------- 1. SAE


def project_sae_epochs(x: torch.Tensor, cfg: SAEConfig, device: torch.device) -> tuple[list[float], str]:
    stamps: list[float] = []

    def progress(_p: object) -> None:
        sync(device)
        stamps.append(time.perf_counter())

    sync(device)
    stamps.append(time.perf_counter())
    result = train_sae(x, cfg, progress=progress, device=device)
    return list(np.diff(stamps))[-cfg.epochs:], result.engine


def bench_sae(device: torch.device, n: int, d: int, h: int, batch: int, epochs: int) -> list[str]:
    g = torch.Generator().manual_seed(0)
    x = torch.relu(torch.randn(n, 32, generator=g) @ torch.randn(32, d, generator=g)
                   + 0.1 * torch.randn(n, d, generator=g))
    cfg = SAEConfig(hidden=h, epochs=epochs, batch_size=batch, lr_step_epochs=max(1, epochs), l1_coeff=0.1)
    _, obvious = train_obvious(x, cfg, 0, device)
    ours, engine = project_sae_epochs(x, cfg, device)
    o, p = min(obvious), min(ours)
    return [
        f"### SAE epoch ({n:,} × {d} activations, h = {h}, batch {batch}, best of {epochs} epochs)",
        "",
        "| trainer | s / epoch | speed-up |",
        "|---|---:|---:|",
        f"| obvious loop (DataLoader + Adam + backward) | {o:.3f} | 1.0× |",
        f"| `train_sae` ({engine} engine) | {p:.3f} | {o / p:.1f}× |",
        "",
    ]


# ----------------------------------------------------------------------------- 2. extraction


def bench_extraction(device: torch.device, n: int, size: int, repeats: int) -> list[str]:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(n, size, size, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n)
    source = ArrayImageSource(images, labels, [str(i) for i in range(10)], size)
    rows = []
    for arch, batch in (("resnet18", 256), ("vit_b_16", 128)):
        extra = {"image_size": size} if arch.startswith("vit") else {}
        model = getattr(torchvision.models, arch)(num_classes=10, **extra).eval().to(device)

        def bare(model=model, batch=batch) -> None:
            with torch.inference_mode():
                for x, _, _ in source.iter_batches(batch):
                    model(x.to(device, non_blocking=True))

        def project(model=model, batch=batch) -> None:
            for _ in iter_activations(model, source, device, batch_size=batch):
                pass

        b, s = timed(bare, device, repeats), timed(project, device, repeats)
        rows.append(f"| {arch} | {batch} | {n / b:.0f} | {n / s:.0f} | {100 * (s / b - 1):+.1f}% |")
        del model
    return [
        f"### Activation extraction ({n} synthetic uint8 images at {size} px, float32, best of {repeats})",
        "",
        "| model | batch | bare forward images/s | `iter_activations` images/s | overhead |",
        "|---|---:|---:|---:|---:|",
        *rows,
        "",
    ]


# ----------------------------------------------------------------------------- 3. saliency


def bench_saliency(device: torch.device, batch: int, size: int, repeats: int) -> list[str]:
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval().to(device)
    encoder = torch.nn.Linear(512, 64).to(device)
    images = torch.randn(batch, 3, size, size, device=device)
    features = list(range(10))
    with torch.no_grad():
        targets = [ClassifierOutputTarget(c) for c in model(images).argmax(1).tolist()]
    fam = timed(lambda: grad_fam(model, encoder, images, features, "layer4"), device, repeats)
    naive = timed(lambda: naive_grad_fam(model, encoder, images, features, "layer4"), device, repeats)
    cam = timed(lambda: run_grad_cam(GradCAM, model, "layer4", images, targets), device, repeats)
    return [
        f"### Saliency (ResNet-18 layer4, batch {batch}, {size} px, 10 features, best of {repeats})",
        "",
        "| method | rate |",
        "|---|---:|",
        f"| Grad-FAM, project (`grad_fam`) | {batch * 10 / fam:.0f} maps/s |",
        f"| Grad-FAM, obvious per-feature loop | {batch * 10 / naive:.0f} maps/s |",
        f"| pytorch-grad-cam GradCAM | {batch / cam:.0f} images/s (one map each) |",
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test on a CPU")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS_gpu.md")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device is visible (torch.cuda.is_available() is False); pass --device cpu")
    if args.quick:
        sizes = dict(sae=(2000, 64, 128, 32, 2), extract=(16, 32, 1), saliency=(4, 64, 1))
    else:
        sizes = dict(sae=(200_000, 768, 3072, 32, 3), extract=(2048, 224, 3), saliency=(32, 224, 5))
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    lines = [
        "# GPU measurements",
        "",
        f"Device: {name} ({device.type}); torch {torch.__version__}, torchvision {torchvision.__version__}.",
        f"Command: `python bench/bench_gpu.py {' '.join(sys.argv[1:])}`",
        "",
    ]
    for section, fn in (("sae", bench_sae), ("extract", bench_extraction), ("saliency", bench_saliency)):
        start = len(lines)
        try:
            lines += fn(device, *sizes[section])
        except Exception as exc:  # record the failure and go on: one GPU run must give every number it can
            lines += [f"### {section}: FAILED", "", f"`{type(exc).__name__}: {exc}`", ""]
        print("\n".join(lines[start:]), flush=True)
    text = "\n".join(lines) + "\n"
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
