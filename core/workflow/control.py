"""Session-level control API: sweeps, α_crit, edits and SAE-seed robustness on a session.

The CLI (``salve_tui.cli.control``) and the TUI both call these functions; the math lives in
``core.control`` (edits, the editing methods behind one interface, sweeps, α_crit,
robustness). Each ``run_*`` function loads its inputs from the session, computes, and
(with ``record=True``, the default) commits the result in one session transaction, so a result
is either fully stored or absent.

Inputs are cached per process (:func:`load_inputs`), keyed on the session file and the
timestamps of the stages that produce them: the TUI's edit preview, called on every α
keypress, costs one small JSON read and one matmul.

Storage layout (all under ``control/``)::

    control/sweeps/<id>/{alphas, per_class_accuracy, target_prediction, class_counts}
    json control/sweep_index           {id: sweep metadata}
    control/alpha_crit/<mode>-<modulation>/c<class>-f<feature>/{sample_index, prediction, z,
        S, analytic, numerical, validity_below_zero}
    json control/alpha_crit_index      {"<mode>-<modulation>": {"c<class>-f<feature>": summary}}
    json control/edits                 [EditSpec dict + "recorded_at" (+ "exports")]
    control/robustness/<mode>-<modulation>/c<class>/{alphas, accuracy_mean, accuracy_std,
        target_prediction_mean, target_prediction_std, features_per_seed}
    control/robustness_sae/<param>     the K seeds' SAE weights (leading seed axis)
    json control/robustness            {"<mode>-<modulation>": run metadata}

The session ``summary`` document gains ``alpha_crit`` (per setting, per class name: dominant
feature, analytic/numerical medians, α50, qualifying count), ``edits`` (count) and
``robustness`` (seeds and setting) so ``salve info`` and the TUI dashboard can show them.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.control.alpha_crit import AlphaCritResult, class_alpha_crit
from core.control.curves import DEFAULT_N_ALPHAS, SweepResult, confusion_matrix, per_class_accuracy
from core.control.edit import apply_edit
from core.control.methods.base import CachedInputs
from core.control.robustness import RobustnessResult, seed_robustness
from core.control.spec import MODES, EditSpec, check_features
from core.control.sweep import EditEffect, sweep
from core.jobs import CancelToken, ProgressFn, ProgressReporter, check_cancel
from core.store.session import Session, SessionError

SPLITS = ("train", "test")
_INPUT_STAGES = ("backbone", "activations", "sae", "rankings")
_CACHE_SIZE = 4
_inputs_cache: OrderedDict[tuple[Any, ...], ControlInputs] = OrderedDict()


# ----------------------------------------------------------------------------- inputs


@dataclass
class ControlInputs:
    """Everything a control computation reads, as tensors: one split's cached activations
    ``A`` (N×d) and ``labels`` (N,), the classifier head ``W`` (C×d), ``b`` (C,), the SAE
    decoder ``D`` (d×h), class-mean latents ``M`` (C×h) and each class's dominant feature."""

    A: torch.Tensor
    labels: torch.Tensor
    W: torch.Tensor
    b: torch.Tensor
    D: torch.Tensor
    M: torch.Tensor
    dominant: torch.Tensor
    class_names: list[str]
    split: str = "test"
    session_name: str = ""
    _base_predictions: torch.Tensor | None = field(default=None, repr=False)

    @classmethod
    def from_session(cls, session: Session, split: str = "test") -> ControlInputs:
        """Read the inputs of ``split`` from a session whose pipeline is complete."""
        from core.workflow.pipeline import load_activations, load_classifier_head, load_sae_arrays

        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got '{split}'")
        require_rankings(session)
        acts = load_activations(session, split)
        W, b = load_classifier_head(session)
        decoder = load_sae_arrays(session)["decoder.weight"]
        return cls(
            A=torch.from_numpy(np.ascontiguousarray(acts["a"], dtype=np.float32)),
            labels=torch.from_numpy(np.asarray(acts["labels"], dtype=np.int64)),
            W=torch.from_numpy(np.asarray(W, dtype=np.float32)),
            b=torch.from_numpy(np.asarray(b, dtype=np.float32)),
            D=torch.from_numpy(np.asarray(decoder, dtype=np.float32)),
            M=torch.from_numpy(np.asarray(session.read_array("rankings/class_means"))),
            dominant=torch.from_numpy(np.asarray(session.read_array("rankings/dominant"))).long(),
            class_names=[str(c) for c in session.read_json("class_names")],
            split=split,
            session_name=session.name,
        )

    @property
    def num_classes(self) -> int:
        return int(self.W.shape[0])

    @property
    def num_features(self) -> int:
        return int(self.D.shape[1])

    @property
    def base_predictions(self) -> torch.Tensor:
        """Unedited predictions ``argmax(A Wᵀ + b)``, computed once (the preview's "before")."""
        if self._base_predictions is None:
            self._base_predictions = torch.addmm(self.b, self.A, self.W.T).argmax(1)
        return self._base_predictions

    def cached(self) -> CachedInputs:
        """The tensors an editing method's sweep runs on."""
        return CachedInputs(self.A, self.labels, self.W, self.b, self.D, self.M)

    def class_index(self, value: str | int) -> int:
        return resolve_class(self.class_names, value)

    def dominant_feature(self, target_class: int) -> int:
        k = int(self.dominant[target_class])
        if k < 0:
            raise ValueError(
                f"class '{self.class_names[target_class]}' had no training samples, so it has no "
                "dominant feature; pass a feature explicitly"
            )
        return k

    def feature_class(self, feature: int) -> int:
        """The class whose mean latent is largest in magnitude on ``feature`` (its owner)."""
        check_features(self.D, [feature])
        column = torch.nan_to_num(self.M[:, feature].abs(), nan=-1.0)
        return int(column.argmax())


