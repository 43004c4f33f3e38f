"""Exports: the edited full model as a torchvision ``state_dict`` and α_crit tables as CSV.

An exported model is the session's classifier with the edit(s) replayed on its final
``nn.Linear`` (``core.control.edit.edited_model``), saved as a plain ``state_dict``: ``torch.load(...,
weights_only=True)`` or ``safetensors.torch.load_file`` then ``load_state_dict`` into a fresh
``torchvision.models.<arch>(num_classes=C)`` (``core.discover.backbone.build_model``) reproduces it.
Each weight file gets its own JSON sidecar (``<file name>.json``, e.g. ``model.pt.json``) and
``<file name>.README.txt`` saying which edit(s) the file carries, which session it came from,
the class names, the architecture, the input preprocessing and the file's sha256. Files go to
the session's export folder unless a path is given.

Every file is written through :mod:`core.atomic` (temp, fsync, rename). The old sidecar is
removed before the new weights replace the old ones and the new sidecar is renamed in last, so
a reader (or a crash) never pairs a model with the wrong sidecar; :func:`load_exported` checks
the sha256 as well. The session is verified against its checksums before anything is written.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.atomic import WriteFailed, refuse_existing, write_bytes, write_text
from core.control.spec import EditSpec
from core.store.session import Session, require_intact

# what an export builds the model from, checked whole first (the activations it reads for the
# sidecar's accuracy are checked as they are read; the rest of the session is never read)
EXPORT_READS = ("json", "backbone", "sae")

FORMATS = {".pt": "pt", ".pth": "pt", ".safetensors": "safetensors"}
SIDECAR_FORMAT = "salve-tui edited model"


@dataclass
class ExportResult:
    """Where an export went: the weight files, the sidecar and the README."""

    files: list[Path]
    sidecars: list[Path]
    readmes: list[Path]
    metadata: dict[str, Any] = field(default_factory=dict)
    reused: bool = False  # the same weights were exported before: their files were kept

    @property
    def sidecar(self) -> Path:
        return self.sidecars[0]

    @property
    def readme(self) -> Path:
        return self.readmes[0]

    @property
    def written(self) -> list[Path]:
        return [*self.files, *self.sidecars, *self.readmes]

    def to_dict(self) -> dict[str, Any]:
        return {
            "files": [str(p) for p in self.files],
            "sidecar": str(self.sidecar),
            "sidecars": [str(p) for p in self.sidecars],
            "readmes": [str(p) for p in self.readmes],
            "metadata": self.metadata,
            "reused": self.reused,
        }


def sidecar_path(weights: Path) -> Path:
    """``model.pt`` → ``model.pt.json``: one sidecar per weight file, never shared."""
    return weights.with_name(weights.name + ".json")


def readme_path(weights: Path) -> Path:
    return weights.with_name(weights.name + ".README.txt")


def _check_targets(targets: Sequence[Path]) -> None:
    """Refuse folders, existing outputs (unless overwriting is allowed) and foreign sidecar names."""
    for path in targets:
        for target in (path, sidecar_path(path), readme_path(path)):
            refuse_existing(target)
        side = sidecar_path(path)
        if side.exists():
            try:
                ours = json.loads(side.read_text(encoding="utf-8")).get("format") == SIDECAR_FORMAT
            except (OSError, ValueError, AttributeError):
                ours = False
            if not ours:
                raise WriteFailed(f"{side} exists and is not a salve-tui sidecar; it is not replaced. "
                                  "Move it or choose another output name")


def _targets(session: Session, out: str | Path | None, stem: str | None) -> list[Path]:
    """The weight files to write: ``out`` (format from its suffix) or both formats in the
    session's export folder."""
    if out is not None:
        return [check_export_target(out)]
    folder = session.exports_dir
    base = stem or f"{session.name}-edited-{time.strftime('%Y%m%d-%H%M%S')}"
    return [folder / f"{base}.pt", folder / f"{base}.safetensors"]


