"""Ground truth on Shapes sessions (SPEC §6): pointing game, concept AUROC, shared-part tracking.

Stored as ``json/groundtruth/results`` (everything), ``groundtruth/auroc`` (the latent × concept
AUROC table) and a compact ``groundtruth`` entry of the session summary (``salve info --json``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from core.jobs import CancelToken, ProgressFn
from core.jsonsafe import json_safe
from core.store.session import Session, SessionError
from core.workflow.assets import MODEL_LOCK, load_assets
from core.workflow.results import GROUNDTRUTH, NewResult


def require_shapes(session: Session, source: Any = None) -> None:
    """Ground truth exists only for the embedded Shapes data; say so before loading anything."""
    kind = session.config.data.kind
    if kind != "shapes" or (source is not None and getattr(source, "concept_present", None) is None):
        raise ValueError(
            f"session {session.name} uses '{kind}' data, which has no ground-truth concept masks; "
            "ground-truth scores exist only for the embedded Shapes dataset (create such a "
            "session with `salve demo` or `salve new NAME --data shapes`)"
        )

@dataclass
class _Inputs:
    """What ground truth reads from the session: the assets, the test split's labels and
    concept presence, and the (seeded) subset of test images it scores."""

    assets: Any
    names: list[str]
    concepts: list[str]
    labels_all: np.ndarray
    presence_all: np.ndarray
    subset: np.ndarray
    computed_from: Any

    @property
    def source(self) -> Any:
        return self.assets.test

    @property
    def labels(self) -> np.ndarray:
        return self.labels_all[self.subset]

    @property
    def presence(self) -> np.ndarray:
        return self.presence_all[self.subset]


def run_groundtruth(
    session: Session,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
    *,
    layer: str | None = None,
    max_samples: int | None = None,
    record: bool = True,
    batch_size: int = 64,
    budget: int | None = None,
) -> dict[str, Any]:
    """Score the SAE features against Shapes' ground truth (SPEC §8), on the test split.

    * per concept: the latent whose value best separates images with and without it (AUROC of
      latent vs presence, sign-free ``strength = max(AUROC, 1 − AUROC)``);
    * per class: Grad-FAM of its dominant feature and Grad-CAM of the true class at ``layer``
      (default per SPEC §6), pointing game (with its chance rate) and energy inside the mask of
      the class's shape;
    * shared part: whether one latent tracks the tower within each of its two classes (the
      latent with the best worse-class AUROC, chosen on the train split and scored on the test
      images, so the reported AUROCs carry no selection bias).

    ``max_samples`` scores a seeded random subset of the test split (all images by default).
    With ``record`` the result is committed to the session; returns the JSON-safe result.
    ``budget``: bytes the latents may take (default ``core.config.memory_budget``); past it the
    AUROCs run on blocks of latent columns, each re-encoding the split in row chunks (the
    same numbers bit for bit, one encoding pass per block).
    """
    from core.validate.groundtruth import concept_matches
    from core.workflow.outofcore import LatentColumns, latent_aurocs
    from core.workflow.pipeline import activations_key

    inputs = _load_inputs(session, max_samples, record)
    # Latents in column blocks under the memory budget (all at once when they fit).
    latents = LatentColumns(session, inputs.assets.sae, activations_key(session, "test", "a"), inputs.subset,
                            budget, cancel)
    # 1. Best latent per concept.
    table = latent_aurocs(latents, inputs.presence)  # (h, n_concepts)
    # 2. Localisation of each class's dominant feature vs Grad-CAM of the true class.
    dominant = [int(k) for k in session.read_array("rankings/dominant")]
    means = np.asarray(session.read_array("rankings/class_means"), dtype=np.float64)
    class_concept = _class_concepts(inputs.names, inputs.concepts)
    scored, chosen_layer, localisation = _localise(inputs, dominant, class_concept, layer, batch_size,
                                                   progress, cancel)
    fam, cam = localisation["grad_fam"], localisation["grad_cam"]
    result = json_safe({
        "layer": chosen_layer, "n_images": int(len(inputs.subset)), "n_scored": int(len(scored)),
        "split": "test",
        "pointing_game": {"grad_fam": {**fam.overall, "method": fam.method},
                          "grad_cam": {**cam.overall, "method": cam.method}},
        "concepts": {m.name: {"latent": m.latent, "auroc": m.auroc, "sign": m.sign, "strength": m.strength}
                     for m in concept_matches(table, inputs.concepts)},
        "classes": _per_class(inputs, dominant, means, table, class_concept, localisation),
        # 3. Shared part across its two classes.
        "shared_part": _shared_part(session, inputs, latents, dominant, cancel, budget),
        "computed_from": inputs.computed_from,
    })
    if record:  # what is stored: the result stamped with when it was recorded
        result = _record(session, result, table, inputs.subset)
    return result


def _load_inputs(session: Session, max_samples: int | None, record: bool) -> _Inputs:
    """Assets, labels and presence of the test split and the subset to score; refuses a
    read-only session when recording, a non-Shapes session and cached activations whose
    labels differ from the dataset."""
    from core.workflow.pipeline import activations_key
    from core.workflow.provenance import stage_runs

    if record and session.read_only:
        raise SessionError(
            f"session {session.name} is open read-only, so ground-truth scores cannot be "
            "stored; open it as the writer or pass record=False (CLI: --no-record)"
        )
    require_shapes(session)
    computed_from = stage_runs(session)  # the stage runs the assets below come from
    assets = load_assets(session)
    source = assets.test
    require_shapes(session, source)
    labels_all = np.asarray(source.labels, dtype=np.int64)
    presence_all = np.asarray(source.concept_present, dtype=bool)
    n_total = len(labels_all)
    if max_samples is not None and max_samples < 1:
        raise ValueError(f"max_samples must be ≥ 1, got {max_samples}")
    if max_samples is not None and max_samples < n_total:
        subset = np.sort(np.random.default_rng(0).choice(n_total, max_samples, replace=False))
    else:
        subset = np.arange(n_total)
    cached_labels = session.read_array(activations_key(session, "test", "labels"))
    if not np.array_equal(np.asarray(cached_labels), labels_all):
        raise SessionError(
            f"session {session.name}'s cached test activations do not match its dataset "
            f"(labels differ); rerun `salve run {session.name} activations --force`"
        )
    return _Inputs(assets, assets.class_names, list(source.concept_names), labels_all, presence_all, subset,
                   computed_from)


def _class_concepts(names: list[str], concepts: list[str]) -> list[int]:
    """The concept index of each class's own shape (a class is scored against its namesake)."""
    out = []
    for name in names:
        if name not in concepts:
            raise ValueError(f"class '{name}' has no ground-truth concept of the same name")
        out.append(concepts.index(name))
    return out


