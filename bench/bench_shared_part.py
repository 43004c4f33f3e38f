"""Shared-part ("tower") tracking on a Shapes session, three ways, read-only:

* pooled: the latent with the largest |AUROC − 0.5| over both classes' test images pooled (the
  tool's choice before issue 11b), then its within-class AUROCs;
* train-chosen: the latent with the best worse-class AUROC on the *train* split, scored within
  each class on the test split (what `salve groundtruth` reports now);
* raw: the same worse-class choice over the backbone's own d activation dimensions (does the
  backbone carry the part at all?).

    .venv/bin/python bench/bench_shared_part.py SESSION [SESSION ...]
    .venv/bin/python bench/bench_shared_part.py --build-seeds 0,1,2   # demo config, seed s each

``--build-seeds`` builds the demo's data → rankings stages with ``seed`` (backbone init, data order,
SAE init) set to each value into ``--folder`` (resumable), a proxy for "another machine": a far
larger perturbation than float details.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.store.session import Session  # noqa: E402
from core.validate.groundtruth import (  # noqa: E402
    best_shared_part_latent,
    shared_part_tracking,
)
from core.workflow.pipeline import load_activations, load_data, load_sae  # noqa: E402


def measure(session: Session) -> dict[str, object]:
    from core.discover.sae import encode
    from core.discover.shapes import SHARED_PART, SHARED_PART_CLASSES

    bundle = load_data(session.config)
    sae = load_sae(session)
    classes = list(bundle.class_names)
    part = list(bundle.test.concept_names).index(SHARED_PART)
    pair = (classes.index(SHARED_PART_CLASSES[0]), classes.index(SHARED_PART_CLASSES[1]))
    split = {}
    for name in ("train", "test"):
        cached = load_activations(session, name)
        a = np.asarray(cached["a"], dtype=np.float64)
        with torch.no_grad():
            u = encode(sae, torch.as_tensor(a, dtype=torch.float32)).numpy().astype(np.float64)
        source = getattr(bundle, name)
        split[name] = (u, a, np.asarray(source.concept_present), np.asarray(source.labels))

    def rounded(values: tuple[float, float]) -> dict[str, float]:
        return {c: round(v, 3) for c, v in zip(SHARED_PART_CLASSES, values, strict=True)}

    u, a, presence, labels = split["test"]
    pooled_auroc = np.abs(np.asarray([
        shared_part_tracking(u, presence, labels, part, pair, latent=k).auroc_overall
        for k in range(u.shape[1])]) - 0.5)
    pooled = shared_part_tracking(u, presence, labels, part, pair, latent=int(np.argmax(pooled_auroc)))
    k, sign = best_shared_part_latent(split["train"][0], split["train"][2], split["train"][3], part, pair)
    chosen = shared_part_tracking(u, presence, labels, part, pair, latent=k, sign=sign)
    j, raw_sign = best_shared_part_latent(split["train"][1], split["train"][2], split["train"][3],
                                          part, pair)
    raw = shared_part_tracking(a, presence, labels, part, pair, latent=j, sign=raw_sign)
    return {
        "test_accuracy": session.summary().get("backbone", {}).get("test_accuracy"),
        "pooled": {"latent": pooled.latent, "auroc_per_class": rounded(pooled.auroc_per_class)},
        "train_chosen": {"latent": chosen.latent, "sign": chosen.sign,
                         "auroc_per_class": rounded(chosen.auroc_per_class),
                         "tracks_both": chosen.tracks_both},
        "raw_dimension": {"dim": raw.latent, "auroc_per_class": rounded(raw.auroc_per_class)},
    }


def build(seed: int, folder: Path) -> Path:
    from core.config import demo_config
    from core.workflow.pipeline import run_pipeline

    config = demo_config(f"seed{seed}")
    config.seed = config.sae.seed = seed
    path = folder / f"seed{seed}.h5"
    session = Session.open(path) if path.exists() else Session.create(path, config)
    with session:
        run_pipeline(session, ["data", "backbone", "activations", "sae", "rankings"])
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sessions", nargs="*", type=Path)
    parser.add_argument("--build-seeds", default="")
    parser.add_argument("--folder", type=Path, default=Path("/tmp/salve-shared-part"))
    args = parser.parse_args()
    paths = list(args.sessions)
    if args.build_seeds:
        args.folder.mkdir(parents=True, exist_ok=True)
        for seed in (int(s) for s in args.build_seeds.split(",")):
            started = time.monotonic()
            paths.append(build(seed, args.folder))
            print(f"built seed {seed} in {time.monotonic() - started:.0f} s", file=sys.stderr)
    for path in paths:
        with Session.open(path, read_only=True) as session:
            print(json.dumps({"session": str(path), **measure(session)}), flush=True)


if __name__ == "__main__":
    main()