def check_export_target(out: str | Path) -> Path:
    """Refuse an ``--out`` that is a folder, has an unknown suffix or exists (without --force)."""
    path = Path(out)
    if path.is_dir():
        raise ValueError(f"--out {path} is a folder; give a file name such as {path / 'model.pt'}")
    if path.suffix.lower() not in FORMATS:
        raise ValueError(
            f"cannot tell the export format from '{path.name}': use a .pt, .pth or .safetensors file name"
        )
    _check_targets([path])
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export_edited_model(
    session: Session,
    edits: EditSpec | Sequence[EditSpec] | None = None,
    out: str | Path | None = None,
    stem: str | None = None,
) -> ExportResult:
    """Save the session's model with ``edits`` (default: every recorded edit, in order).

    ``out``: one file whose suffix picks the format (``.pt``/``.pth``/``.safetensors``);
    without it both formats go to ``session.exports_dir`` as ``<stem>.pt`` / ``.safetensors``.
    Without ``out`` and ``stem`` the name is content-addressed (``<session>-edited-<hash12>``,
    the hash over the edited weights and the edit list): exporting the same composition again
    returns the earlier files (``reused=True``) once their recorded SHA-256 still matches.
    """
    from core.control.edit import edited_model
    from core.discover.backbone import final_linear
    from core.workflow.edits import active_edits
    from core.workflow.inputs import load_inputs
    from core.workflow.pipeline import load_model

    if edits is None:
        edits = active_edits(session)
    edits = [edits] if isinstance(edits, EditSpec) else list(edits)
    if not edits:
        raise ValueError(
            "there is no edit to export: pass --feature/--alpha, or record an edit first"
        )
    targets = _targets(session, out, stem)
    _check_targets(targets)  # again for the default names (and anything created meanwhile)
    # never export a model built from damaged weights; the other reads below check what they read
    require_intact(session, EXPORT_READS)
    inputs = load_inputs(session)
    model = load_model(session, "cpu")
    edited = edited_model(model, edits, inputs.D)
    state = {k: v.detach().cpu().contiguous() for k, v in edited.state_dict().items()}
    _, _, head = final_linear(edited)
    head_name = next(name for name, module in edited.named_modules() if module is head)

    weights = state_digest(state)
    content = hashlib.sha256(
        (weights + json.dumps([e.to_dict() for e in edits], sort_keys=True)).encode()
    ).hexdigest()
    if out is None and stem is None:  # content-addressed: the same weights keep their files
        targets = _targets(session, None, f"{session.name}-edited-{content[:12]}")
        reused = _reusable_export(targets, content)
        if reused is not None:
            return reused
        _check_targets(targets)
    payloads = {path: _serialise(state, path, session.config.backbone.arch) for path in targets}
    metadata = _export_metadata(session, inputs, edits, head_name, content, weights)
    sidecars, readmes = _write_export(payloads, metadata)
    return ExportResult(list(targets), sidecars, readmes, metadata)


def _serialise(state: dict[str, Any], path: Path, arch: str) -> bytes:
    """The state dict as the bytes of ``path``'s format (``.pt`` or ``.safetensors``)."""
    import safetensors.torch
    import torch

    if FORMATS[path.suffix.lower()] == "pt":
        buffer = io.BytesIO()
        torch.save(state, buffer)
        return buffer.getvalue()
    return safetensors.torch.save(state, metadata={"format": SIDECAR_FORMAT, "arch": arch})