def _localise(inputs: _Inputs, dominant: list[int], class_concept: list[int], layer: str | None,
              batch_size: int, progress: ProgressFn | None, cancel: CancelToken | None,
              ) -> tuple[np.ndarray, str, dict[str, Any]]:
    """Pointing game of each image's dominant feature (Grad-FAM) and true class (Grad-CAM)
    against the mask of its class's shape; images of classes without a dominant feature are
    skipped. Returns the scored image indices, the layer and the localisation results."""
    from core.validate.groundtruth import saliency_localisation
    from core.validate.saliency import default_target_layer

    source, labels_all, assets = inputs.source, inputs.labels_all, inputs.assets
    usable = np.array([dominant[c] >= 0 for c in inputs.labels])
    scored = inputs.subset[usable]
    masks = np.empty((len(scored), assets.image_size, assets.image_size), dtype=bool)
    for start in range(0, len(scored), 256):
        chunk = scored[start : start + 256]
        dense = source.concept_masks(chunk)
        own = np.asarray([class_concept[c] for c in labels_all[chunk]])
        masks[start : start + len(chunk)] = dense[np.arange(len(chunk)), own]
    with MODEL_LOCK:
        chosen_layer = layer or default_target_layer(assets.model, assets.image_size)
        localisation = saliency_localisation(
            assets.model,
            assets.sae,
            lambda idx: source.load_batch(scored[idx]),
            labels_all[scored],
            masks,
            [max(k, 0) for k in dominant],
            inputs.names,
            layer=chosen_layer,
            batch_size=batch_size,
            progress=progress,
            cancel=cancel,
        )
    return scored, chosen_layer, localisation


