"""Exports: the edited full model as a torchvision ``state_dict`` and α_crit tables as CSV.

An exported model is the session's classifier with the edit(s) replayed on its final
``nn.Linear`` (``core.control.edit.edited_model``), saved as a plain ``state_dict``: ``torch.load(...,
weights_only=True)`` or ``safetensors.torch.load_file`` then ``load_state_dict`` into a fresh
``torchvision.models.<arch>(num_classes=C)`` (``core.discover.backbone.build_model``) reproduces it.
A JSON sidecar (``<stem>.json``) and a ``<stem>.README.txt`` say which edit(s) the file
carries, which session it came from, the class names, the architecture and the input
preprocessing. Files go to the session's export folder unless a path is given.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.control.spec import EditSpec
from core.store.session import Session

FORMATS = {".pt": "pt", ".pth": "pt", ".safetensors": "safetensors"}
SIDECAR_FORMAT = "salve-tui edited model"


@dataclass
class ExportResult:
    """Where an export went: the weight files, the sidecar and the README."""

    files: list[Path]
    sidecar: Path
    readme: Path
    metadata: dict[str, Any] = field(default_factory=dict)
    reused: bool = False  # the same weights were exported before: their files were kept

    def to_dict(self) -> dict[str, Any]:
        return {
            "files": [str(p) for p in self.files],
            "sidecar": str(self.sidecar),
            "readme": str(self.readme),
            "metadata": self.metadata,
            "reused": self.reused,
        }


def _targets(session: Session, out: str | Path | None, stem: str | None) -> list[Path]:
    """The weight files to write: ``out`` (format from its suffix) or both formats in the
    session's export folder."""
    if out is not None:
        out = Path(out)
        if out.suffix.lower() not in FORMATS:
            raise ValueError(
                f"cannot tell the export format from '{out.name}': use a .pt, .pth or "
                ".safetensors file name"
            )
        return [out]
    folder = session.exports_dir
    base = stem or f"{session.name}-edited-{time.strftime('%Y%m%d-%H%M%S')}"
    return [folder / f"{base}.pt", folder / f"{base}.safetensors"]


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
    import safetensors.torch
    import torch
    import torchvision

    from core.control.edit import edited_model
    from core.discover.backbone import final_linear
    from core.discover.data import IMAGENET_MEAN, IMAGENET_STD
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
    inputs = load_inputs(session)
    model = load_model(session, "cpu")
    edited = edited_model(model, edits, inputs.D)
    state = {k: v.detach().cpu().contiguous() for k, v in edited.state_dict().items()}
    _, _, head = final_linear(edited)
    head_name = next(name for name, module in edited.named_modules() if module is head)

    config = session.config
    weights = state_digest(state)
    content = hashlib.sha256(
        (weights + json.dumps([e.to_dict() for e in edits], sort_keys=True)).encode()
    ).hexdigest()
    if out is None and stem is None:  # content-addressed: the same weights keep their files
        stem = f"{session.name}-edited-{content[:12]}"
        reused = _reusable_export(session.exports_dir / f"{stem}.json", content)
        if reused is not None:
            return reused
    targets = _targets(session, out, stem)
    for path in targets:
        path.parent.mkdir(parents=True, exist_ok=True)
        if FORMATS[path.suffix.lower()] == "pt":
            torch.save(state, path)
        else:
            safetensors.torch.save_file(
                state, str(path), metadata={"format": SIDECAR_FORMAT, "arch": config.backbone.arch}
            )

    # Accuracy from the cached activations, so the sidecar says what the edit does.
    from core.workflow.edits import edited_head

    W_new, b_new = edited_head(inputs, edits)
    after = torch.addmm(b_new, inputs.A, W_new.T).argmax(1)
    before = inputs.base_predictions
    metadata: dict[str, Any] = {
        "format": SIDECAR_FORMAT,
        "created": time.time(),
        "session": session.name,
        "session_path": str(Path(session.path).resolve()),
        "arch": config.backbone.arch,
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
        "files": {p.name: {"sha256": _sha256(p), "bytes": p.stat().st_size} for p in targets},
        "content_sha256": content,  # weights + edit list: what the default file name carries
        "weights_sha256": weights,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
    }
    base = targets[0].with_suffix("")
    sidecar = base.with_name(base.name + ".json")
    readme = base.with_name(base.name + ".README.txt")
    sidecar.write_text(json.dumps(metadata, indent=2, sort_keys=True), encoding="utf-8")
    readme.write_text(_readme_text(metadata, targets), encoding="utf-8")
    return ExportResult(list(targets), sidecar, readme, metadata)


