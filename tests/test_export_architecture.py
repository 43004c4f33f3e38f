"""Every weight sidecar says how to rebuild the model with plain torchvision (no salve-tui code):
``getattr(torchvision.models, builder)(**kwargs)`` then a strict ``load_state_dict``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torchvision
from conftest import tiny_config

from core.store.session import Session
from core.workflow.edits import build_spec
from core.workflow.export import export_edited_model, load_exported
from core.workflow.inputs import load_inputs
from core.workflow.pipeline import run_pipeline


def rebuild_plainly(weights: Path) -> torch.nn.Module:
    meta = json.loads(weights.with_name(weights.name + ".json").read_text())
    arch = meta["architecture"]
    model = getattr(torchvision.models, arch["builder"])(**arch["kwargs"])
    model.load_state_dict(torch.load(weights, weights_only=True), strict=True)
    return model.eval()


@pytest.mark.parametrize("arch", ["vit_tiny", "resnet18"])
def test_sidecar_rebuilds_the_model_with_plain_torchvision(tmp_path: Path, arch: str) -> None:
    with Session.create(tmp_path / "s.h5", tiny_config("s", arch=arch, sae_epochs=2)) as session:
        run_pipeline(session, ["data", "backbone", "activations", "sae", "rankings"])
        spec = build_spec(load_inputs(session), features=[1], alpha=1.0)
        result = export_edited_model(session, spec, out=tmp_path / "edited.pt")
        size = session.read_json("config")["data"]["image_size"]
    meta = json.loads(result.sidecar.read_text())
    if arch == "vit_tiny":  # its own size: every number a VisionTransformer needs is recorded
        assert meta["architecture"]["builder"] == "VisionTransformer"
        assert {"patch_size", "num_layers", "num_heads", "hidden_dim", "mlp_dim", "image_size"} <= set(
            meta["architecture"]["kwargs"])
    plain = rebuild_plainly(result.files[0])
    ours = load_exported(result.files[0])
    x = torch.rand(3, 3, size, size)
    with torch.no_grad():
        assert torch.equal(plain(x), ours(x))
    assert f"torchvision.models.{meta['architecture']['builder']}(" in result.readme.read_text()
