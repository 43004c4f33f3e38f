"""Readers of a session's stored stage results: the dataset, the model, the classifier head, the
cached activations and the SAE.

They live apart from the stage runner (:mod:`core.workflow.pipeline`, which re-exports them) so
that modules the runner calls (the SAE width search) can read a session without importing it.
"""

from __future__ import annotations

import functools
import json
from dataclasses import asdict
from typing import Any

import numpy as np

from core.config import DataConfig, SessionConfig
from core.store.session import Session, SessionError


@functools.lru_cache(maxsize=4)
def _load_dataset_cached(data_json: str):
    from core.discover.data import load_dataset

    return load_dataset(DataConfig(**json.loads(data_json)))


def load_data(config: SessionConfig):
    """The session's DatasetBundle, cached per process and keyed by the data settings.

    Shapes regenerates deterministically and folders are scanned once, so the TUI's screens and
    jobs share one copy. Treat it as read-only.
    """
    return _load_dataset_cached(json.dumps(asdict(config.data), sort_keys=True))


def load_model(session: Session, device: Any = None):
    """The session's trained classifier (eval mode) rebuilt from its stored weights."""
    from core.device import resolve_device
    from core.discover.backbone import build_model, load_numpy_state

    config = session.config
    classes = session.read_json("class_names")
    if not session.has("backbone/state_dict"):
        raise SessionError(f"session {session.name} has no trained backbone yet; run `salve run {session.name} backbone`")
    model = build_model(config.backbone.arch, len(classes), "none", config.data.image_size, config.seed)
    load_numpy_state(model, session.read_arrays("backbone/state_dict"))
    return model.eval().to(device or resolve_device(config.device))


def load_classifier_head(session: Session) -> tuple[np.ndarray, np.ndarray]:
    """``W`` (C×d) and ``b`` (C,) of the final linear layer, read without building the model."""
    if not session.has("backbone/head"):
        raise SessionError(f"session {session.name} has no trained backbone yet; run `salve run {session.name} backbone`")
    head = session.read_json("backbone/head")
    with session.reader() as f:
        return f[f"backbone/state_dict/{head}.weight"][()], f[f"backbone/state_dict/{head}.bias"][()]


def load_activations(session: Session, split: str) -> dict[str, np.ndarray]:
    """Cached activations ``a`` (N×d), ``logits`` (N×C), ``labels`` (N,) of a split."""
    return session.read_arrays(activations_key(session, split))


def activations_key(session: Session, split: str, name: str | None = None) -> str:
    """``activations/<split>[/<name>]``, once the activations stage is complete (else a clear error).

    Out-of-core readers pass the key to ``Session.rows`` instead of loading the arrays.
    """
    state = session.stages().get("activations")
    if state is None or state.state != "done":
        raise SessionError(
            f"session {session.name} has no complete activations yet; run `salve run {session.name} activations`"
        )
    return f"activations/{split}" + (f"/{name}" if name else "")


def load_sae_arrays(session: Session) -> dict[str, np.ndarray]:
    """Final SAE parameters: ``encoder.weight`` (h×d), ``encoder.bias``, ``decoder.weight`` (d×h), ``decoder.bias``."""
    if not session.has("sae/weights"):
        raise SessionError(f"session {session.name} has no trained SAE yet; run `salve run {session.name} sae`")
    return session.read_arrays("sae/weights")


SAE_IMPORT_KEY = "sae/imported"  # JSON record of a dictionary imported from elsewhere


def sae_kind(session: Session) -> str:
    """How the session's SAE encodes: an imported dictionary's kind, else the trained kind."""
    imported = session.read_json(SAE_IMPORT_KEY, None)
    return imported["kind"] if imported else session.config.sae.kind


def sae_options(session: Session) -> dict[str, Any]:
    """``kind``, ``k`` and ``input_norm`` the session's SAE encodes with (an imported one's own)."""
    imported = session.read_json(SAE_IMPORT_KEY, None)
    config = session.config.sae
    if not imported:
        return {"kind": config.kind, "k": config.k, "input_norm": "none"}
    return {"kind": imported["kind"], "k": int(imported.get("k") or config.k),
            "input_norm": imported.get("input_norm", "none")}


def load_sae(session: Session):
    """The session's SAE as a torch module (CPU)."""
    from core.discover.sae import sae_from_arrays

    return sae_from_arrays(load_sae_arrays(session), **sae_options(session))