def _export_metadata(session: Session, inputs: Any, edits: Sequence[EditSpec], head_name: str,
                     content: str, weights: str) -> dict[str, Any]:
    """What the sidecar says: the model, its classes and preprocessing, the edits and, from the
    cached activations, what they do to the test accuracy."""
    import torch
    import torchvision

    from core.discover.data import IMAGENET_MEAN, IMAGENET_STD
    from core.workflow.edits import edited_head

    config = session.config
    W_new, b_new = edited_head(inputs, edits)
    after = torch.addmm(b_new, inputs.A, W_new.T).argmax(1)
    before = inputs.base_predictions
    return {
        "format": SIDECAR_FORMAT,
        "created": time.time(),
        "session": session.name,
        "session_path": str(Path(session.path).resolve()),
        "arch": config.backbone.arch,
        "architecture": torchvision_architecture(config.backbone.arch, inputs.num_classes,
                                                 config.data.image_size),
        "num_classes": inputs.num_classes,
        "class_names": inputs.class_names,
        "image_size": config.data.image_size,
        "normalization": {"mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD)},
        "edited_layer": head_name,
        "edits": [spec.to_dict() for spec in edits],
        "test_accuracy_cached": {
            "before": float((before == inputs.labels).double().mean()),
            "after": float((after == inputs.labels).double().mean()),
        },
        "content_sha256": content,  # weights + edit list: what the default file name carries
        "weights_sha256": weights,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
    }


def _write_export(payloads: dict[Path, bytes], metadata: dict[str, Any]) -> tuple[list[Path], list[Path]]:
    """Write each model file with its README and sidecar (the sidecar last, naming the file's
    SHA-256); returns the sidecars and READMEs."""
    sidecars, readmes = [], []
    for path, data in payloads.items():
        meta = {**metadata, "files": {path.name: {"sha256": hashlib.sha256(data).hexdigest(),
                                                  "bytes": len(data)}}}
        side, readme = sidecar_path(path), readme_path(path)
        side.unlink(missing_ok=True)  # from here until the new one lands, no sidecar: never a wrong one
        write_bytes(path, data, overwrite=True)
        write_text(readme, _readme_text(meta, [path]), overwrite=True)
        write_text(side, json.dumps(meta, indent=2, sort_keys=True), overwrite=True)
        sidecars.append(side)
        readmes.append(readme)
    return sidecars, readmes


def state_digest(state: dict[str, Any]) -> str:
    """SHA-256 over a state dict's names, dtypes, shapes and bytes: equal weights, equal digest
    (independent of how a file format lays them out)."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name]
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def _reusable_export(targets: Sequence[Path], content: str) -> ExportResult | None:
    """The earlier export of exactly these weights at ``targets`` when every file, sidecar and
    README is there and intact (checked against the SHA-256 each sidecar recorded); None means
    write afresh."""
    sidecars, readmes, meta = [], [], {}
    for path in targets:
        side, readme = sidecar_path(path), readme_path(path)
        try:
            meta = json.loads(side.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        recorded = meta.get("files", {}).get(path.name, {}) if isinstance(meta, dict) else {}
        if meta.get("content_sha256") != content or "architecture" not in meta or not readme.is_file() \
                or not path.is_file() \
                or path.stat().st_size != recorded.get("bytes") or _sha256(path) != recorded.get("sha256"):
            return None
        sidecars.append(side)
        readmes.append(readme)
    return ExportResult(list(targets), sidecars, readmes, meta, reused=True)


def folder_size(folder: str | Path) -> tuple[int, int]:
    """``(bytes, files)`` of everything under ``folder`` (0, 0 when it does not exist)."""
    total, count = 0, 0
    for path in Path(folder).rglob("*"):
        if path.is_file():
            total += path.stat().st_size
            count += 1
    return total, count


def torchvision_architecture(arch: str, num_classes: int, image_size: int) -> dict[str, Any]:
    """What rebuilds the exported model with plain torchvision, no salve-tui source needed:
    ``getattr(torchvision.models, builder)(**kwargs)`` then ``load_state_dict``. ``vit_tiny`` is
    a ``VisionTransformer`` of its own size (patch size, depth, heads, width), so those are listed."""
    from core.discover.backbone import VIT_TINY

    if arch == "vit_tiny":
        return {"builder": "VisionTransformer",
                "kwargs": {"image_size": image_size, **VIT_TINY, "num_classes": num_classes}}
    kwargs: dict[str, Any] = {"num_classes": num_classes}
    if arch.startswith("vit_"):
        kwargs["image_size"] = image_size
    return {"builder": arch, "kwargs": {"weights": None, **kwargs}}


def builder_call(architecture: dict[str, Any]) -> str:
    """``torchvision.models.VisionTransformer(image_size=32, patch_size=8, …)`` as Python text."""
    args = ", ".join(f"{k}={v!r}" for k, v in architecture["kwargs"].items())
    return f"torchvision.models.{architecture['builder']}({args})"


def _readme_text(meta: dict[str, Any], files: Sequence[Path]) -> str:
    from core.workflow.edits import describe_spec

    names = ", ".join(p.name for p in files)
    edits = "\n".join(f"  {i + 1}. {describe_spec(EditSpec.from_dict(e), long=True)}"
                      for i, e in enumerate(meta["edits"]))
    arch = meta["arch"]
    builder = builder_call(meta["architecture"])
    acc = meta["test_accuracy_cached"]
    return (
        f"Edited {arch} classifier exported by salve-tui from session '{meta['session']}'.\n\n"
        f"Files: {names}\n"
        f"Edits applied to the final linear layer '{meta['edited_layer']}', in order:\n{edits}\n\n"
        f"Classes ({meta['num_classes']}): {', '.join(meta['class_names'])}\n"
        f"Input: {meta['image_size']} px RGB, scaled to [0, 1] then normalised with "
        f"mean {meta['normalization']['mean']} and std {meta['normalization']['std']}.\n"
        f"Test accuracy on the session's cached activations: {acc['before']:.4f} before, "
        f"{acc['after']:.4f} after the edit.\n\n"
        "Load it:\n"
        f"  model = {builder}\n"
        "  model.load_state_dict(torch.load('FILE.pt', weights_only=True))\n"
        "  # or: model.load_state_dict(safetensors.torch.load_file('FILE.safetensors'))\n\n"
        "The JSON sidecar holds the same information in machine-readable form.\n"
    )


def load_exported(path: str | Path) -> Any:
    """Rebuild an exported edited model from its weight file and sidecar (eval mode, CPU)."""
    import safetensors.torch
    import torch

    from core.discover.backbone import build_model

    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise ValueError(f"'{path.name}' is not a .pt/.pth/.safetensors export")
    if not path.exists():
        raise FileNotFoundError(f"exported model {path} does not exist")
    sidecar = sidecar_path(path)
    if not sidecar.exists():
        legacy = path.with_name(path.stem + ".json")  # exports before per-file sidecars
        if not legacy.exists():
            raise FileNotFoundError(
                f"{path.name} has no sidecar {sidecar.name}: it says which architecture to build"
            )
        sidecar = legacy
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    except ValueError:
        raise ValueError(f"sidecar {sidecar} is not valid JSON; export the model again") from None
    entry = (meta.get("files") or {}).get(path.name)
    if entry is None or entry.get("sha256") != _sha256(path):
        raise ValueError(
            f"{sidecar.name} does not describe this {path.name} (sha256 differs or is missing): the export "
            "was interrupted or the files were mixed up; export the model again"
        )
    model = build_model(meta["arch"], meta["num_classes"], "none", meta["image_size"])
    if FORMATS[path.suffix.lower()] == "pt":
        state = torch.load(path, map_location="cpu", weights_only=True)
    else:
        state = safetensors.torch.load_file(str(path))
    model.load_state_dict(state)
    return model.eval()


# ----------------------------------------------------------------------------- tables


def alpha_crit_csv_paths(path: str | Path, samples_path: str | Path | None = None) -> tuple[Path, Path]:
    """The summary CSV and the per-sample CSV beside it; refused now if either cannot be written."""
    path = Path(path)
    samples = Path(samples_path) if samples_path else path.with_name(path.stem + ".samples.csv")
    for target in (path, samples):
        refuse_existing(target)
    return path, samples


def export_alpha_crit_csv(
    results: Sequence[Any],
    class_names: Sequence[str],
    path: str | Path,
    samples_path: str | Path | None = None,
) -> tuple[Path, Path]:
    """Write the per-class summary to ``path`` and the per-sample table beside it
    (``<stem>.samples.csv`` unless ``samples_path``). Rows carry the class name too."""
    from core.control.alpha_crit_csv import write_csv

    if not results:
        raise ValueError("no α_crit results to export; run `salve alpha-crit` first")
    path, samples = alpha_crit_csv_paths(path, samples_path)
    summary_rows = []
    for r in results:
        row = r.summary_row()
        summary_rows.append({"class": row.pop("class"), "class_name": class_names[r.target_class],
                             **row})
    sample_rows = [
        {"class_name": class_names[r.target_class], **row} for r in results for row in r.sample_rows()
    ]
    write_csv(path, summary_rows)
    write_csv(samples, sample_rows)
    return path, samples
