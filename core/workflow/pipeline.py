"""The discover pipeline as resumable stages over a session: data → backbone → activations → sae → rankings.

Each stage reads its inputs from the session, computes with the core modules, and commits its
results (and checkpoints along the way) in session transactions. Rerunning a stage marks the
stages after it ``stale``. Data flows one way: config → compute → session.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.config import memory_budget
from core.jobs import CancelToken, JobCancelled, ProgressFn, ProgressReporter, check_cancel
from core.store.session import PIPELINE_STAGES, RowBlocks, Session, SessionError
from core.workflow.readers import (  # noqa: F401 (re-exported: the readers' old home)
    SAE_IMPORT_KEY,
    _load_dataset_cached,
    activations_key,
    load_activations,
    load_classifier_head,
    load_data,
    load_model,
    load_sae,
    load_sae_arrays,
    sae_kind,
    sae_options,
)
from core.workflow.stage_order import (  # noqa: F401 (re-exported)
    _mark_downstream_stale,
    downstream_of,
    effective_states,
    missing_stages,
    stale_if_rerun,
)

COMMIT_INTERVAL_S = 20.0  # streaming stages commit at most this often (resume granularity)
COMMIT_MAX_BYTES = 256 << 20  # ... and at least every this many extracted bytes (see commit_bytes)
COMMIT_MIN_BYTES = 16 << 20

_REQUIRES = {
    "data": (),
    "backbone": ("data",),
    "activations": ("backbone",),
    "sae": ("activations",),
    "rankings": ("sae",),
}



# --------------------------------------------------------------------------- stages


def _check_requirements(session: Session, stage: str) -> None:
    stages = session.stages()
    if stage in ("backbone", "activations") and stages.get("data") is not None \
            and stages["data"].state == "done" and _data_files_changed(session):
        raise SessionError(
            f"the image files changed since the data stage counted them; rescan with "
            f"`salve run {session.name} data` (or `salve run {session.name}`), then rerun '{stage}'"
        )
    missing = missing_stages(stages, _REQUIRES[stage])
    if missing:
        states = effective_states(stages)
        req = next((r for r in _REQUIRES[stage] if r in missing), missing[-1])
        first = missing[0]
        earlier = f" ('{first}' is {states[first]})" if first != req else ""
        raise SessionError(
            f"stage '{stage}' needs '{req}' to be done first (it is {states[req]}); "
            f"run `salve run {session.name} {first}`{earlier}"
        )


def run_data(session: Session, progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> None:
    """Load/generate the dataset, record class names, counts and skipped files."""
    from core.discover.data import files_fingerprint

    config = session.config
    reporter = ProgressReporter("data", 1, progress)
    reporter.report(0, f"loading {config.data.kind}")
    fingerprint = files_fingerprint(config.data)
    _load_dataset_cached.cache_clear()  # rescan: files may have been added or removed since
    bundle = load_data(config)
    info = {
        "kind": config.data.kind,
        "n_train": len(bundle.train),
        "n_test": len(bundle.test),
        "skipped_train": int(getattr(bundle.train, "skipped", 0)),
        "skipped_test": int(getattr(bundle.test, "skipped", 0)),
        "description": getattr(bundle, "description", ""),
        "files_fingerprint": fingerprint,
    }
    stages = session.stages()
    with session.transaction() as tx:
        tx.write_json("class_names", list(bundle.class_names))
        tx.write_array("data/train/labels", np.asarray(bundle.train.labels))
        tx.write_array("data/test/labels", np.asarray(bundle.test.labels))
        concepts = getattr(bundle, "concept_names", None)
        if concepts:
            tx.write_json("concept_names", list(concepts))
        tx.update_json("summary", class_names=list(bundle.class_names), data=info)
        tx.set_stage("data", "done", f"{info['n_train']} train / {info['n_test']} test images", **info)
        _mark_downstream_stale(tx, "data", stages)
    reporter.report(1, "data ready")


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


def run_activations(session: Session, progress: ProgressFn | None = None,
                    cancel: CancelToken | None = None, batch_size: int = 128) -> None:
    """Stream activations/logits/labels of both splits into the session, resumable by row."""
    config = session.config
    bundle = load_data(config)
    check_cancel(cancel)
    model = load_model(session)
    check_cancel(cancel)
    device = next(model.parameters()).device
    stages = session.stages()
    progress_info = session.read_json("activations/progress", {}) or {}
    splits = {"train": bundle.train, "test": bundle.test}
    total = sum(len(s) for s in splits.values())
    resumed = sum(min(int(progress_info.get(split, 0)), len(source)) for split, source in splits.items())
    reporter = ProgressReporter("activations", total, progress, start=resumed)
    done_before = 0
    for split, source in splits.items():
        stream_activations(session, split, model, source, device, batch_size, progress_info, cancel,
                           lambda rows, text, base=done_before: reporter.report(base + rows, text))
        done_before += len(source)
    finish_activations(session, stages)


def commit_bytes(budget: int | None = None) -> int:
    """Extracted bytes after which the activation stage commits a shard, whatever the time.

    Without it a fast model piles up rows between two timed commits (20 s of a cheap backbone
    is gigabytes) and the last commit writes them all after the forward passes are over, so
    nothing overlaps. A sixteenth of the memory budget, clamped to [16 MiB, 256 MiB]: at most
    two such blocks are held (one being written, one filling).
    """
    from core.config import memory_budget

    budget = memory_budget() if budget is None else budget
    return int(min(COMMIT_MAX_BYTES, max(COMMIT_MIN_BYTES, budget // 16)))


def stream_activations(session: Session, split: str, model: Any, source: Any, device: Any, batch_size: int,
                       progress_info: dict[str, int], cancel: CancelToken | None = None,
                       report: Callable[[int, str], None] | None = None,
                       commit_interval_s: float | None = None, max_pending_bytes: int | None = None) -> None:
    """Extract one split's rows from ``progress_info[split]`` on and commit them as row shards.

    A commit (one new shard file plus a small transaction) happens every ``commit_interval_s``
    seconds or every ``max_pending_bytes`` extracted bytes (default :func:`commit_bytes`),
    whichever comes first, so a crash loses at most that much work, memory stays bounded and no
    commit copies earlier rows. ``progress_info`` is updated in place with the committed row count.
    """
    from core.discover.activations import iter_activations

    interval = COMMIT_INTERVAL_S if commit_interval_s is None else commit_interval_s
    max_bytes = commit_bytes() if max_pending_bytes is None else max_pending_bytes
    pending_bytes = 0
    n = len(source)
    start = int(progress_info.get(split, 0))
    if start >= n:
        return
    pending: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []
    last_commit = time.monotonic()

    def commit(rows: list) -> None:
        if not rows:
            return
        first = rows[0][0]
        count = sum(len(r[1]) for r in rows)

        def blocks(i: int, dtype: Any) -> RowBlocks:
            return RowBlocks(tuple(np.asarray(r[i], dtype=dtype) for r in rows))

        with session.transaction() as tx:
            # one new shard file per commit: earlier rows are never rewritten
            tx.append_rows(f"activations/{split}", first, n,
                           {"a": blocks(1, np.float32), "logits": blocks(2, np.float32),
                            "labels": blocks(3, np.int64)})
            progress_info[split] = first + count
            tx.write_json("activations/progress", progress_info)
            tx.set_stage("activations", "partial", f"{split}: {first + count}/{n} rows",
                         rows=dict(progress_info))

    # Commits run on one background thread while extraction goes on (HDF5 writes release the
    # GIL), one at a time and in row order; an error in one surfaces at the next commit or the end.
    from concurrent.futures import Future, ThreadPoolExecutor

    in_flight: Future | None = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="activation-commit") as pool:
        try:
            for row, a, logits, labels in iter_activations(model, source, device, batch_size, start, cancel):
                pending.append((row, a, logits, labels))
                pending_bytes += a.nbytes + logits.nbytes + labels.nbytes
                if report is not None:
                    report(row + len(a), f"{split} {row + len(a)}/{n}")
                if pending_bytes >= max_bytes or time.monotonic() - last_commit > interval:
                    if in_flight is not None:
                        in_flight.result()  # back-pressure: one block written while the next fills
                    in_flight = pool.submit(commit, pending)
                    pending, pending_bytes, last_commit = [], 0, time.monotonic()
        finally:  # a cancel (or any error) still keeps every row extracted so far
            if in_flight is not None:
                in_flight.result()
            commit(pending)


def finish_activations(session: Session, stages: dict) -> None:
    """Mark the activations stage done once every row of both splits is in the session."""
    test = session.read_arrays("activations/test")
    acc = float((test["logits"].argmax(1) == test["labels"]).mean())
    with session.transaction() as tx:
        tx.update_json("summary", activation_dim=int(test["a"].shape[1]), cached_test_accuracy=acc)
        tx.set_stage("activations", "done", f"d={test['a'].shape[1]}, test acc from cache {acc:.3f}")
        tx.delete("activations/progress")
        _mark_downstream_stale(tx, "activations", stages)


def run_sae(session: Session, progress: ProgressFn | None = None, cancel: CancelToken | None = None,
            data_parallel: Any = None, device: Any = None) -> None:
    """Train the SAE on the training activations with checkpoints; resumes from the last one.

    Activations whose in-memory training would exceed the memory budget
    (``core.config.memory_budget``) stream from the session in shuffled row blocks
    (``core.discover.sae_stream``); ``summary.sae.streamed`` records which trainer ran.

    ``data_parallel`` (a ``core.discover.sae_train.DataParallel``): this process is one rank of a
    torch.distributed group; only rank 0 writes (``session`` may be read-only on the others).
    """
    import torch

    from core.device import resolve_device
    from core.discover.sae_train import SAETrainState, train_sae

    writer = data_parallel is None or data_parallel.rank == 0

    # --sae-width auto: pick (h, λ) by the width search first (it writes them into the config)
    if session.config.sae.auto_width and "sae_search" not in session.summary() and data_parallel is None:
        from core.workflow.sae_search_session import run_search

        run_search(session, progress, cancel)
    config = session.config
    stages = session.stages()
    train_key = activations_key(session, "train", "a")
    resume = None
    if session.has("sae/checkpoint/meta"):
        resume = SAETrainState.from_arrays(session.read_arrays("sae/checkpoint/arrays"),
                                           session.read_json("sae/checkpoint/meta"))

    def checkpoint(state: SAETrainState) -> None:
        arrays, meta = state.to_arrays()
        with session.transaction() as tx:
            tx.write_arrays("sae/checkpoint/arrays", arrays)
            tx.write_json("sae/checkpoint/meta", meta)
            tx.set_stage("sae", "partial", f"{state.epoch}/{config.sae.epochs} epochs", epoch=state.epoch)

    from core.discover.sae import fold_scale, normalization_scale
    from core.discover.sae_stream import in_memory_bytes

    device = device or resolve_device(config.device)
    options = {"on_checkpoint": checkpoint if writer else None, "device": device}
    budget = memory_budget()
    n, d = session.array_shape(train_key)
    # over the budget: streamed, by every rank of a data-parallel group too (each reads the same windows)
    streamed = in_memory_bytes(n, d, config.sae.hidden, 1, config.sae.normalize) > budget
    if streamed:  # larger than the budget: shuffled row blocks straight from the session file
        from core.discover.sae_stream import plan_stream, row_moments, train_sae_streamed
        from core.workflow.outofcore import SessionRows

        source = SessionRows(session, train_key)
        plan = plan_stream(n, d, config.sae.hidden, 1, budget)
        ProgressReporter("sae", config.sae.epochs, progress).report(
            0, f"streaming {n:,} × {d} activations from disk in windows of {plan.window_rows:,} rows "
               f"(memory budget {budget / 2**30:.2f} GiB)")
        moments = row_moments(source, plan.block_rows, cancel)
        scale = moments.normalization_scale(d) if config.sae.normalize else 1.0

        def train(resume_from):
            return train_sae_streamed(source, config.sae, progress, cancel, budget_bytes=budget, resume=resume_from,
                                      scale=scale, moments=moments, plan=plan, data_parallel=data_parallel,
                                      **options)
    else:
        activations = torch.from_numpy(session.read_array(train_key))
        scale = normalization_scale(activations) if config.sae.normalize else 1.0
        if config.sae.normalize:
            activations = activations * scale

        def train(resume_from):
            return train_sae(activations, config.sae, progress, cancel, resume=resume_from,
                             data_parallel=data_parallel, **options)
    try:
        result = train(resume)
    except ValueError:
        if resume is None:
            raise
        result = train(None)  # the checkpoint belongs to other activations or SAE settings: start over
    if not writer:
        return
    weights = {name: value[0] for name, value in result.weights.items()}
    if config.sae.normalize:
        weights = fold_scale(weights, scale)  # stored in raw units: decoder users stay exact
    history = {name: value[0] for name, value in result.history.items()}
    final = {_SAE_SUMMARY_NAMES.get(k, k): float(v[-1]) for k, v in history.items() if len(v)}
    with session.transaction() as tx:
        tx.write_arrays("sae/weights", weights)
        tx.write_arrays("sae/history", history)
        tx.delete("sae/checkpoint")  # a rerun starts afresh; partial runs resume from it
        tx.delete(SAE_IMPORT_KEY)  # a trained SAE replaces an imported one
        tx.update_json("summary", sae={"kind": config.sae.kind, "hidden": config.sae.hidden,
                                       "engine": result.engine, "activation_scale": scale,
                                       "streamed": streamed,
                                       "normalized": bool(config.sae.normalize),
                                       "schedule": result.schedule, **final})
        tx.set_stage("sae", "done", f"EV {final.get('explained_variance', float('nan')):.3f}, "
                     f"L0 {final.get('l0', float('nan')):.1f}, dead {final.get('dead', 0):.0f}")
        _mark_downstream_stale(tx, "sae", stages)


_SAE_SUMMARY_NAMES = {"ev": "explained_variance", "top5_share": "top5_l1_share"}


def run_rankings(session: Session, progress: ProgressFn | None = None, cancel: CancelToken | None = None) -> None:
    """Class-mean latents (train split), dominant features, top-activating test samples."""
    from core.discover import rankings

    classes = session.read_json("class_names")
    sae = load_sae(session)
    means = rankings.ClassMeans(len(classes))
    top = rankings.TopActivating(k=TOP_SAMPLES)
    for split, _, u, labels in encoded_chunks(session, sae, ("train", "test"), progress, cancel):
        if split == "train":
            means.add(u, labels)  # class means from the training split
        else:
            top.add(u)  # top-activating samples from the test split
    M, top_samples = means.result(), top.result()
    dominant = rankings.dominant_features(M)
    order = rankings.rank_features(M)
    dominant_list = [int(x) for x in np.asarray(dominant)]
    with session.transaction() as tx:
        tx.write_array("rankings/class_means", np.asarray(M))
        tx.write_array("rankings/order", np.asarray(order))
        tx.write_array("rankings/dominant", np.asarray(dominant_list))
        tx.write_array("rankings/top_pos", np.asarray(top_samples["pos"]))
        tx.write_array("rankings/top_neg", np.asarray(top_samples["neg"]))
        tx.update_json(
            "summary",
            dominant_features={c: d for c, d in zip(classes, dominant_list, strict=True)},
            distinct_dominants=len(set(dominant_list)) == len(dominant_list),
        )
        tx.set_stage("rankings", "done", f"{len(set(dominant_list))} distinct dominant / {len(classes)} classes")
    ProgressReporter("rankings", 1, progress).report(1, "rankings ready")


TOP_SAMPLES = 16  # top-activating test samples stored per feature and sign


def encoded_chunks(
    session: Session, sae: Any, splits: Sequence[str], progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
) -> Iterator[tuple[str, int, Any, np.ndarray]]:
    """``(split, start, u, labels)`` over row chunks of each split's activations, encoded by ``sae``.

    Chunks are sized by the memory budget (``core.config.memory_budget``), so rankings and top
    samples run on activations of any size.
    """
    import torch

    from core.discover.sae import encode
    from core.workflow.outofcore import chunk_rows, iter_row_chunks

    hidden, dim = sae.encoder.weight.shape
    rows = chunk_rows(28 * hidden + 8 * dim)  # u, its float64 copy and a sort's indices, per row
    keys = {split: [activations_key(session, split, "a"), activations_key(session, split, "labels")]
            for split in splits}
    total = sum(session.array_shape(k[0])[0] for k in keys.values())
    reporter = ProgressReporter("rankings", total, progress)
    done = 0
    for split, (a_key, label_key) in keys.items():
        for start, (a, labels) in iter_row_chunks(session, [a_key, label_key], rows):
            check_cancel(cancel)
            u = encode(sae, torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)))
            done += len(a)
            reporter.report(done, f"encoding {split} rows {done:,}/{total:,}")
            yield split, start, u, labels


STAGE_RUNNERS: dict[str, Callable[..., None]] = {
    "data": run_data,
    "backbone": run_backbone,
    "activations": run_activations,
    "sae": run_sae,
    "rankings": run_rankings,
}


@dataclass
class StageOutcome:
    stage: str
    status: str  # done | skipped | cancelled | failed
    message: str = ""


def run_stage(session: Session, stage: str, progress: ProgressFn | None = None,
              cancel: CancelToken | None = None) -> None:
    if stage not in STAGE_RUNNERS:
        raise SessionError(f"unknown stage '{stage}'; stages: {', '.join(STAGE_RUNNERS)}")
    _check_requirements(session, stage)
    stages = session.stages()
    if stale_if_rerun(stages, stage):  # from here on the later stages' inputs are changing
        with session.transaction() as tx:
            _mark_downstream_stale(tx, stage, stages, "is being rerun")
    try:
        STAGE_RUNNERS[stage](session, progress, cancel)
    except JobCancelled:
        raise  # the stage keeps its last committed checkpoint (partial) and resumes from it
    except Exception as exc:
        _record_failure(session, stage, exc)
        raise
    from core.workflow.quality import record_warnings

    record_warnings(session)  # quality gates after every stage (stored in the summary)


def _record_failure(session: Session, stage: str, exc: BaseException) -> None:
    """Persist ``stage`` as failed with the error's message, so it shows until it is rerun."""
    text = (exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)) or type(exc).__name__
    try:
        stages = session.stages()
        with session.transaction() as tx:
            tx.set_stage(stage, "failed", str(text), error_type=type(exc).__name__)
            _mark_downstream_stale(tx, stage, stages, "failed")
    except Exception:  # noqa: BLE001 - e.g. a full disk: the original error is what to report
        pass


def _data_files_changed(session: Session) -> bool:
    """The image folder's files differ from those the data stage counted."""
    from core.discover.data import files_fingerprint

    stored = session.stages()["data"].info.get("files_fingerprint")
    return stored is not None and stored != files_fingerprint(session.config.data)


def run_pipeline(session: Session, stages: Sequence[str] | None = None, progress: ProgressFn | None = None,
                 cancel: CancelToken | None = None, force: bool = False) -> list[StageOutcome]:
    """Run ``stages`` (default: all) in order, skipping those already done unless ``force``."""
    outcomes = []
    for stage in stages or PIPELINE_STAGES:
        if stage == "data" and not force and session.stage_done("data") and _data_files_changed(session):
            run_stage(session, "data", progress, cancel)
            outcomes.append(StageOutcome("data", "done", "image files changed since the last scan; "
                                         "rescanned: " + session.stages()["data"].message))
            continue
        if not force and session.stage_done(stage):
            outcomes.append(StageOutcome(stage, "skipped", "already done"))
            continue
        run_stage(session, stage, progress, cancel)
        outcomes.append(StageOutcome(stage, "done", session.stages()[stage].message))
    return outcomes
