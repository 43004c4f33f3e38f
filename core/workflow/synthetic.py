"""A complete session from known arrays, at scales the pipeline cannot reach on a CPU.

Benchmarks and tests of out-of-core compute and of 1,000-class sessions need ImageNet-sized
sessions (1M × 768 activations, C = 1000, h = 16k) without a backbone to train. Class ``c``'s
activations point along SAE decoder column ``owner(c)`` plus noise, and the classifier row of
``c`` is that column, so rankings, sweeps and α_crit are all well defined. Arrays are written
in row blocks through the Session API, so building never holds a whole array in memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.config import SessionConfig, demo_config
from core.store.session import Session

BLOCK_ROWS = 65_536


@dataclass(frozen=True)
class SyntheticSpec:
    """Sizes of a synthetic session: classes, activation dim, SAE latents, rows per split."""

    n_classes: int = 10
    dim: int = 32
    hidden: int = 64
    n_train: int = 600
    n_test: int = 300
    signal: float = 3.0  # length of the class direction in each activation
    noise: float = 0.4  # per-coordinate Gaussian noise
    seed: int = 0

    def owners(self) -> np.ndarray:
        """Each class's planted feature: distinct while C ≤ h, spread over the latents."""
        return (np.arange(self.n_classes) * max(1, self.hidden // self.n_classes) + 1) % self.hidden


def synthetic_model(spec: SyntheticSpec) -> dict[str, np.ndarray]:
    """Decoder ``D`` (d × h, unit columns), head ``W`` (C × d), ``b`` (C,)."""
    rng = np.random.default_rng(spec.seed)
    D = rng.standard_normal((spec.dim, spec.hidden))
    D /= np.linalg.norm(D, axis=0, keepdims=True)
    W = D[:, spec.owners()].T + 0.05 * rng.standard_normal((spec.n_classes, spec.dim))
    return {"D": D.astype(np.float32), "W": W.astype(np.float32), "b": np.zeros(spec.n_classes, np.float32)}


def synthetic_rows(spec: SyntheticSpec, D: np.ndarray, start: int, stop: int, split_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Activations and labels of rows ``[start, stop)`` of a split (labels cycle through classes)."""
    rng = np.random.default_rng([spec.seed, split_seed, start])
    labels = np.arange(start, stop) % spec.n_classes
    a = spec.signal * D[:, spec.owners()[labels]].T
    a += spec.noise * rng.standard_normal(a.shape, dtype=np.float32)
    return a.astype(np.float32), labels.astype(np.int64)


def build_synthetic_session(path: str | Path, spec: SyntheticSpec, config: SessionConfig | None = None,
                            with_sae: bool = True) -> Path:
    """Write a session whose data, backbone, activations (and SAE: ``u = Dᵀa``) stages are done.

    Rankings are left to the real rankings stage (``core.workflow.pipeline.run_rankings``).
    """
    path = Path(path)
    config = config or demo_config(path.stem)
    config.sae.hidden = spec.hidden
    model = synthetic_model(spec)
    D, W, b = model["D"], model["W"], model["b"]
    names = [f"class{c:04d}" for c in range(spec.n_classes)]
    with Session.create(path, config, overwrite=True) as session, session.transaction() as tx:
        tx.write_json("class_names", names)
        tx.write_json("backbone/head", "fc")
        tx.write_arrays("backbone/state_dict", {"fc.weight": W, "fc.bias": b})
        for split, n, split_seed in (("train", spec.n_train, 1), ("test", spec.n_test, 2)):
            for start in range(0, n, BLOCK_ROWS):  # one row shard per block, as the activation stage writes
                stop = min(start + BLOCK_ROWS, n)
                a, labels = synthetic_rows(spec, D, start, stop, split_seed)
                tx.append_rows(f"activations/{split}", start, n,
                               {"a": a, "logits": (a @ W.T + b).astype(np.float32), "labels": labels})
        tx.update_json("summary", class_names=names, activation_dim=spec.dim)
        stages = ["data", "backbone", "activations"]
        if with_sae:
            tx.write_arrays("sae/weights", {
                "encoder.weight": D.T.copy(), "encoder.bias": np.zeros(spec.hidden, np.float32),
                "decoder.weight": D, "decoder.bias": np.zeros(spec.dim, np.float32)})
            stages.append("sae")
        for stage in stages:
            tx.set_stage(stage, "done", "synthetic")
    return path