def require_rankings(session: Session) -> None:
    """Control needs the whole discover pipeline; say which stage is missing otherwise."""
    stages = session.stages()
    for stage in ("activations", "sae", "rankings"):
        state = stages.get(stage)
        if state is None or state.state != "done":
            now = "missing" if state is None else state.state
            raise SessionError(
                f"session {session.name} needs the '{stage}' stage done before control "
                f"(it is {now}); run `salve run {session.name}`"
            )


def load_inputs(session: Session, split: str = "test") -> ControlInputs:
    """:meth:`ControlInputs.from_session`, cached while the producing stages are unchanged.

    The key holds the file and the ``updated`` stamps of backbone/activations/sae/rankings:
    rerunning any of them invalidates it, while recording control results does not.
    The returned object is shared: treat its tensors as read-only.
    """
    stages = session.stages()
    stamps = tuple(stages[s].updated if s in stages else None for s in _INPUT_STAGES)
    key = (str(Path(session.path).resolve()), split, stamps)
    cached = _inputs_cache.get(key)
    if cached is not None:
        _inputs_cache.move_to_end(key)
        return cached
    inputs = ControlInputs.from_session(session, split)
    _inputs_cache[key] = inputs
    while len(_inputs_cache) > _CACHE_SIZE:
        _inputs_cache.popitem(last=False)
    return inputs


def clear_input_cache() -> None:
    _inputs_cache.clear()


def resolve_class(class_names: Sequence[str], value: str | int) -> int:
    """A class given by name (case-insensitive) or index; a clear error lists the valid ones."""
    names = list(class_names)
    if isinstance(value, int) or (isinstance(value, str) and value.strip().lstrip("-").isdigit()):
        index = int(value)
        if 0 <= index < len(names):
            return index
        raise ValueError(
            f"class index {index} is out of range: this session has {len(names)} classes "
            f"(0..{len(names) - 1}: {_listing(names)})"
        )
    lowered = [n.lower() for n in names]
    text = str(value).strip().lower()
    if text in lowered:
        return lowered.index(text)
    raise ValueError(f"unknown class '{value}'; valid classes: {_listing(names)}")


