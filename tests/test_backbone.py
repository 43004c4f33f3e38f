"""Backbones: building by name, head replacement, safe checkpoint loading, training/resume."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from core.config import BackboneConfig
from core.discover.backbone import (
    BackboneError,
    TrainState,
    build_model,
    final_linear,
    load_checkpoint,
    train_backbone,
)
from core.jobs import CancelToken, JobCancelled, JobFailed


class TensorSource:
    """A minimal in-memory image source with the ImageSource batching interface."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.labels)

    def iter_batches(self, batch_size, indices=None, shuffle=False, generator=None, num_workers=0):
        order = np.arange(len(self)) if indices is None else np.asarray(indices)
        if shuffle:
            order = order[torch.randperm(len(order), generator=generator).numpy()]
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            yield self.images[idx], self.labels[idx], idx


def _toy_source(n: int = 24, size: int = 32, seed: int = 0) -> TensorSource:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    images = torch.randn(n, 3, size, size, generator=g) * 0.3
    images[:, 0] += labels[:, None, None].float()  # class visible in the red channel
    return TensorSource(images, labels)


@pytest.mark.parametrize(
    ("arch", "head"),
    [("resnet18", "fc"), ("vit_tiny", "head"), ("mobilenet_v3_small", "3")],
)
def test_build_replaces_head(arch: str, head: str) -> None:
    model = build_model(arch, 7, image_size=32)
    _, attr, layer = final_linear(model)
    assert attr == head and layer.out_features == 7
    assert model.eval()(torch.zeros(1, 3, 32, 32)).shape == (1, 7)


def test_unknown_arch_and_too_few_classes() -> None:
    with pytest.raises(BackboneError, match="unknown architecture 'resnet19'"):
        build_model("resnet19", 10)
    with pytest.raises(BackboneError, match="at least 2 classes"):
        build_model("resnet18", 1)


def test_checkpoint_round_trip_and_head_swap(tmp_path: Path) -> None:
    source = build_model("resnet18", 5, seed=1)
    path = tmp_path / "model.pt"
    torch.save(source.state_dict(), path)
    same = build_model("resnet18", 5, weights=str(path), seed=2)
    for (k, v), w in zip(source.state_dict().items(), same.state_dict().values(), strict=True):
        assert torch.equal(v, w), k
    with pytest.raises(BackboneError, match="classify 5 classes but the dataset has 3"):
        build_model("resnet18", 3, weights=str(path), allow_new_head=False)
    swapped = build_model("resnet18", 3, weights=str(path), seed=2)
    assert torch.equal(swapped.conv1.weight, source.conv1.weight)
    assert swapped.fc.out_features == 3
    wrapped = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, wrapped)
    assert torch.equal(build_model("resnet18", 5, weights=str(wrapped)).fc.weight, source.fc.weight)
    st = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in source.state_dict().items()}, str(st))
    assert torch.equal(build_model("resnet18", 5, weights=str(st)).fc.bias, source.fc.bias)


class Payload:
    """An arbitrary object: unpickling it would need code execution."""

    def __reduce__(self):
        return (print, ("this must never run",))


def test_checkpoint_that_is_not_plain_weights_is_refused(tmp_path: Path) -> None:
    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as f:
        pickle.dump({"fc.weight": Payload()}, f)
    with pytest.raises(BackboneError, match="not a plain-weights checkpoint"):
        load_checkpoint(evil)
    not_dict = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], not_dict)
    with pytest.raises(BackboneError, match="does not hold a state_dict"):
        load_checkpoint(not_dict)
    with pytest.raises(BackboneError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    other = tmp_path / "vit.pt"
    torch.save(build_model("vit_tiny", 3, image_size=32).state_dict(), other)
    with pytest.raises(BackboneError, match="does not match resnet18"):
        build_model("resnet18", 3, weights=str(other))


def test_pretrained_offline_gives_clear_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # empty cache
    try:
        build_model("resnet18", 10, weights="pretrained")
    except BackboneError as exc:
        assert "not in the local cache" in str(exc) and "--weights" in str(exc)
    else:  # pragma: no cover - only on a machine with network access
        pytest.skip("pretrained weights downloaded: network available")



def _tiny_model() -> nn.Module:
    return build_model("resnet18", 3, image_size=32, seed=0)


def test_training_learns_and_resume_is_exact() -> None:
    train, test = _toy_source(), _toy_source(seed=1)
    cfg = BackboneConfig(epochs=2, batch_size=8, lr=1e-3, augment=False)
    full = _tiny_model()
    state = train_backbone(full, train, test, cfg, torch.device("cpu"))
    assert state.epoch == 2 and len(state.history) == 2
    assert state.history[-1]["test_acc"] > 0.6  # red channel separates the classes

    saved: list[TrainState] = []
    first = _tiny_model()
    train_backbone(first, train, test, BackboneConfig(epochs=1, batch_size=8, lr=1e-3, augment=False),
                   torch.device("cpu"), on_checkpoint=saved.append)
    resumed = _tiny_model()
    train_backbone(resumed, train, test, cfg, torch.device("cpu"), resume=saved[-1])
    for k, v in full.state_dict().items():
        assert torch.allclose(v.float(), resumed.state_dict()[k].float(), atol=1e-6), k


def test_nan_loss_and_cancel_stop_cleanly() -> None:
    bad = _toy_source()
    bad.images[0, 0, 0, 0] = float("nan")
    checkpoints: list[TrainState] = []
    with pytest.raises(JobFailed, match="last good checkpoint"):
        train_backbone(_tiny_model(), bad, bad, BackboneConfig(epochs=1, batch_size=24, augment=False),
                       torch.device("cpu"), on_checkpoint=checkpoints.append)
    assert checkpoints == []
    token = CancelToken()
    token.cancel()
    with pytest.raises(JobCancelled):
        train_backbone(_tiny_model(), _toy_source(), _toy_source(), BackboneConfig(epochs=1),
                       torch.device("cpu"), cancel=token)