def _per_class(inputs: _Inputs, dominant: list[int], means: np.ndarray, table: np.ndarray,
               class_concept: list[int], localisation: dict[str, Any]) -> dict[str, Any]:
    """Per class: its dominant feature's AUROC for the class's shape (signed by the feature's
    class mean) and its pointing-game scores."""
    labels = inputs.labels
    per_class = {}
    for c, name in enumerate(inputs.names):
        k = dominant[c]
        rows = labels == c
        entry: dict[str, Any] = {"dominant_feature": k, "n_images": int(rows.sum())}
        if k >= 0 and rows.any():
            sign = 1 if means[c, k] >= 0 else -1
            raw = table[k, class_concept[c]]
            entry["dominant_auroc_for_shape"] = raw if sign > 0 else 1.0 - raw
            entry["grad_fam"] = localisation["grad_fam"].per_class.get(name)
            entry["grad_cam"] = localisation["grad_cam"].per_class.get(name)
        per_class[name] = entry
    return per_class


def _shared_part(session: Session, inputs: _Inputs, latents: Any, dominant: list[int],
                 cancel: CancelToken | None, budget: int | None) -> dict[str, Any]:
    """Whether one latent tracks the shared part within both of its classes, and whether the two
    classes' dominant features do; an ``error`` entry says why it could not be scored."""
    from core.discover.shapes import SHARED_PART, SHARED_PART_CLASSES

    names, concepts, presence, labels = inputs.names, inputs.concepts, inputs.presence, inputs.labels
    shared: dict[str, Any] = {"concept": SHARED_PART, "classes": list(SHARED_PART_CLASSES)}
    if not (SHARED_PART in concepts and all(c in names for c in SHARED_PART_CLASSES)):
        shared["error"] = "this dataset has no shared part concept"
        return shared
    pair = (names.index(SHARED_PART_CLASSES[0]), names.index(SHARED_PART_CLASSES[1]))
    part = concepts.index(SHARED_PART)
    try:
        chosen, sign, selected_on = _shared_part_choice(session, inputs.assets, part, pair, cancel, budget)
        if chosen is None:  # chosen on the test images themselves
            chosen, sign = _choose_shared_latent(latents, presence, labels, part, pair)
        best = _track_part(latents, presence, labels, part, pair, chosen, sign)
        shared["best_latent"] = {
            "latent": best.latent,
            "sign": best.sign,
            "selected_on": selected_on,
            "auroc_overall": best.auroc_overall,
            "auroc_per_class": dict(zip(SHARED_PART_CLASSES, best.auroc_per_class, strict=True)),
            "tracks_both": best.tracks_both,
            "threshold": best.threshold,
        }
        shared["dominant_features"] = {}
        for c in pair:
            if dominant[c] < 0:
                continue
            own = _track_part(latents, presence, labels, part, pair, dominant[c])
            shared["dominant_features"][names[c]] = {
                "latent": own.latent,
                "auroc_per_class": dict(zip(SHARED_PART_CLASSES, own.auroc_per_class, strict=True)),
                "tracks_both": own.tracks_both,
            }
    except ValueError as exc:
        shared["error"] = str(exc)
    return shared