def _listing(names: Sequence[str]) -> str:
    return ", ".join(f"{i}={n}" for i, n in enumerate(names))


def _inputs(session: Session, inputs: ControlInputs | None, split: str) -> ControlInputs:
    return inputs if inputs is not None else load_inputs(session, split)


def _check_writable(session: Session, record: bool) -> None:
    if record and session.read_only:
        raise SessionError(
            f"session {session.name} is open read-only, so results cannot be recorded; open it "
            "as the writer or pass record=False (CLI: --no-record)"
        )


def _setting(mode: str, modulation: str) -> str:
    return f"{mode}-{modulation}"


# ----------------------------------------------------------------------------- edits


def build_spec(
    inputs: ControlInputs,
    method: str = "salve",
    features: Sequence[int] | int | None = None,
    target_class: int | None = None,
    mode: str = "suppress",
    alpha: float = 0.0,
    modulation: str = "linear",
    rome_sample: int | None = None,
) -> EditSpec:
    """An :class:`EditSpec` for any method, filling in what the method needs from the inputs.

    SALVE and steering default to ``target_class``'s dominant feature; ROME needs a class
    (or a feature, whose owning class is used) and stores its key so it replays anywhere.
    ``alpha`` is α (SALVE), β (steering) or the target value (ROME).
    """
    from core.control.methods.rome import rome_spec
    from core.control.methods.steering import steer_spec

    if isinstance(features, int):
        features = [features]
    features = None if features is None else [int(k) for k in features]
    if features:
        check_features(inputs.D, features)
    if target_class is None and features:
        target_class = inputs.feature_class(features[0])
    if method == "salve":
        if not features:
            if target_class is None:
                raise ValueError("a SALVE edit needs a feature or a class (its dominant feature)")
            features = [inputs.dominant_feature(target_class)]
        return EditSpec(tuple(features), mode, alpha, modulation, "salve")
    if target_class is None:
        raise ValueError(f"a {method} edit needs a target class (or a feature of that class)")
    if method == "rome":
        if mode != "suppress":
            raise ValueError("the ROME baseline only suppresses (it sets the class logit)")
        return rome_spec(inputs.A, inputs.labels, target_class, alpha, rome_sample)
    if method == "steer":
        if not features:
            features = [inputs.dominant_feature(target_class)]
        return steer_spec(inputs.M, target_class, alpha, features, mode)
    raise ValueError(f"method must be one of salve, rome, steer, got '{method}'")


