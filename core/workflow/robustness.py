"""Session SAE-seed robustness: train K extra SAEs, mean ± std suppression curves per class.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from core.control.curves import DEFAULT_N_ALPHAS
from core.control.robustness import RobustnessResult, seed_robustness
from core.jobs import CancelToken, ProgressFn, ProgressReporter, check_cancel
from core.jsonsafe import json_safe
from core.store.session import Session
from core.workflow.inputs import check_writable, load_inputs, setting_key
from core.workflow.results import ROBUSTNESS, NewResult


def run_seed_robustness(
    session: Session,
    k: int = 5,
    target_class: int | Sequence[int] | None = None,
    mode: str = "suppress",
    modulation: str = "linear",
    alphas: torch.Tensor | Sequence[float] | None = None,
    n_alphas: int = DEFAULT_N_ALPHAS,
    epochs: int | None = None,
    device: str | torch.device | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
    record: bool = True,
    split: str = "test",
) -> list[RobustnessResult]:
    """Train ``k`` SAEs (seeds ``sae.seed … sae.seed + k − 1``) in one batched job on the train
    activations with the session's SAE settings, re-identify each seed's dominant feature from
    its own train-split class means, and report the ``split`` suppression curves as mean ± std.

    ``epochs`` overrides the SAE epochs (quick looks); the session's own SAE is untouched.
    """
    if k < 1:
        raise ValueError(f"the number of seeds must be ≥ 1, got {k}")
    check_writable(session, record)
    x = load_inputs(session, split)
    sae_config = session.config.sae if epochs is None else replace(
        session.config.sae, epochs=int(epochs),
        lr_step_epochs=min(session.config.sae.lr_step_epochs, int(epochs)))
    result, decoders, means = _train_seeds(session, x.num_classes, sae_config, k, device, progress, cancel)
    if target_class is None:
        classes = sorted(int(c) for c in x.labels.unique().tolist())
    elif isinstance(target_class, int):
        classes = [target_class]
    else:
        classes = [int(c) for c in target_class]
    reporter = ProgressReporter("seed robustness", len(classes), progress)
    results = []
    for i, c in enumerate(classes):
        check_cancel(cancel)
        results.append(
            seed_robustness(
                x.A, x.labels, x.W, x.b, decoders, means, c, alphas, mode, modulation, n_alphas
            )
        )
        reporter.report(i + 1, f"class {x.class_names[c]}")
    if record:
        meta = _meta(result, results, k, sae_config.epochs, mode, modulation, split)
        save_robustness(session, results, result.weights, meta, x.computed_from)
    return results


def _meta(trained: Any, results: Sequence[RobustnessResult], k: int, epochs: int, mode: str,
          modulation: str, split: str) -> dict[str, Any]:
    """What is stored beside the curves: the seeds, their final EV and each class's features."""
    ev = trained.history.get("ev")
    final_ev = [float(v[-1]) for v in ev] if ev is not None and ev.shape[1] else []
    return {
        "n_seeds": k,
        "seeds": list(trained.seeds),
        "epochs": epochs,
        "mode": mode,
        "modulation": modulation,
        "split": split,
        "final_explained_variance": final_ev,
        "classes": {str(r.target_class): r.features_per_seed for r in results},
    }


def _train_seeds(session: Session, num_classes: int, sae_config: Any, k: int,
                 device: str | torch.device | None, progress: ProgressFn | None,
                 cancel: CancelToken | None) -> tuple[Any, list[torch.Tensor], list[torch.Tensor]]:
    """Train ``k`` seeds of the SAE in one batched job on the train activations; return the
    training result, each seed's decoder and its train-split class means (a class without
    training samples gets a zero row, so it loses every argmax)."""
    from core.device import resolve_device
    from core.discover.rankings import class_means
    from core.discover.sae import encode, sae_from_arrays
    from core.discover.sae_train import train_sae
    from core.workflow.pipeline import load_activations

    train = load_activations(session, "train")
    result = train_sae(
        torch.from_numpy(np.asarray(train["a"], dtype=np.float32)),
        sae_config,
        progress,
        cancel,
        n_seeds=k,
        device=resolve_device(device or session.config.device),
    )
    train_labels = torch.from_numpy(np.asarray(train["labels"], dtype=np.int64))
    decoders, means = [], []
    for i in range(k):
        sae = sae_from_arrays(result.weights, i, kind=sae_config.kind, k=sae_config.k)
        u = encode(sae, train["a"]).cpu()
        means.append(torch.from_numpy(class_means(u, train_labels, num_classes)))
        decoders.append(torch.from_numpy(np.asarray(result.weights["decoder.weight"][i])))
    # A class without training samples has a NaN mean row: make it lose every argmax.
    return result, decoders, [torch.nan_to_num(M, nan=0.0) for M in means]


