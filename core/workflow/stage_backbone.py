"""The backbone stage: build the classifier, train or fine-tune it with resumable checkpoints,
store its weights (``core.workflow.pipeline`` runs the stages in order)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from core.jobs import CancelToken, ProgressFn, ProgressReporter, check_cancel
from core.store.session import Session
from core.workflow.readers import load_data
from core.workflow.stage_order import _mark_downstream_stale


def backbone_checkpoint_path(session: Session) -> Path:
    """Backbone training checkpoints live beside the session file, not inside it.

    Weights plus Adam moments are ~3× the model size and rewritten every epoch; keeping them out
    of the HDF5 file keeps every session transaction cheap. The file is replaced atomically and
    removed when training completes.
    """
    return session.path.with_name(f"{session.path.stem}.checkpoints") / "backbone.pt"


def _write_backbone_checkpoint(path: Path, state, session_id: str) -> None:
    """Write the checkpoint atomically, stamped with the id of the session it belongs to."""
    import torch

    from core.atomic import atomic_write

    history = torch.tensor([[h["epoch"], h["loss"], h["test_acc"]] for h in state.history], dtype=torch.float64)
    tensors = {"meta.epoch": torch.tensor(state.epoch), "meta.history": history.reshape(-1, 3),
               "meta.session_id": torch.tensor(list(session_id.encode()), dtype=torch.uint8)}
    tensors.update({f"model.{k}": torch.from_numpy(np.asarray(v)) for k, v in state.model.items()})
    tensors.update({f"optimizer.{k}": torch.from_numpy(np.asarray(v)) for k, v in state.optimizer.items()})
    with atomic_write(path, overwrite=True) as f:
        torch.save(tensors, f)


def _read_backbone_checkpoint(path: Path, session_id: str, note: Callable[[str], None] | None = None):
    """The last completed epoch's state, or None; a damaged file is ignored (training restarts),
    and so is one left by another session of the same name (deleted and recreated)."""
    import torch

    from core.discover.backbone import TrainState

    if not path.is_file():
        return None
    try:
        tensors = torch.load(path, map_location="cpu", weights_only=True)
        owner = bytes(tensors["meta.session_id"].tolist()).decode() if "meta.session_id" in tensors else None
        if owner != session_id:
            if note is not None:
                note(f"ignored {path}: it belongs to another session of the same name; training starts afresh")
            return None
        history = [{"epoch": int(e), "loss": float(loss), "test_acc": float(acc)}
                   for e, loss, acc in tensors["meta.history"].tolist()]
        return TrainState(
            int(tensors["meta.epoch"]),
            {k[6:]: v.numpy() for k, v in tensors.items() if k.startswith("model.")},
            {k[10:]: v.numpy() for k, v in tensors.items() if k.startswith("optimizer.")},
            history,
        )
    except Exception:
        return None


def _checkpoint_fits(model, arrays: dict[str, np.ndarray]) -> bool:
    """Same parameter names and shapes as ``model``: resuming from it cannot fail half-way."""
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    return expected == {k: tuple(np.shape(v)) for k, v in arrays.items()}


def run_backbone(session: Session, progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> None:
    """Build the classifier and train/fine-tune it, committing a checkpoint after each epoch."""
    from core.device import resolve_device
    from core.discover.backbone import (
        TrainState,
        build_model,
        evaluate,
        final_linear,
        state_to_numpy,
        train_backbone,
    )

    config = session.config
    bundle = load_data(config)
    check_cancel(cancel)  # loading and building take seconds under load: cancel is looked at between
    device = resolve_device(config.device)
    model = build_model(config.backbone.arch, len(bundle.class_names), config.backbone.weights,
                        config.data.image_size, config.seed,
                        allow_new_head=config.backbone.train and config.backbone.epochs > 0)
    check_cancel(cancel)
    stages = session.stages()
    checkpoint_file = backbone_checkpoint_path(session)
    session_id = session.session_id
    notice = ProgressReporter("backbone", 1, progress)
    resume = _read_backbone_checkpoint(checkpoint_file, session_id, lambda m: notice.report(0, m))
    if resume is not None and not _checkpoint_fits(model, resume.model):
        notice.report(0, f"ignored {checkpoint_file}: it does not fit this model; training starts afresh")
        resume = None

    def checkpoint(state: TrainState) -> None:
        _write_backbone_checkpoint(checkpoint_file, state, session_id)
        with session.transaction() as tx:
            tx.set_stage("backbone", "partial", f"{state.epoch}/{config.backbone.epochs} epochs",
                         epoch=state.epoch, history=state.history, checkpoint=str(checkpoint_file))

    if config.backbone.train and config.backbone.epochs > 0:
        state = train_backbone(model, bundle.train, bundle.test, config.backbone, device, progress, cancel,
                               resume, checkpoint, seed=config.seed)
        history = state.history
        test_acc = history[-1]["test_acc"] if history else evaluate(model, bundle.test, device, cancel=cancel)
    else:
        reporter = ProgressReporter("backbone", 1, progress)
        reporter.report(0, "evaluating")
        test_acc = evaluate(model.to(device), bundle.test, device, cancel=cancel)
        history = []
        reporter.report(1, f"test acc {test_acc:.3f}")
    _, _, head = final_linear(model)
    head_name = next(name for name, module in model.named_modules() if module is head)
    with session.transaction() as tx:
        tx.write_arrays("backbone/state_dict", state_to_numpy(model))
        tx.write_json("backbone/head", head_name)
        tx.update_json("summary", backbone={"arch": config.backbone.arch, "test_accuracy": test_acc,
                                            "epochs": len(history), "history": history})
        tx.set_stage("backbone", "done", f"test accuracy {test_acc:.3f}", test_accuracy=test_acc)
        _mark_downstream_stale(tx, "backbone", stages)
    checkpoint_file.unlink(missing_ok=True)
