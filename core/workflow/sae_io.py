"""Move SAE dictionaries in and out of a session in SAELens' format (issue: SAE interop).

``export_saelens`` writes the session's SAE as ``cfg.json`` + ``sae_weights.safetensors``;
``import_sae`` replaces the session's SAE stage with a dictionary trained elsewhere (checked
against the session's classifier input), records where it came from, and leaves the rankings
stage stale so SALVE runs on the imported features after ``salve run SESSION rankings``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from core.atomic import refuse_existing, write_bytes, write_text
from core.discover.sae_interop import (
    CFG_FILE,
    WEIGHTS_FILE,
    InteropError,
    expected_average_scale,
    from_saelens,
    to_saelens,
)
from core.store.session import Session, SessionError
from core.workflow.pipeline import (
    SAE_IMPORT_KEY,
    _mark_downstream_stale,
    load_activations,
    load_sae_arrays,
    sae_kind,
)


def export_saelens(session: Session, out_dir: str | Path, force: bool = False) -> dict[str, Any]:
    """Write the session's SAE to ``out_dir`` in SAELens naming; returns the written paths."""
    from safetensors.numpy import save as save_safetensors

    weights = load_sae_arrays(session)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InteropError(f"{out} is a file; give a folder for cfg.json and {WEIGHTS_FILE}")
    targets = [out / CFG_FILE, out / WEIGHTS_FILE]
    for path in targets:
        refuse_existing(path, overwrite=force)
    out.mkdir(parents=True, exist_ok=True)
    config = session.config.sae
    kind = sae_kind(session)
    tensors, cfg = to_saelens(
        weights, kind, config.k if kind == "topk" else None,
        {"model_name": session.config.backbone.arch, "salve_session": session.name},
    )
    # Weights first, config last: a folder with a cfg.json always has the weights it describes.
    write_bytes(targets[1], save_safetensors(tensors), overwrite=True)
    write_text(targets[0], json.dumps(cfg, indent=2, sort_keys=True) + "\n", overwrite=True)
    return {"folder": str(out), "files": [str(p) for p in targets], "d_in": cfg["d_in"],
            "d_sae": cfg["d_sae"], "activation_fn": cfg["activation_fn"]}


def read_saelens(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any], Path]:
    """Tensors and config from a SAELens folder, or from a ``.safetensors`` file (config beside it)."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    source = Path(path)
    if source.is_dir():
        weights_path, cfg_path = source / WEIGHTS_FILE, source / CFG_FILE
    else:
        weights_path, cfg_path = source, source.with_name(CFG_FILE)
    if not weights_path.is_file():
        raise InteropError(f"no {weights_path.name} in {weights_path.parent}: give a SAELens folder "
                           f"(with {CFG_FILE} and {WEIGHTS_FILE}) or a .safetensors file")
    try:
        tensors = load_file(str(weights_path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise InteropError(f"{weights_path} is not a readable safetensors file ({exc})") from None
    cfg: dict[str, Any] = {}
    if cfg_path.is_file():
        try:
            cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise InteropError(f"{cfg_path} is not valid JSON ({exc})") from None
        if not isinstance(cfg, dict):
            raise InteropError(f"{cfg_path} must hold a JSON object")
    return tensors, cfg, weights_path


def import_sae(session: Session, path: str | Path) -> dict[str, Any]:
    """Replace the session's SAE with the dictionary at ``path``; the rankings become stale."""
    from core.discover.sae import explained_variance, sae_from_arrays, sparsity_metrics

    stages = session.stages()
    if stages.get("activations") is None or stages["activations"].state != "done":
        raise SessionError(f"session {session.name} has no cached activations yet; "
                           f"run `salve run {session.name} activations` before importing an SAE")
    tensors, cfg, weights_path = read_saelens(path)
    train = load_activations(session, "train")["a"]
    scale = None
    if str(cfg.get("normalize_activations", "none")) == "expected_average_only_in":
        scale = expected_average_scale(train)
    imported = from_saelens(tensors, cfg, int(train.shape[1]), input_scale=scale)
    sae = sae_from_arrays(imported.weights, kind=imported.kind)
    import torch

    with torch.no_grad():
        a = torch.from_numpy(np.ascontiguousarray(train, dtype=np.float32))
        u, a_hat = sae(a)
    ev = explained_variance(a, a_hat)
    sparsity = sparsity_metrics(u, exact_zero=imported.kind == "relu")
    record = {"source": str(weights_path.resolve()), "kind": imported.kind, "d_in": imported.d_in,
              "d_sae": imported.d_sae, "normalize_activations": cfg.get("normalize_activations", "none"),
              "input_scale": scale, "cfg": imported.cfg}
    summary = {"kind": imported.kind, "hidden": imported.d_sae, "engine": "imported",
               "explained_variance": ev, **{k: float(v) for k, v in sparsity.items()}}
    with session.transaction() as tx:
        tx.write_arrays("sae/weights", imported.weights)
        tx.delete("sae/history")
        tx.delete("sae/checkpoint")
        tx.write_json(SAE_IMPORT_KEY, record)
        tx.update_json("summary", sae=summary)
        tx.set_stage("sae", "done", f"imported from {weights_path.name}: h={imported.d_sae}, "
                     f"EV {ev:.3f} on the training activations", imported=True)
        _mark_downstream_stale(tx, "sae", stages)
    return {"session": session.name, **{k: v for k, v in record.items() if k != "cfg"},
            "explained_variance": ev, **sparsity}