def edited_head(
    inputs: ControlInputs, edits: EditSpec | Sequence[EditSpec]
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(W', b')`` after applying ``edits`` in order to the session's original head."""
    edits = [edits] if isinstance(edits, EditSpec) else list(edits)
    W, b = inputs.W, inputs.b
    for spec in edits:
        W, b = apply_edit(W, b, inputs.D, spec)
    return W, b


def preview_edit(
    session: Session | None,
    spec: EditSpec,
    inputs: ControlInputs | None = None,
    split: str = "test",
) -> EditEffect:
    """Per-class accuracy before/after and confusion matrices of ``spec``; writes nothing.

    Fast enough for every keypress: cached inputs and unedited predictions, one matmul.
    Pass ``inputs`` to skip even the cache lookup (``session`` may then be None).
    """
    if inputs is None:
        if session is None:
            raise ValueError("preview_edit needs a session or ControlInputs")
        inputs = load_inputs(session, split)
    W_new, b_new = apply_edit(inputs.W, inputs.b, inputs.D, spec)
    after = torch.addmm(b_new, inputs.A, W_new.T).argmax(1)
    before = inputs.base_predictions
    C = inputs.num_classes
    return EditEffect(
        spec,
        per_class_accuracy(inputs.labels, before, C),
        per_class_accuracy(inputs.labels, after, C),
        confusion_matrix(inputs.labels, before, C),
        confusion_matrix(inputs.labels, after, C),
    )


def record_edit(
    session: Session, spec: EditSpec, exports: Sequence[str] | None = None, note: str = ""
) -> int:
    """Append ``spec`` to the session's edit log; returns its position in the log."""
    _check_writable(session, True)
    entry: dict[str, Any] = {**spec.to_dict(), "recorded_at": time.time()}
    if exports:
        entry["exports"] = [str(p) for p in exports]
    if note:
        entry["note"] = note
    log = list(session.read_json("control/edits", []) or [])
    log.append(entry)
    with session.transaction() as tx:
        tx.write_json("control/edits", log)
        tx.update_json("summary", edits=len(log))
    return len(log) - 1


def edit_records(session: Session) -> list[dict[str, Any]]:
    """The raw edit log: each spec's fields plus ``recorded_at`` (and ``exports``/``note``)."""
    return list(session.read_json("control/edits", []) or [])


def list_edits(session: Session) -> list[EditSpec]:
    """The recorded edits, oldest first, as specs that replay exactly (``core.control.edit.replay``)."""
    return [EditSpec.from_dict(d) for d in edit_records(session)]


def clear_edits(session: Session) -> None:
    _check_writable(session, True)
    with session.transaction() as tx:
        tx.delete("control/edits")
        tx.update_json("summary", edits=0)


# ----------------------------------------------------------------------------- sweeps


def sweep_id(result: SweepResult) -> str:
    """Storage key of a sweep: method, feature(s), mode, modulation and target class."""
    target = "none" if result.target_class is None else str(result.target_class)
    if result.method == "rome":
        source = str(result.extra.get("key_source", "class_mean")).replace(":", "")
        return f"rome-c{target}-{source}"
    feats = "+".join(str(k) for k in result.features)
    tail = result.modulation if result.method == "salve" else "beta"
    return f"{result.method}-f{feats}-{result.mode}-{tail}-c{target}"


def run_sweep(
    session: Session,
    target_class: int | None = None,
    feature: int | Sequence[int] | None = None,
    mode: str = "suppress",
    method: str = "salve",
    modulation: str = "linear",
    alphas: torch.Tensor | Sequence[float] | None = None,
    n_alphas: int = DEFAULT_N_ALPHAS,
    rome_sample: int | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
    record: bool = True,
    inputs: ControlInputs | None = None,
    split: str = "test",
) -> SweepResult:
    """Per-class accuracy vs strength for one method, recorded under ``control/sweeps``.

    Give a class (its dominant feature is swept) or a feature (target class: the class whose
    mean latent is largest on it), or both for a cross-class edit. ``alphas`` default to the
    automatic range (``core.control.sweep``). ROME sweeps the class logit's target value, steering β.
    """
    _check_writable(session, record)
    x = _inputs(session, inputs, split)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got '{mode}'")
    features = None if feature is None else ([feature] if isinstance(feature, int) else feature)
    features = None if features is None else [int(k) for k in features]
    if target_class is None and not features:
        raise ValueError("give a target class or a feature to sweep")
    if features:
        check_features(x.D, features)
    if target_class is None:
        target_class = x.feature_class(features[0])
    if not 0 <= target_class < x.num_classes:
        raise ValueError(f"target class {target_class} is out of range (0..{x.num_classes - 1})")
    options = {"sample_index": rome_sample} if method == "rome" else {}
    result = sweep(
        method, x.cached(), target_class, features, alphas, mode, modulation, n_alphas,
        progress, cancel, **options,
    )
    if record:
        save_sweep(session, result)
    return result


def save_sweep(session: Session, result: SweepResult) -> str:
    """Store a sweep (arrays + index entry); returns its id. Replaces one with the same id."""
    _check_writable(session, True)
    key = sweep_id(result)
    meta = {k: v for k, v in result.to_dict().items() if k not in _SWEEP_ARRAYS}
    meta.update(n_alphas=int(result.alphas.numel()), recorded_at=time.time())
    index = dict(session.read_json("control/sweep_index", {}) or {})
    index[key] = meta
    with session.transaction() as tx:
        tx.write_arrays(
            f"control/sweeps/{key}",
            {
                "alphas": result.alphas.double().numpy(),
                "per_class_accuracy": result.per_class_accuracy.double().numpy(),
                "target_prediction": result.target_prediction.double().numpy(),
                "class_counts": np.asarray(result.class_counts, dtype=np.int64),
            },
        )
        tx.write_json("control/sweep_index", index)
    return key


_SWEEP_ARRAYS = ("alphas", "per_class_accuracy", "target_prediction", "class_counts")


def list_sweeps(session: Session) -> dict[str, dict[str, Any]]:
    """Stored sweeps: id → metadata (method, features, mode, modulation, target class, ...)."""
    return dict(session.read_json("control/sweep_index", {}) or {})


def load_sweep(session: Session, key: str) -> SweepResult:
    """A stored sweep by id (see :func:`list_sweeps`)."""
    index = list_sweeps(session)
    if key not in index:
        known = ", ".join(sorted(index)) or "none yet"
        raise KeyError(f"session {session.name} has no sweep '{key}' (stored: {known})")
    arrays = session.read_arrays(f"control/sweeps/{key}")
    meta = index[key]
    return SweepResult(
        method=meta["method"],
        features=list(meta["features"]),
        mode=meta["mode"],
        modulation=meta["modulation"],
        target_class=meta["target_class"],
        param_name=meta["param_name"],
        alphas=torch.from_numpy(arrays["alphas"]),
        per_class_accuracy=torch.from_numpy(arrays["per_class_accuracy"]),
        target_prediction=torch.from_numpy(arrays["target_prediction"]),
        class_counts=[int(c) for c in arrays["class_counts"]],
        extra=dict(meta.get("extra", {})),
    )


def curve_alpha50(result: SweepResult) -> list[float | None]:
    """Per class, the strength at which its accuracy falls to 50% on this curve (None: never)."""
    from core.control.alpha_crit import alpha50

    return [alpha50(result.alphas, result.per_class_accuracy[c]) for c in range(len(result.class_counts))]


# ----------------------------------------------------------------------------- α_crit


def alpha_crit_brief(result: AlphaCritResult, class_names: Sequence[str]) -> dict[str, Any]:
    """The per-class numbers a table shows: medians, α50, qualifying counts, agreement."""
    summary = result.summary()
    both = torch.isfinite(result.analytic) & torch.isfinite(result.numerical)
    rel = (result.numerical[both] - result.analytic[both]).abs() / result.analytic[both].abs()
    return {
        "class": result.target_class,
        "class_name": class_names[result.target_class],
        "feature": result.feature,
        "mode": result.mode,
        "modulation": result.modulation,
        "n_samples": summary["n_samples"],
        "qualifying": summary["n_qualifying_analytic"],
        "qualifying_numerical": summary["n_qualifying_numerical"],
        "analytic_median": summary["analytic"]["median"],
        "numerical_median": summary["numerical"]["median"],
        "alpha50": summary["alpha50"],
        "max_relative_difference": float(rel.max()) if rel.numel() else None,
        "validity_pooled_share_below_zero": summary["validity"]["pooled_share_below_zero"],
    }


def run_alpha_crit(
    session: Session,
    target_class: int | Sequence[int] | None = None,
    feature: int | None = None,
    mode: str = "suppress",
    modulation: str = "linear",
    curve: SweepResult | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
    record: bool = True,
    inputs: ControlInputs | None = None,
    split: str = "test",
) -> list[AlphaCritResult]:
    """α_crit (analytic, numerical, α50, validity) per class, recorded per class and feature.

    ``target_class``: one class, several, or None for every class with samples. ``feature``:
    one feature for all of them (cross-class), default each class's dominant feature.
    ``curve``: a sweep of that feature to read α50 from (else one per class is computed).
    """
    _check_writable(session, record)
    x = _inputs(session, inputs, split)
    if target_class is None:
        classes = sorted(int(c) for c in x.labels.unique().tolist())
    elif isinstance(target_class, int):
        classes = [target_class]
    else:
        classes = [int(c) for c in target_class]
    if feature is not None:
        check_features(x.D, [feature])
    reporter = ProgressReporter("alpha-crit", len(classes), progress)
    results = []
    for i, c in enumerate(classes):
        check_cancel(cancel)
        k = x.dominant_feature(c) if feature is None else int(feature)
        use_curve = curve if curve is not None and list(curve.features) == [k] else None
        if use_curve is not None and (use_curve.mode, use_curve.modulation) != ("suppress", modulation):
            use_curve = None
        results.append(
            class_alpha_crit(x.A, x.labels, x.W, x.b, x.D, c, k, mode, modulation, curve=use_curve)
        )
        reporter.report(i + 1, f"class {x.class_names[c]}")
    if record:
        save_alpha_crit(session, results, x.class_names, x.dominant)
    return results


_ALPHA_CRIT_ARRAYS = (
    "sample_index", "prediction", "z", "S", "analytic", "numerical", "validity_below_zero"
)


def save_alpha_crit(
    session: Session,
    results: Sequence[AlphaCritResult],
    class_names: Sequence[str],
    dominant: torch.Tensor | None = None,
) -> None:
    """Store α_crit results (per-sample arrays + summaries); dominant-feature ones also go to
    the session summary."""
    _check_writable(session, True)
    index = dict(session.read_json("control/alpha_crit_index", {}) or {})
    summary_block = dict(session.summary().get("alpha_crit", {}) or {})
    with session.transaction() as tx:
        for r in results:
            setting = _setting(r.mode, r.modulation)
            key = f"c{r.target_class}-f{r.feature}"
            tx.write_arrays(
                f"control/alpha_crit/{setting}/{key}",
                {name: getattr(r, name).numpy() for name in _ALPHA_CRIT_ARRAYS},
            )
            index.setdefault(setting, {})[key] = r.summary()
            if dominant is not None and int(dominant[r.target_class]) == r.feature:
                brief = alpha_crit_brief(r, class_names)
                summary_block.setdefault(setting, {})[class_names[r.target_class]] = {
                    k: brief[k]
                    for k in ("feature", "analytic_median", "numerical_median", "alpha50",
                              "qualifying", "n_samples")
                }
        tx.write_json("control/alpha_crit_index", index)
        tx.update_json("summary", alpha_crit=summary_block)


def load_alpha_crit(
    session: Session, mode: str = "suppress", modulation: str = "linear"
) -> list[AlphaCritResult]:
    """Every stored α_crit result of one setting, ordered by class then feature."""
    setting = _setting(mode, modulation)
    index = (session.read_json("control/alpha_crit_index", {}) or {}).get(setting, {})
    results = []
    for key in sorted(index, key=lambda k: tuple(int(p[1:]) for p in k.split("-"))):
        s = index[key]
        arrays = session.read_arrays(f"control/alpha_crit/{setting}/{key}")
        results.append(
            AlphaCritResult(
                target_class=int(s["class"]),
                feature=int(s["feature"]),
                mode=s["mode"],
                modulation=s["modulation"],
                alpha_max=float(s["alpha_max"]),
                alpha50=s["alpha50"],
                validity_histogram=dict(s["validity"]["histogram"]),
                **{name: torch.from_numpy(arrays[name]) for name in _ALPHA_CRIT_ARRAYS},
            )
        )
    return results


# ----------------------------------------------------------------------------- seed robustness


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
    from core.device import resolve_device
    from core.discover.rankings import class_means
    from core.discover.sae import encode, sae_from_arrays, train_sae
    from core.workflow.pipeline import load_activations

    if k < 1:
        raise ValueError(f"the number of seeds must be ≥ 1, got {k}")
    _check_writable(session, record)
    x = load_inputs(session, split)
    config = session.config
    sae_config = config.sae if epochs is None else replace(
        config.sae, epochs=int(epochs), lr_step_epochs=min(config.sae.lr_step_epochs, int(epochs))
    )
    train = load_activations(session, "train")
    result = train_sae(
        torch.from_numpy(np.asarray(train["a"], dtype=np.float32)),
        sae_config,
        progress,
        cancel,
        n_seeds=k,
        device=resolve_device(device or config.device),
    )
    train_labels = torch.from_numpy(np.asarray(train["labels"], dtype=np.int64))
    decoders, means = [], []
    for i in range(k):
        sae = sae_from_arrays(result.weights, i, kind=sae_config.kind, k=sae_config.k)
        u = encode(sae, train["a"]).cpu()
        means.append(torch.from_numpy(class_means(u, train_labels, x.num_classes)))
        decoders.append(torch.from_numpy(np.asarray(result.weights["decoder.weight"][i])))
    if target_class is None:
        classes = sorted(int(c) for c in x.labels.unique().tolist())
    elif isinstance(target_class, int):
        classes = [target_class]
    else:
        classes = [int(c) for c in target_class]
    # A class without training samples has a NaN mean row: make it lose every argmax.
    means = [torch.nan_to_num(M, nan=0.0) for M in means]
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
        ev = result.history.get("ev")
        final_ev = [float(v[-1]) for v in ev] if ev is not None and ev.shape[1] else []
        meta = {
            "n_seeds": k,
            "seeds": list(result.seeds),
            "epochs": sae_config.epochs,
            "mode": mode,
            "modulation": modulation,
            "split": split,
            "final_explained_variance": final_ev,
            "classes": {str(r.target_class): r.features_per_seed for r in results},
            "recorded_at": time.time(),
        }
        save_robustness(session, results, result.weights, meta)
    return results


def save_robustness(
    session: Session,
    results: Sequence[RobustnessResult],
    sae_weights: dict[str, np.ndarray] | None,
    meta: dict[str, Any],
) -> None:
    _check_writable(session, True)
    setting = _setting(meta["mode"], meta["modulation"])
    stored = dict(session.read_json("control/robustness", {}) or {})
    stored[setting] = meta
    with session.transaction() as tx:
        tx.delete(f"control/robustness/{setting}")
        for r in results:
            tx.write_arrays(
                f"control/robustness/{setting}/c{r.target_class}",
                {
                    "alphas": r.alphas.double().numpy(),
                    "accuracy_mean": r.accuracy_mean.double().numpy(),
                    "accuracy_std": r.accuracy_std.double().numpy(),
                    "target_prediction_mean": r.target_prediction_mean.double().numpy(),
                    "target_prediction_std": r.target_prediction_std.double().numpy(),
                    "features_per_seed": np.asarray(r.features_per_seed, dtype=np.int64),
                },
            )
        if sae_weights is not None:
            tx.write_arrays("control/robustness_sae", sae_weights)
        tx.write_json("control/robustness", stored)
        tx.update_json(
            "summary",
            robustness={s: {"n_seeds": m["n_seeds"], "epochs": m["epochs"]} for s, m in stored.items()},
        )


def load_robustness(
    session: Session, mode: str = "suppress", modulation: str = "linear"
) -> dict[int, dict[str, Any]]:
    """Stored mean ± std curves of one setting: class → arrays (as tensors) + seed count."""
    setting = _setting(mode, modulation)
    meta = (session.read_json("control/robustness", {}) or {}).get(setting)
    if meta is None:
        raise KeyError(
            f"session {session.name} has no {setting} robustness results; run "
            f"`salve robustness {session.name}` first"
        )
    out = {}
    for c in meta["classes"]:
        arrays = session.read_arrays(f"control/robustness/{setting}/c{c}")
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
                "target_accuracy_mean": _clean(r.accuracy_mean[c].tolist()),
                "target_accuracy_std": _clean(r.accuracy_std[c].tolist()),
                "others_accuracy_mean": _clean(others_per_seed.mean(0).tolist()),
                "others_accuracy_std": _clean(
                    (others_per_seed.std(0) if len(r.sweeps) > 1
                     else torch.zeros_like(others_per_seed[0])).tolist()
                ),
            }
        )
    return {"n_seeds": results[0].n_seeds if results else 0, "classes": out}


def _clean(values: list[float]) -> list[float | None]:
    return [None if not math.isfinite(v) else v for v in values]