def state_digest(state: dict[str, Any]) -> str:
    """SHA-256 over a state dict's names, dtypes, shapes and bytes: equal weights, equal digest
    (independent of how a file format lays them out)."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name]
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def _reusable_export(sidecar: Path, content: str) -> ExportResult | None:
    """The earlier export at ``sidecar`` when it holds exactly these weights and its files are
    intact (checked against the SHA-256 it recorded); None means write afresh."""
    try:
        meta = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if meta.get("content_sha256") != content:
        return None
    files = [sidecar.with_name(name) for name in sorted(meta.get("files", {}))]
    for path in files:
        recorded = meta["files"][path.name]
        if not path.is_file() or path.stat().st_size != recorded.get("bytes") \
                or _sha256(path) != recorded.get("sha256"):
            return None
    readme = sidecar.with_name(sidecar.name[: -len(".json")] + ".README.txt")
    if not files or not readme.is_file():
        return None
    return ExportResult(files, sidecar, readme, meta, reused=True)


def folder_size(folder: str | Path) -> tuple[int, int]:
    """``(bytes, files)`` of everything under ``folder`` (0, 0 when it does not exist)."""
    total, count = 0, 0
    for path in Path(folder).rglob("*"):
        if path.is_file():
            total += path.stat().st_size
            count += 1
    return total, count


def _describe(spec: EditSpec) -> str:
    if spec.method == "salve":
        feats = ", ".join(str(k) for k in spec.features)
        return f"SALVE {spec.mode} feature(s) {feats}, α = {spec.alpha:g}, {spec.modulation} modulation"
    if spec.method == "rome":
        return (f"ROME rank-one edit of class {spec.extra['target_class']}: logit at the key "
                f"({spec.extra.get('key_source', 'class_mean')}) set to {spec.alpha:g}")
    feats = ", ".join(str(k) for k in spec.features)
    return f"SAE steering ({spec.mode}) along feature(s) {feats}, β = {spec.alpha:g} (bias shift)"


def _readme_text(meta: dict[str, Any], files: Sequence[Path]) -> str:
    names = ", ".join(p.name for p in files)
    edits = "\n".join(f"  {i + 1}. {_describe(EditSpec.from_dict(e))}"
                      for i, e in enumerate(meta["edits"]))
    arch = meta["arch"]
    builder = (
        f"torchvision.models.{arch}(num_classes={meta['num_classes']})"
        if arch != "vit_tiny"
        else "core.discover.backbone.build_model('vit_tiny', num_classes, image_size=...)"
    )
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
    sidecar = path.with_suffix("").with_name(path.stem + ".json")
    if not sidecar.exists():
        raise FileNotFoundError(
            f"{path.name} has no sidecar {sidecar.name}: it says which architecture to build"
        )
    meta = json.loads(sidecar.read_text(encoding="utf-8"))
    model = build_model(meta["arch"], meta["num_classes"], "none", meta["image_size"])
    if FORMATS[path.suffix.lower()] == "pt":
        state = torch.load(path, map_location="cpu", weights_only=True)
    else:
        state = safetensors.torch.load_file(str(path))
    model.load_state_dict(state)
    return model.eval()


# ----------------------------------------------------------------------------- tables


def export_alpha_crit_csv(
    results: Sequence[Any],
    class_names: Sequence[str],
    path: str | Path,
    samples_path: str | Path | None = None,
) -> tuple[Path, Path]:
    """Write the per-class summary to ``path`` and the per-sample table beside it
    (``<stem>.samples.csv`` unless ``samples_path``). Rows carry the class name too."""
    from core.control.alpha_crit import write_csv

    if not results:
        raise ValueError("no α_crit results to export; run `salve alpha-crit` first")
    path = Path(path)
    samples = Path(samples_path) if samples_path else path.with_name(path.stem + ".samples.csv")
    path.parent.mkdir(parents=True, exist_ok=True)
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