def _brief(result: dict[str, Any]) -> dict[str, Any]:
    """The compact ``groundtruth`` entry of the session summary (``salve info --json``)."""
    return {
        "layer": result["layer"],
        "n_images": result["n_images"],
        "pointing_game": {
            key: {
                stat: result["pointing_game"][key][stat]
                for stat in ("hit_rate", "chance_rate", "ratio_to_chance", "energy_inside",
                             "mask_area_share")
            }
            for key in ("grad_fam", "grad_cam")
        },
        "concepts": {
            name: {k: row[k] for k in ("latent", "auroc", "strength")}
            for name, row in result["concepts"].items()
        },
        "shared_part": {
            key: result["shared_part"].get("best_latent", {}).get(key)
            for key in ("latent", "auroc_per_class", "tracks_both", "selected_on")
        },
    }


def _record(session: Session, result: dict[str, Any], table: np.ndarray, subset: np.ndarray) -> dict[str, Any]:
    """Commit the result, the AUROC table, the scored indices and the summary in one
    transaction; returns the stored result."""
    arrays = {"auroc": table.astype(np.float32), "sample_index": subset.astype(np.int64)}
    with session.transaction() as tx:
        stored = GROUNDTRUTH.save(tx, GROUNDTRUTH.empty(), [NewResult("groundtruth", result, {"": arrays})],
                                  result["computed_from"])
        tx.update_json("summary", groundtruth=_brief(result))
    return stored


def _shared_part_choice(
    session: Session, assets: Any, part: int, pair: tuple[int, int], cancel: CancelToken | None = None,
    budget: int | None = None,
) -> tuple[int | None, int | None, str]:
    """The latent (and sign) that tracks the shared part best in both classes on the *train*
    split; ``(None, None, "test")`` when the train split cannot score it (then the test images
    choose and score, which flatters the AUROCs slightly)."""
    from core.workflow.outofcore import LatentColumns
    from core.workflow.pipeline import activations_key

    train = assets.bundle.train
    presence = getattr(train, "concept_present", None)
    if presence is None or not session.stage_done("activations"):
        return None, None, "test"
    labels = np.asarray(session.read_array(activations_key(session, "train", "labels")), dtype=np.int64)
    if not np.array_equal(labels, np.asarray(train.labels)):
        return None, None, "test"
    latents = LatentColumns(session, assets.sae, activations_key(session, "train", "a"), None, budget, cancel)
    try:
        latent, sign = _choose_shared_latent(latents, np.asarray(presence), labels, part, pair)
    except ValueError:
        return None, None, "test"
    return latent, sign, "train"


def _choose_shared_latent(latents: Any, presence: np.ndarray, labels: np.ndarray, part: int,
                          pair: tuple[int, int]) -> tuple[int, int]:
    """``best_shared_part_latent`` over :class:`~core.workflow.outofcore.LatentColumns`: the
    within-class AUROCs of every latent, one block of latent columns at a time."""
    from core.validate.groundtruth import shared_part_choice
    from core.workflow.outofcore import latent_aurocs

    present = np.asarray(presence).astype(bool)[:, part]
    per_class = []
    for cls in pair:
        inside = np.flatnonzero(labels == cls)
        if len(inside):
            per_class.append(latent_aurocs(latents.subset(inside), present[inside])[:, 0])
        else:
            per_class.append(np.full(latents.hidden, np.nan))
    return shared_part_choice(np.stack(per_class), part, pair)


def _track_part(latents: Any, presence: np.ndarray, labels: np.ndarray, part: int,
                pair: tuple[int, int], latent: int, sign: int | None = None) -> Any:
    """``shared_part_tracking`` of one latent, reading only that latent's column."""
    import dataclasses

    from core.validate.groundtruth import shared_part_tracking

    column = latents.columns([int(latent)])
    tracked = shared_part_tracking(column, presence, labels, part, pair, latent=0, sign=sign)
    return dataclasses.replace(tracked, latent=int(latent))


def stored_groundtruth(session: Session) -> dict[str, Any] | None:
    """The last recorded :func:`run_groundtruth` result, or None."""
    return GROUNDTRUTH.load(session) or None
