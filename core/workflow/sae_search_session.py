"""The SAE width/λ search on a session (``salve sae search``, ``--sae-width auto``, the TUI's SAE screen).

Each width's batched run is committed to the session as soon as it is trained and scored
(``sae_search/groups/h<width>``, with the search's key), so a cancel or a ``kill -9`` loses at
most the width in progress: a rerun with the same settings and activations resumes from the
widths already done, and anything else starts over. The finished search writes, in one
transaction, the whole table to ``summary.sae_search``, the chosen width and λ into the
session's SAE config, and marks a trained SAE stale; the partial groups are then deleted.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from core.config import memory_budget
from core.discover import sae_search as search
from core.discover.sae_search_score import Shared, score_candidates, shared_inputs
from core.jobs import CancelToken, Progress, ProgressFn, check_cancel
from core.store.session import Session

GROUP_PREFIX = "sae_search/groups"
STAGE = "sae search"


def _key(session: Session, grid: list[search.Candidate], epochs: int, n: int, d: int) -> str:
    cfg = session.config.sae
    text = json.dumps({"grid": [(c.hidden, c.l1_coeff) for c in grid], "epochs": epochs, "n": n, "d": d,
                       "cfg": [cfg.kind, cfg.lr, cfg.batch_size, cfg.epochs, cfg.lr_step_epochs,
                               cfg.lr_gamma, cfg.seed, cfg.normalize],
                       "act": session.stages().get("activations").updated if "activations" in session.stages()
                       else None}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def held_out(session: Session) -> search.HeldOut:
    """Both splits' activations and the classifier head, as tensors."""
    from core.workflow.readers import activations_key, load_classifier_head

    def split(name: str) -> tuple[torch.Tensor, torch.Tensor]:
        a = session.read_array(activations_key(session, name, "a"))
        labels = session.read_array(activations_key(session, name, "labels"))
        return (torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)),
                torch.from_numpy(np.asarray(labels, dtype=np.int64)))

    W, b = load_classifier_head(session)
    (train_a, train_labels), (test_a, test_labels) = split("train"), split("test")
    return search.HeldOut(train_a, train_labels, test_a, test_labels,
                          torch.from_numpy(np.asarray(W, dtype=np.float32)),
                          torch.from_numpy(np.asarray(b, dtype=np.float32)),
                          [str(c) for c in session.read_json("class_names")])


def check_fits(session: Session, grid: list[search.Candidate]) -> None:
    """The search keeps both splits and one width's latents in memory: refuse clearly above the budget."""
    from core.discover.sae_stream import in_memory_bytes
    from core.workflow.readers import activations_key

    n, d = session.array_shape(activations_key(session, "train", "a"))
    n_test = session.array_shape(activations_key(session, "test", "a"))[0]
    per_width = search.groups(grid)
    widest = max(h * len(lams) for h, lams in per_width.items())
    # scoring: the test split, its per-class copy (float32) and float64 copy, one width's latents
    need = in_memory_bytes(n, d, widest, 1, session.config.sae.normalize) + 4 * n_test * (4 * d + widest)
    budget = memory_budget()
    if need > budget:
        raise ValueError(
            f"the SAE width search needs {need / 2**30:.2f} GiB in memory (both activation splits "
            f"and {widest} latents per row) but the memory budget is {budget / 2**30:.2f} GiB: it "
            "does not stream (every candidate is scored on the whole test split). Pick the width "
            "with `salve new … --sae-hidden H` (the SAE stage itself streams), or raise the budget "
            "with SALVE_MEMORY_BUDGET.")


def _group_progress(progress: ProgressFn | None, index: int, count: int, hidden: int) -> ProgressFn | None:
    if progress is None:
        return None

    def report(p: Progress) -> None:
        progress(Progress(STAGE, index * p.total + p.done, count * p.total,
                          f"width {hidden} ({index + 1}/{count}): {p.message}", p.metrics, p.started_at))

    return report


def train_width(train_scaled: torch.Tensor, scale: float, config: Any, hidden: int, lambdas: list[float],
                epochs: int, progress: ProgressFn | None = None,
                cancel: CancelToken | None = None) -> tuple[list[dict[str, np.ndarray]], Any]:
    """One width's λ values as seeds of one batched run (the same initial weights for every λ);
    the SAEs in the activations' units, and the training result."""
    from core.discover.sae import fold_scale
    from core.discover.sae_train import _initial_state, train_sae

    cfg = search.candidate_config(config, hidden, epochs)
    n, d = train_scaled.shape
    start = _initial_state(cfg, [config.seed] * len(lambdas), n, d)
    result = train_sae(train_scaled, cfg, progress, cancel, n_seeds=len(lambdas), resume=start,
                       l1_coeffs=lambdas)
    candidates = []
    for i in range(len(lambdas)):
        weights = {name: value[i] for name, value in result.weights.items()}
        candidates.append(fold_scale(weights, scale) if config.normalize else weights)
    return candidates, result


