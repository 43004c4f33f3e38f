"""Files the tool reads but did not write: hub-cache weights and checkpoints never run code."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import pytest
import torch

from core.discover.backbone import BackboneError, build_model, load_checkpoint, load_hub_weights


class CodePayload:
    """Unpickling this creates ``marker``: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _evil_file(path: Path, marker: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump({"fc.weight": CodePayload(marker)}, f)
    return path


def _sha_prefix(path: Path, n: int = 8) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:n]


def test_pretrained_from_hub_cache_never_runs_a_pickle_payload(tmp_path, monkeypatch) -> None:
    import torchvision.models as tvm

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    name = Path(tvm.get_model_weights("resnet18").DEFAULT.url).name  # resnet18-f37072fd.pth
    marker = tmp_path / "code-ran"
    _evil_file(Path(torch.hub.get_dir()) / "checkpoints" / name, marker)
    with pytest.raises(BackboneError) as info:
        build_model("resnet18", 10, weights="pretrained")
    assert not marker.exists()
    assert name in str(info.value) and "weights_only=False" not in str(info.value)


def test_hub_file_with_matching_hash_is_still_loaded_as_weights_only(tmp_path) -> None:
    marker = tmp_path / "code-ran"
    evil = _evil_file(tmp_path / "x.pth", marker)
    with pytest.raises(BackboneError, match="plain tensors"):
        load_hub_weights(evil, _sha_prefix(evil))
    assert not marker.exists()


def test_hub_file_hash_prefix_is_verified(tmp_path) -> None:
    good = tmp_path / "resnet.pth"
    state = build_model("resnet18", 3, image_size=32).state_dict()
    torch.save(state, good)
    loaded = load_hub_weights(good, _sha_prefix(good))
    assert torch.equal(loaded["fc.weight"], state["fc.weight"])
    with pytest.raises(BackboneError, match="hash"):
        load_hub_weights(good, "00000000" if _sha_prefix(good) != "00000000" else "11111111")


@pytest.mark.parametrize(
    ("content", "expected"),
    [(b"", "empty"), (b"these are my notes, not weights\n", "not a PyTorch checkpoint")],
)
def test_checkpoint_that_is_empty_or_text_gets_a_message(tmp_path, content, expected) -> None:
    path = tmp_path / "weights.pt"
    path.write_bytes(content)
    with pytest.raises(BackboneError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert expected in message and str(path) in message
    assert "weights_only=False" not in message and "two options" not in message


def test_checkpoint_refusal_says_why_without_torch_advice(tmp_path) -> None:
    marker = tmp_path / "code-ran"
    evil = _evil_file(tmp_path / "evil.pt", marker)
    with pytest.raises(BackboneError) as info:
        load_checkpoint(evil)
    message = str(info.value)
    assert not marker.exists()
    assert "plain tensors" in message and "weights_only=False" not in message
    assert "torch.save(model.state_dict()" in message
