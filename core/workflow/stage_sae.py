"""The SAE stage: train the sparse autoencoder on the training activations (in memory, or
streamed from the session file when over the memory budget), with resumable checkpoints."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from core.config import memory_budget
from core.jobs import CancelToken, ProgressFn, ProgressReporter
from core.store.session import Session
from core.workflow.readers import SAE_IMPORT_KEY, activations_key
from core.workflow.stage_order import _mark_downstream_stale


def run_sae(session: Session, progress: ProgressFn | None = None, cancel: CancelToken | None = None,
            data_parallel: Any = None, device: Any = None) -> None:
    """Train the SAE on the training activations with checkpoints; resumes from the last one.

    Activations whose in-memory training would exceed the memory budget
    (``core.config.memory_budget``) stream from the session in shuffled row blocks
    (``core.discover.sae_stream``); ``summary.sae.streamed`` records which trainer ran.

    ``data_parallel`` (a ``core.discover.sae_train.DataParallel``): this process is one rank of a
    torch.distributed group; only rank 0 writes (``session`` may be read-only on the others).
    """
    from core.device import resolve_device
    from core.discover.sae_train import SAETrainState

    writer = data_parallel is None or data_parallel.rank == 0
    # --sae-width auto: pick (h, λ) by the width search first (it writes them into the config)
    if session.config.sae.auto_width and "sae_search" not in session.summary() and data_parallel is None:
        from core.workflow.sae_search_session import run_search

        run_search(session, progress, cancel)
    stages = session.stages()
    resume = None
    if session.has("sae/checkpoint/meta"):
        resume = SAETrainState.from_arrays(session.read_arrays("sae/checkpoint/arrays"),
                                           session.read_json("sae/checkpoint/meta"))
    options = {"on_checkpoint": partial(_checkpoint, session) if writer else None,
               "device": device or resolve_device(session.config.device),
               "progress": progress, "cancel": cancel, "data_parallel": data_parallel}
    train, scale, streamed = _trainer(session, options)
    try:
        result = train(resume)
    except ValueError:
        if resume is None:
            raise
        result = train(None)  # the checkpoint belongs to other activations or SAE settings: start over
    if writer:
        _record_sae(session, result, scale, streamed, stages)


def _checkpoint(session: Session, state: Any) -> None:
    """Commit a training checkpoint (an ``SAETrainState``): the stage is partial until done."""
    arrays, meta = state.to_arrays()
    with session.transaction() as tx:
        tx.write_arrays("sae/checkpoint/arrays", arrays)
        tx.write_json("sae/checkpoint/meta", meta)
        tx.set_stage("sae", "partial", f"{state.epoch}/{session.config.sae.epochs} epochs", epoch=state.epoch)


def _trainer(session: Session, options: dict[str, Any]) -> tuple[Callable[[Any], Any], float, bool]:
    """``(train(resume), activation scale, streamed)``: in memory when the training fits the
    memory budget, else shuffled row blocks straight from the session file (by every rank of a
    data-parallel group too: each reads the same windows)."""
    import torch

    from core.discover.sae import normalization_scale
    from core.discover.sae_stream import in_memory_bytes
    from core.discover.sae_train import train_sae

    config = session.config.sae
    train_key = activations_key(session, "train", "a")
    budget = memory_budget()
    n, d = session.array_shape(train_key)
    if in_memory_bytes(n, d, config.hidden, 1, config.normalize) <= budget:
        activations = torch.from_numpy(session.read_array(train_key))
        scale = normalization_scale(activations) if config.normalize else 1.0
        if config.normalize:
            activations = activations * scale
        return (lambda resume: train_sae(activations, config, resume=resume, **options)), scale, False
    from core.discover.sae_stream import plan_stream, row_moments, train_sae_streamed
    from core.workflow.outofcore import SessionRows

    source = SessionRows(session, train_key)
    plan = plan_stream(n, d, config.hidden, 1, budget)
    ProgressReporter("sae", config.epochs, options["progress"]).report(
        0, f"streaming {n:,} × {d} activations from disk in windows of {plan.window_rows:,} rows "
           f"(memory budget {budget / 2**30:.2f} GiB)")
    moments = row_moments(source, plan.block_rows, options["cancel"])
    scale = moments.normalization_scale(d) if config.normalize else 1.0
    return (lambda resume: train_sae_streamed(source, config, budget_bytes=budget, resume=resume, scale=scale,
                                              moments=moments, plan=plan, **options)), scale, True


def _record_sae(session: Session, result: Any, scale: float, streamed: bool, stages: dict[str, Any]) -> None:
    """Store the trained weights (in raw activation units), history and summary; the stage is done."""
    from core.discover.sae import fold_scale

    config = session.config.sae
    weights = {name: value[0] for name, value in result.weights.items()}
    if config.normalize:
        weights = fold_scale(weights, scale)  # stored in raw units: decoder users stay exact
    history = {name: value[0] for name, value in result.history.items()}
    final = {_SAE_SUMMARY_NAMES.get(k, k): float(v[-1]) for k, v in history.items() if len(v)}
    with session.transaction() as tx:
        tx.write_arrays("sae/weights", weights)
        tx.write_arrays("sae/history", history)
        tx.delete("sae/checkpoint")  # a rerun starts afresh; partial runs resume from it
        tx.delete(SAE_IMPORT_KEY)  # a trained SAE replaces an imported one
        tx.update_json("summary", sae={"kind": config.kind, "hidden": config.hidden,
                                       "engine": result.engine, "activation_scale": scale,
                                       "streamed": streamed,
                                       "normalized": bool(config.normalize),
                                       "schedule": result.schedule, **final})
        tx.set_stage("sae", "done", f"EV {final.get('explained_variance', float('nan')):.3f}, "
                     f"L0 {final.get('l0', float('nan')):.1f}, dead {final.get('dead', 0):.0f}")
        _mark_downstream_stale(tx, "sae", stages)


_SAE_SUMMARY_NAMES = {"ev": "explained_variance", "top5_share": "top5_l1_share"}
