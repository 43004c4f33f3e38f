"""Move SAE dictionaries in and out of a session in SAELens' format (issue: SAE interop).

``export_saelens`` writes the session's SAE as ``cfg.json`` + ``sae_weights.safetensors`` that
SAELens 6's ``SAE.load_from_disk`` runs exactly like the session; ``import_sae`` replaces the
session's SAE stage with a dictionary trained elsewhere, encoding as SAELens' ``encode`` does,
records where it came from, and leaves the rankings stage stale so SALVE runs on the imported
features after ``salve run SESSION rankings``. Weights are read with safetensors only: a pickle
(``.pt``, ``.bin``, …) is refused unread.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from core.atomic import refuse_existing, write_bytes, write_text
from core.discover.sae_interop import (
    CFG_FILE,
    L1_LATENT_MAP,
    WEIGHTS_FILE,
    InteropError,
    from_saelens,
    to_saelens,
)
from core.discover.sae_kinds import EXACT_ZERO_KINDS
from core.store.limits import JSONTooDeep, loads_bounded
from core.store.session import Session, SessionError
from core.workflow.pipeline import (
    SAE_IMPORT_KEY,
    _mark_downstream_stale,
    load_activations,
    load_sae_arrays,
    sae_options,
)

#: Files that hold pickled tensors: never loaded (unpickling runs arbitrary code).
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".pkl", ".pickle", ".ckpt")
#: Largest cfg.json read (SAELens writes a few kB).
CFG_MAX_BYTES = 1 << 20


def export_saelens(session: Session, out_dir: str | Path, force: bool = False) -> dict[str, Any]:
    """Write the session's SAE to ``out_dir`` in SAELens 6's layout; returns paths and notes."""
    weights = load_sae_arrays(session)
    options = sae_options(session)
    imported = session.read_json(SAE_IMPORT_KEY, None) or {}
    tensors, cfg = to_saelens(
        weights, options["kind"], options["k"], options["input_norm"],
        apply_b_dec_to_input=bool(imported.get("apply_b_dec_to_input", False)),
        metadata={"model_name": session.config.backbone.arch, "hook_name": "classifier_input",
                  "salve_session": session.name},
    )
    out = Path(out_dir)
    targets = write_saelens(out, tensors, cfg, force=force)
    notes = []
    if options["kind"] == "l1":
        notes.append(f"the linear SAE is written as a ReLU dictionary of {cfg['d_sae']} latents: "
                     f"{L1_LATENT_MAP}")
    return {"folder": str(out), "files": [str(p) for p in targets], "d_in": cfg["d_in"],
            "d_sae": cfg["d_sae"], "kind": options["kind"], "architecture": cfg["architecture"],
            "notes": notes}


def write_saelens(out_dir: str | Path, tensors: dict[str, np.ndarray], cfg: dict[str, Any],
                  force: bool = False) -> list[Path]:
    """``cfg.json`` and ``sae_weights.safetensors`` in ``out_dir`` (each temp file, fsync, rename)."""
    from safetensors.numpy import save as save_safetensors

    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise InteropError(f"{out} is a file; give a folder for {CFG_FILE} and {WEIGHTS_FILE}")
    targets = [out / CFG_FILE, out / WEIGHTS_FILE]
    for path in targets:
        refuse_existing(path, overwrite=force)
    out.mkdir(parents=True, exist_ok=True)
    # Weights first, config last: a folder with a cfg.json always has the weights it describes.
    write_bytes(targets[1], save_safetensors(tensors), overwrite=True)
    write_text(targets[0], json.dumps(cfg, indent=2, sort_keys=True) + "\n", overwrite=True)
    return targets


def _weights_path(source: Path) -> Path:
    """The safetensors file of a folder or file argument; pickles are named and refused."""
    if source.is_dir():
        if (source / WEIGHTS_FILE).is_file():
            return source / WEIGHTS_FILE
        pickles = sorted(p.name for p in source.iterdir() if p.suffix.lower() in PICKLE_SUFFIXES)
        if pickles:
            raise InteropError(_pickle_message(source / pickles[0]))
        raise InteropError(f"no {WEIGHTS_FILE} in {source}: give a SAELens folder (with {CFG_FILE} "
                           f"and {WEIGHTS_FILE}) or a .safetensors file")
    if source.suffix.lower() in PICKLE_SUFFIXES:
        raise InteropError(_pickle_message(source))
    if not source.is_file():
        raise InteropError(f"{source} does not exist: give a SAELens folder (with {CFG_FILE} and "
                           f"{WEIGHTS_FILE}) or a .safetensors file")
    return source


def _pickle_message(path: Path) -> str:
    return (f"{path} is a pickle, which is never loaded here (unpickling can run code). Save it as "
            f"safetensors first, e.g. in SAELens: SAE.load_from_disk(...).save_model(dir)")


def _load_safetensors(path: Path) -> tuple[dict[str, np.ndarray], set[str]]:
    """Float tensors as numpy (bfloat16/float16 widened to float32) and the dtypes found."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        raw = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise InteropError(f"{path} is not a readable safetensors file ({exc})") from None
    not_float = sorted(name for name, t in raw.items() if not t.is_floating_point())
    if not_float:
        raise InteropError(f"{', '.join(not_float)} in {path.name} are not floating-point tensors")
    dtypes = {str(t.dtype).removeprefix("torch.") for t in raw.values()}
    tensors = {name: (t if t.dtype == torch.float64 else t.float()).numpy() for name, t in raw.items()}
    return tensors, dtypes