def _train_and_score(shared: Shared, train_scaled: torch.Tensor, scale: float, config: Any,
                     hidden: int, lambdas: list[float], epochs: int, progress, cancel) -> dict[str, Any]:
    """One width: trained (:func:`train_width`), then its candidates' held-out scores together."""
    t0 = time.perf_counter()
    candidates, result = train_width(train_scaled, scale, config, hidden, lambdas, epochs, progress, cancel)
    train_s = time.perf_counter() - t0
    check_cancel(cancel)
    scores = score_candidates(candidates, shared.data, shared, cancel)
    rows = [{**row, "l1_coeff": lam, "ev_train": float(result.history["ev"][i, -1])}
            for i, (lam, row) in enumerate(zip(lambdas, scores, strict=True))]
    return {"rows": rows, "train_seconds": train_s, "score_seconds": time.perf_counter() - t0 - train_s,
            "engine": result.engine}


def run_search(session: Session, progress: ProgressFn | None = None, cancel: CancelToken | None = None,
               grid: list[search.Candidate] | None = None, apply: bool = True) -> dict[str, Any]:
    """Train, score and choose; record the table (and apply the choice) in ``session``."""
    from core.discover.sae import normalization_scale
    from core.workflow.stage_order import _mark_downstream_stale

    config = session.config.sae
    reference = (session.summary().get("sae_search") or {}).get("reference")
    if reference:  # a rerun searches around the original setting, not around its own earlier choice
        config = replace(config, hidden=int(reference["hidden"]), l1_coeff=float(reference["l1_coeff"]))
    if config.kind != "l1":
        raise ValueError("the width search trains the paper's L1 SAE; this session's SAE kind is "
                         f"'{config.kind}'")
    if not session.stage_done("activations"):
        raise ValueError(f"the width search needs the activations stage done; run `salve run {session.name} "
                         "activations` first")
    data = held_out(session)
    n, d = data.train_a.shape
    grid = grid or search.within_budget(search.default_grid(d, len(data.class_names), config.l1_coeff), config)
    check_fits(session, grid)
    epochs = search.search_epochs(config, grid)
    key = _key(session, grid, epochs, n, d)
    scale = normalization_scale(data.train_a) if config.normalize else 1.0
    train_scaled = data.train_a * scale if config.normalize else data.train_a
    per_width = search.groups(grid)
    shared = None  # built once, when the first width needs scoring
    done: dict[int, dict[str, Any]] = {}
    for index, (hidden, lambdas) in enumerate(per_width.items()):
        stored = session.read_json(f"{GROUP_PREFIX}/h{hidden}")
        if stored and stored.get("key") == key:
            done[hidden] = stored  # resumed: this width was finished by an earlier run
            continue
        check_cancel(cancel)
        shared = shared or shared_inputs(data)
        group = _train_and_score(shared, train_scaled, scale, config, hidden, lambdas, epochs,
                                 _group_progress(progress, index, len(per_width), hidden), cancel)
        with session.transaction() as tx:
            tx.write_json(f"{GROUP_PREFIX}/h{hidden}", {"key": key, **group})
        done[hidden] = group
    record = _record(config, grid, epochs, done)
    with session.transaction() as tx:
        tx.update_json("summary", sae_search=record)
        for hidden in per_width:
            tx.delete(f"{GROUP_PREFIX}/h{hidden}")
        if apply:
            chosen = record["chosen"]
            new = replace(session.config, sae=replace(session.config.sae, hidden=chosen["hidden"],
                                                      l1_coeff=chosen["l1_coeff"]))
            tx.write_json("config", new.to_dict())
            stages = session.stages()
            if "sae" in stages and stages["sae"].state in ("done", "partial"):
                tx.set_stage("sae", "stale", f"width search chose h={chosen['hidden']}, λ={chosen['l1_coeff']:.3g}; "
                             "rerun this stage")
                tx.delete("sae/checkpoint")
                _mark_downstream_stale(tx, "sae", stages, "has new settings")
    return record


def _record(config: Any, grid: list[search.Candidate], epochs: int, done: dict[int, dict[str, Any]]) -> dict[str, Any]:
    rows = [row for hidden in search.groups(grid) for row in done[hidden]["rows"]]
    chosen = search.choose(rows)
    train_s = sum(g["train_seconds"] for g in done.values())
    score_s = sum(g["score_seconds"] for g in done.values())
    units = sum(c.hidden for c in grid) * epochs / (config.hidden * config.epochs)
    return {
        "rule": search.RULE, "epochs": epochs, "epochs_full": config.epochs,
        "reference": {"hidden": config.hidden, "l1_coeff": config.l1_coeff},
        "rows": [{**r, "chosen": i == chosen} for i, r in enumerate(rows)],
        "chosen_index": chosen,
        "chosen": {"hidden": rows[chosen]["hidden"], "l1_coeff": rows[chosen]["l1_coeff"]},
        "cost": {"train_seconds": train_s, "score_seconds": score_s,
                 "work_vs_one_run": units,
                 "note": f"training work Σh·epochs = {units:.2f}× one run at h={config.hidden} for "
                         f"{config.epochs} epochs (budget {search.TRAIN_BUDGET}×); scoring "
                         f"{score_s:.1f} s of {train_s + score_s:.1f} s"},
    }
