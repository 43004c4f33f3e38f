"""Speed of the data layer: Shapes generation, batch loading, JPEG decoding.

Each fast path is timed against the obvious implementation in the same run:

1. ``generate_shapes`` for 3000 images at 64 px (target: < 5 s on one core).
2. Shapes ``load_batch`` (one tensor op on the in-memory array) vs the per-image
   PIL → torchvision ``ToTensor``/``Normalize`` pipeline a ``Dataset`` would usually run.
3. Folder decoding with ``load_image_file`` (JPEG draft mode: the decoder downscales by 2^k)
   vs full decode + torchvision ``Resize``/``CenterCrop`` on Imagenette-sized JPEGs.

Usage: ``.venv/bin/python bench/bench_shapes.py [--threads 1]``; prints a markdown table.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def best_of(fn: Callable[[], object], repeats: int) -> float:
    """Minimum wall time of ``repeats`` runs (the least disturbed by other processes)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--n", type=int, default=3000, help="Shapes images to generate")
    args = parser.parse_args()

    import torch
    from PIL import Image
    from torchvision.transforms import v2

    from core.discover.data import IMAGENET_MEAN, IMAGENET_STD, ArrayImageSource, load_image_file
    from core.discover.shapes import generate_shapes

    torch.set_num_threads(args.threads)
    rows: list[tuple[str, str, str, str]] = []

    # 1. generation
    gen_time = best_of(lambda: generate_shapes(args.n, image_size=64, seed=0), repeats=2)
    cpu_start = time.process_time()  # CPU time: robust when other processes share the cores
    generate_shapes(args.n, image_size=64, seed=0)
    gen_cpu = time.process_time() - cpu_start
    rows.append(
        (
            f"generate_shapes({args.n}, 64 px)",
            f"{gen_time:.2f} s wall, {gen_cpu:.2f} s CPU",
            "target < 5 s",
            f"{args.n / gen_time:.0f} img/s",
        )
    )

    # 2. shapes batches: tensor path vs per-image PIL + torchvision transforms
    data = generate_shapes(1024, image_size=64, seed=1)
    source = ArrayImageSource(data.images, data.labels, data.class_names, 64, data)
    indices = np.arange(1024)
    per_image = v2.Compose(
        [
            v2.PILToTensor(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )

    def obvious_batch() -> torch.Tensor:
        return torch.stack([per_image(Image.fromarray(data.images[i])) for i in indices])

    fast = source.load_batch(indices)
    assert torch.allclose(fast, obvious_batch(), atol=1e-5), "paths disagree"
    t_fast = best_of(lambda: source.load_batch(indices), repeats=5)
    t_slow = best_of(obvious_batch, repeats=3)
    rows.append(
        (
            "shapes load_batch (1024 × 64 px)",
            f"{t_fast * 1e3:.1f} ms",
            f"per-image PIL+v2: {t_slow * 1e3:.1f} ms",
            f"{t_slow / t_fast:.1f}×",
        )
    )

    # 3. JPEG folder decoding: draft mode vs full decode + Resize/CenterCrop
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i in range(48):
            # smooth random image (like a photo, so JPEG sizes are realistic)
            small = rng.integers(0, 256, size=(24, 32, 3), dtype=np.uint8)
            img = Image.fromarray(small).resize((500, 375), Image.Resampling.BICUBIC)
            path = Path(tmp) / f"img{i}.JPEG"
            img.save(path, quality=90)
            paths.append(path)
        reference = v2.Compose([v2.Resize(64, antialias=True), v2.CenterCrop(64), v2.PILToTensor()])

        def obvious_decode() -> list:
            return [reference(Image.open(p).convert("RGB")) for p in paths]

        def draft_decode() -> list:
            return [load_image_file(p, 64) for p in paths]

        diff = np.mean(
            [
                np.abs(a.permute(1, 2, 0).numpy().astype(int) - b.astype(int)).mean()
                for a, b in zip(obvious_decode(), draft_decode(), strict=True)
            ]
        )
        t_draft = best_of(draft_decode, repeats=3)
        t_full = best_of(obvious_decode, repeats=3)
        rows.append(
            (
                "JPEG 500×375 → 64 px (48 files)",
                f"{t_draft * 1e3 / len(paths):.2f} ms/img",
                f"full decode + Resize: {t_full * 1e3 / len(paths):.2f} ms/img",
                f"{t_full / t_draft:.1f}× (mean |Δpixel| {diff:.2f}/255)",
            )
        )

    print(f"threads={args.threads}\n")
    print("| what | fast path | obvious path / target | ratio |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
