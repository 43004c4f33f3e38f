"""Export round trip: an edited model saved to disk, loaded into a fresh torchvision model and
run on the test images, predicts exactly what the cached activations predict under the edit."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import safetensors.torch
import torch

from core.discover.backbone import build_model
from core.store.session import Session
from core.workflow.alpha_crit import run_alpha_crit
from core.workflow.edits import build_spec, edited_head, record_edit
from core.workflow.export import export_alpha_crit_csv, export_edited_model, load_exported
from core.workflow.inputs import ControlInputs, load_inputs
from core.workflow.pipeline import load_data, run_pipeline

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import tiny_config  # noqa: E402

from core.store.session import copy_session


@pytest.fixture
def session(tmp_path: Path, built_session_path: Path):
    path = tmp_path / "tiny.h5"
    copy_session(built_session_path, path)
    with Session.open(path) as s:
        yield s


def _image_logits(model: torch.nn.Module, session: Session) -> torch.Tensor:
    source = load_data(session.config).test
    with torch.no_grad():
        return torch.cat([model(images) for images, _, _ in source.iter_batches(16)])


def _strong_edits(x: ControlInputs) -> list:
    """A SALVE suppression strong enough to change predictions, then a steering edit."""
    for alpha in (1.0, 2.0, 4.0, 8.0, 16.0):
        salve = build_spec(x, target_class=0, alpha=alpha)
        W, b = edited_head(x, salve)
        if bool(((x.A @ W.T + b).argmax(1) != x.base_predictions).any()):
            break
    return [salve, build_spec(x, "steer", target_class=1, alpha=0.5)]


def _check_round_trip(session: Session, out_dir: Path | None = None) -> None:
    x = load_inputs(session)
    edits = _strong_edits(x)
    W_new, b_new = edited_head(x, edits)
    cached_logits = x.A @ W_new.T + b_new
    expected = cached_logits.argmax(1)
    assert bool((expected != x.base_predictions).any()), "the edit must change some prediction"

    result = export_edited_model(session, edits, stem="roundtrip")
    assert {p.suffix for p in result.files} == {".pt", ".safetensors"}
    assert all(p.parent == session.exports_dir for p in result.files)
    arch, C = session.config.backbone.arch, x.num_classes
    pt_file = next(p for p in result.files if p.suffix == ".pt")
    st_file = next(p for p in result.files if p.suffix == ".safetensors")
    model = build_model(arch, C, "none", session.config.data.image_size).eval()
    model.load_state_dict(torch.load(pt_file, map_location="cpu", weights_only=True))
    logits = _image_logits(model, session)
    assert torch.equal(logits.argmax(1), expected)
    torch.testing.assert_close(logits, cached_logits, rtol=1e-4, atol=1e-4)
    # The safetensors file holds the same tensors (images already checked through the .pt).
    pt_state = model.state_dict()
    st_state = safetensors.torch.load_file(str(st_file))
    assert st_state.keys() == pt_state.keys()
    assert all(torch.equal(st_state[k], pt_state[k]) for k in pt_state)

    meta = json.loads(result.sidecar.read_text())
    assert meta["arch"] == arch and meta["num_classes"] == C
    assert meta["class_names"] == x.class_names
    assert meta["session"] == session.name
    assert [e["method"] for e in meta["edits"]] == ["salve", "steer"]
    assert meta["test_accuracy_cached"]["after"] == pytest.approx(
        float((expected == x.labels).double().mean())
    )
    assert "SALVE suppress" in result.readme.read_text()
    reloaded = load_exported(st_file).state_dict()
    assert all(torch.equal(reloaded[k], pt_state[k]) for k in pt_state)


def test_resnet_export_round_trip(session: Session) -> None:
    _check_round_trip(session)


def test_vit_export_round_trip(tmp_path: Path) -> None:
    with Session.create(tmp_path / "vit.h5", tiny_config("vit", arch="vit_tiny", sae_epochs=2)) as s:
        run_pipeline(s)
        _check_round_trip(s)


def test_export_to_a_named_file_and_bad_suffix(session: Session, tmp_path: Path) -> None:
    spec = build_spec(load_inputs(session), features=[2], alpha=1.0)
    result = export_edited_model(session, spec, out=tmp_path / "model.safetensors")
    assert result.files == [tmp_path / "model.safetensors"]
    assert result.sidecar == tmp_path / "model.safetensors.json"
    with pytest.raises(ValueError, match=r"\.pt, \.pth or \.safetensors"):
        export_edited_model(session, spec, out=tmp_path / "model.bin")
    with pytest.raises(ValueError, match="no edit to export"):
        export_edited_model(session)  # nothing recorded yet
    record_edit(session, spec)
    recorded = export_edited_model(session, out=tmp_path / "recorded.pt")
    assert recorded.metadata["edits"] == [spec.to_dict()]


def test_alpha_crit_csv_tables(session: Session, tmp_path: Path) -> None:
    x = load_inputs(session)
    results = run_alpha_crit(session, target_class=[0, 3], record=False)
    summary, samples = export_alpha_crit_csv(results, x.class_names, tmp_path / "t.csv")
    rows = summary.read_text().splitlines()
    assert len(rows) == 3 and rows[1].startswith(f"0,{x.class_names[0]},")
    sample_rows = samples.read_text().splitlines()
    n = int(((x.labels == 0) | (x.labels == 3)).sum())
    assert len(sample_rows) == 1 + n
    assert "alpha_crit_numerical" in sample_rows[0]
