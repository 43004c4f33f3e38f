"""The discover pipeline as resumable stages over a session: data → backbone → activations → sae → rankings.

Each stage reads its inputs from the session, computes with the core modules, and commits its
results (and checkpoints along the way) in session transactions. Rerunning a stage marks the
stages after it ``stale``. Data flows one way: config → compute → session. The data and
rankings stages live here; the backbone, activations and SAE stages in ``stage_backbone``,
``stage_activations`` and ``stage_sae``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from core.jobs import CancelToken, JobCancelled, ProgressFn, ProgressReporter, check_cancel
from core.store.session import PIPELINE_STAGES, Session, SessionError
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
from core.workflow.stage_activations import run_activations
from core.workflow.stage_backbone import run_backbone
from core.workflow.stage_order import (  # noqa: F401 (re-exported)
    _mark_downstream_stale,
    downstream_of,
    effective_states,
    missing_stages,
    stale_if_rerun,
)
from core.workflow.stage_sae import run_sae

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