def _read_cfg(cfg_path: Path) -> Any:
    """``cfg.json`` parsed with the depth and size limit: a file from elsewhere nested or sized
    to exhaust the parser is one clear message, not a RecursionError."""
    try:
        with open(cfg_path, "rb") as handle:
            raw = handle.read(CFG_MAX_BYTES + 1)  # never more than the limit, whatever the size
        if len(raw) > CFG_MAX_BYTES:
            raise InteropError(f"{cfg_path} is over {CFG_MAX_BYTES >> 10} kB, more than this tool reads; "
                               "a SAELens cfg.json is a few kB: check that this is the SAE's config")
        return loads_bounded(raw.decode("utf-8"), str(cfg_path), max_bytes=CFG_MAX_BYTES)
    except JSONTooDeep as exc:
        raise InteropError(f"{exc}; this is not a SAELens cfg.json (SAELens writes a few kB, "
                           "nested 2-3 levels)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InteropError(f"{cfg_path} is not valid JSON ({exc})") from None


def read_saelens(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any], Path, set[str]]:
    """Tensors, config, weights path and stored dtypes of a SAELens folder or ``.safetensors`` file."""
    weights_path = _weights_path(Path(path))
    cfg_path = weights_path.with_name(CFG_FILE)
    if not cfg_path.is_file():
        raise InteropError(f"no {CFG_FILE} beside {weights_path.name}: it says how the SAE encodes "
                           "(architecture, d_in, d_sae); SAELens writes it with save_model")
    cfg = _read_cfg(cfg_path)
    if not isinstance(cfg, dict):
        raise InteropError(f"{cfg_path} must hold a JSON object")
    tensors, dtypes = _load_safetensors(weights_path)
    return tensors, cfg, weights_path, dtypes


def import_sae(session: Session, path: str | Path, input_scale: float | None = None) -> dict[str, Any]:
    """Replace the session's SAE with the dictionary at ``path``; the rankings become stale.

    Everything is checked before anything is written: a refused dictionary leaves the session as it was.
    """
    from core.discover.sae import explained_variance, sae_from_arrays, sparsity_metrics

    stages = session.stages()
    if stages.get("activations") is None or stages["activations"].state != "done":
        raise SessionError(f"session {session.name} has no cached activations yet; "
                           f"run `salve run {session.name} activations` before importing an SAE")
    tensors, cfg, weights_path, dtypes = read_saelens(path)
    train = load_activations(session, "train")["a"]
    imported = from_saelens(tensors, cfg, int(train.shape[1]), input_scale, dtypes)
    sae = sae_from_arrays(imported.weights, kind=imported.kind, k=imported.k or 1,
                          input_norm=imported.input_norm)
    import torch

    with torch.no_grad():
        a = torch.from_numpy(np.ascontiguousarray(train, dtype=np.float32))
        u, a_hat = sae(a)
    ev = explained_variance(a, a_hat)
    sparsity = sparsity_metrics(u, exact_zero=imported.kind in EXACT_ZERO_KINDS)
    record = {"source": str(weights_path.resolve()), "kind": imported.kind, "k": imported.k,
              "input_norm": imported.input_norm, "apply_b_dec_to_input": imported.apply_b_dec_to_input,
              "architecture": imported.cfg["architecture"], "d_in": imported.d_in,
              "d_sae": imported.d_sae, "normalize_activations": imported.cfg["normalize_activations"],
              "input_scale": input_scale, "notes": imported.notes, "cfg": imported.cfg}
    summary = {"kind": imported.kind, "hidden": imported.d_sae, "engine": "imported",
               "explained_variance": ev, **{k: float(v) for k, v in sparsity.items()}}
    with session.transaction() as tx:
        tx.write_arrays("sae/weights", imported.weights)
        tx.delete("sae/history")
        tx.delete("sae/checkpoint")
        tx.write_json(SAE_IMPORT_KEY, record)
        tx.update_json("summary", sae=summary)
        tx.set_stage("sae", "done", f"imported from {weights_path.name}: {imported.kind}, "
                     f"h={imported.d_sae}, EV {ev:.3f} on the training activations", imported=True)
        _mark_downstream_stale(tx, "sae", stages)
    return {"session": session.name, **{k: v for k, v in record.items() if k != "cfg"},
            "explained_variance": ev, **sparsity}