def save_robustness(
    session: Session,
    results: Sequence[RobustnessResult],
    sae_weights: dict[str, np.ndarray] | None,
    meta: dict[str, Any],
    computed_from: Mapping[str, float] | None = None,
) -> None:
    """Store one setting's curves (replacing its earlier ones) and the seeds' SAE weights;
    ``computed_from``: the stage runs they read (default the session's current ones)."""
    from core.workflow.provenance import stage_runs

    check_writable(session, True)
    setting = setting_key(meta["mode"], meta["modulation"])
    stored = ROBUSTNESS.load(session)
    computed_from = stage_runs(session) if computed_from is None else computed_from
    curves = {f"c{r.target_class}": {
        "alphas": r.alphas.double().numpy(),
        "accuracy_mean": r.accuracy_mean.double().numpy(),
        "accuracy_std": r.accuracy_std.double().numpy(),
        "target_prediction_mean": r.target_prediction_mean.double().numpy(),
        "target_prediction_std": r.target_prediction_std.double().numpy(),
        "features_per_seed": np.asarray(r.features_per_seed, dtype=np.int64),
    } for r in results}
    with session.transaction() as tx:
        stored = ROBUSTNESS.save(tx, stored, [NewResult(setting, meta, curves, replace=True)], computed_from)
        if sae_weights is not None:
            tx.write_arrays("control/robustness_sae", sae_weights)
        tx.update_json(
            "summary",
            robustness={s: {"n_seeds": m["n_seeds"], "epochs": m["epochs"]} for s, m in stored.items()},
        )

def load_robustness(
    session: Session, mode: str = "suppress", modulation: str = "linear"
) -> dict[int, dict[str, Any]]:
    """Stored mean ± std curves of one setting: class → arrays (as tensors) + seed count."""
    setting = setting_key(mode, modulation)
    meta = ROBUSTNESS.load(session).get(setting)
    if meta is None:
        raise KeyError(
            f"session {session.name} has no {setting} robustness results; run "
            f"`salve robustness {session.name}` first"
        )
    out = {}
    for c in meta["classes"]:
        arrays = ROBUSTNESS.read_arrays(session, setting, f"c{c}")
        out[int(c)] = {name: torch.from_numpy(v) for name, v in arrays.items()}
        out[int(c)]["n_seeds"] = meta["n_seeds"]
    return out

def robustness_to_json(results: Sequence[RobustnessResult], class_names: Sequence[str]) -> dict:
    """JSON view: the shared α grid per class, mean ± std of target and other-class accuracy."""
    out = []
    for r in results:
        c = r.target_class
        counts = r.sweeps[0].class_counts
        others = [j for j, n in enumerate(counts) if n > 0 and j != c]
        others_per_seed = torch.stack([s.per_class_accuracy[others].mean(0) for s in r.sweeps])
        out.append(
            {
                "class": c,
                "class_name": class_names[c],
                "features_per_seed": r.features_per_seed,
                "alphas": r.alphas.tolist(),
                "target_accuracy_mean": json_safe(r.accuracy_mean[c].tolist()),
                "target_accuracy_std": json_safe(r.accuracy_std[c].tolist()),
                "others_accuracy_mean": json_safe(others_per_seed.mean(0).tolist()),
                "others_accuracy_std": json_safe(
                    (others_per_seed.std(0) if len(r.sweeps) > 1
                     else torch.zeros_like(others_per_seed[0])).tolist()
                ),
            }
        )
    return {"n_seeds": results[0].n_seeds if results else 0, "classes": out}
