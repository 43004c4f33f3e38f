"""What control computations read from a session, loaded once per process and shared.

Inputs are cached per process (:func:`load_inputs`), keyed on the session file and the
timestamps of the stages that produce them: the TUI's edit preview, called on every α
keypress, costs one small JSON read and one matmul. The session-level control API is split by
result: ``edits``, ``sweeps``, ``alpha_crit`` and ``robustness``, each of which loads its inputs
here, computes with ``core.control`` and (with ``record=True``, the default) commits the result
in one session transaction, so a result is either fully stored or absent.

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

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.control.methods.base import CachedInputs
from core.control.spec import check_features
from core.store.session import Session, SessionError

SPLITS = ("train", "test")

_INPUT_STAGES = ("backbone", "activations", "sae", "rankings")

_CACHE_SIZE = 4

_inputs_cache: OrderedDict[tuple[Any, ...], ControlInputs] = OrderedDict()

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
    #: Set when ``A`` stays on disk (:func:`load_inputs` with ``streamed``): ``A`` is then empty
    #: (0×d) and sweeps and α_crit read row blocks through this instead.
    rows: Any = field(default=None, repr=False)
    #: Which runs of the pipeline stages these inputs were read from (``core.workflow.provenance``).
    computed_from: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_session(cls, session: Session, split: str = "test", streamed: bool = False) -> ControlInputs:
        """Read the inputs of ``split`` from a session whose pipeline is complete; ``streamed``
        leaves the activations on disk (``rows``: :class:`core.workflow.outofcore.SplitRows`)."""
        from core.workflow.pipeline import activations_key, load_classifier_head, load_sae_arrays
        from core.workflow.provenance import stage_runs

        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got '{split}'")
        require_rankings(session)
        computed_from = stage_runs(session)
        labels = session.read_array(activations_key(session, split, "labels"))
        rows = None
        if streamed:
            from core.workflow.outofcore import SplitRows

            rows = SplitRows(session, activations_key(session, split, "a"), labels)
            a = np.empty((0, rows.dim), dtype=np.float32)
        else:
            a = session.read_array(activations_key(session, split, "a"))
        acts = {"a": a, "labels": labels}
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
            rows=rows,
            computed_from=computed_from,
        )

    @property
    def streamed(self) -> bool:
        """Are the activations left on disk (read in row blocks)?"""
        return self.rows is not None

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

def load_inputs(session: Session, split: str = "test", streamed: bool = False) -> ControlInputs:
    """:meth:`ControlInputs.from_session`, cached while the producing stages are unchanged.

    The key holds the file and the ``updated`` stamps of backbone/activations/sae/rankings:
    rerunning any of them invalidates it, while recording control results does not.
    The returned object is shared: treat its tensors as read-only.
    """
    stages = session.stages()
    stamps = tuple(stages[s].updated if s in stages else None for s in _INPUT_STAGES)
    key = (str(Path(session.path).resolve()), split, stamps, streamed)
    cached = _inputs_cache.get(key)
    if cached is not None and (not streamed or cached.rows.session is session):
        _inputs_cache.move_to_end(key)
        return cached
    inputs = ControlInputs.from_session(session, split, streamed)
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
            f"(0..{len(names) - 1}: {listing(names)})"
        )
    lowered = [n.lower() for n in names]
    text = str(value).strip().lower()
    if text in lowered:
        return lowered.index(text)
    raise ValueError(f"unknown class '{value}'; valid classes: {listing(names)}")

def listing(names: Sequence[str]) -> str:
    return ", ".join(f"{i}={n}" for i, n in enumerate(names))

def inputs_for(session: Session, inputs: ControlInputs | None, split: str) -> ControlInputs:
    return inputs if inputs is not None else load_inputs(session, split)


def row_inputs_for(session: Session, inputs: ControlInputs | None, split: str) -> ControlInputs:
    """:func:`inputs_for` for sweeps and α_crit: the activations stay on disk (streamed in row
    blocks) when the split takes more than half the memory budget
    (:func:`core.workflow.outofcore.split_fits`), else they are loaded as usual."""
    if inputs is not None:
        return inputs
    from core.workflow.outofcore import split_fits
    from core.workflow.pipeline import activations_key

    require_rankings(session)
    fits = split_fits(session, activations_key(session, split, "a"))
    return load_inputs(session, split, streamed=not fits)

def check_writable(session: Session, record: bool) -> None:
    if record and session.read_only:
        raise SessionError(
            f"session {session.name} is open read-only, so results cannot be recorded; open it "
            "as the writer or pass record=False (CLI: --no-record)"
        )

def setting_key(mode: str, modulation: str) -> str:
    return f"{mode}-{modulation}"
