"""Grad-CAM / Grad-FAM: known answers, fast path == autograd, agreement with pytorch-grad-cam."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from core.validate.saliency import (
    default_target_layer,
    fast_path_applies,
    grad_cam,
    grad_fam,
    normalize_maps,
)


@pytest.fixture(scope="module")
def resnet() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=5).eval()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))


class PooledLinearNet(nn.Module):
    """Feature map = the input itself, then global average pooling and a linear head.

    Lets a test hand-craft the feature map A exactly (it is the "image").
    """

    def __init__(self, head_weight: torch.Tensor) -> None:
        super().__init__()
        self.body = nn.Identity()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(head_weight.shape[1], head_weight.shape[0])
        with torch.no_grad():
            self.fc.weight.copy_(head_weight)
            self.fc.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.body(x)), 1))


def test_abs_vs_relu_on_hand_made_feature_map() -> None:
    # Channel 0 lights the top-left pixel, channel 1 the bottom-right one (4×4 map).
    feature_map = torch.zeros(1, 3, 4, 4)
    feature_map[0, 0, 0, 0] = 2.0
    feature_map[0, 1, 3, 3] = 1.0
    # Score = mean(A0) - 2·mean(A1): positive evidence top-left, negative bottom-right.
    score_weights = torch.tensor([[1.0, -2.0, 0.0]])
    model = PooledLinearNet(score_weights).eval()
    encoder = (score_weights, torch.zeros(1))

    fam_raw = grad_fam(model, encoder, feature_map, 0, "body", normalize=False)[0]
    cam_raw = grad_cam(model, feature_map, 0, "body", normalize=False)[0]
    # Weights = ∂score/∂A averaged over the 16 positions = (1, -2, 0)/16.
    assert fam_raw[0, 0].item() == pytest.approx(2.0 / 16)
    assert fam_raw[3, 3].item() == pytest.approx(2.0 / 16)  # |-2·1/16|
    assert cam_raw[0, 0].item() == pytest.approx(2.0 / 16)
    assert cam_raw[3, 3].item() == 0.0  # negative sum vanishes under ReLU
    assert fam_raw.sum().item() == pytest.approx(4.0 / 16)  # nothing anywhere else

    fam = grad_fam(model, encoder, feature_map, 0, "body")[0]
    cam = grad_cam(model, feature_map, 0, "body")[0]
    expected_fam = torch.zeros(4, 4)
    expected_fam[0, 0] = expected_fam[3, 3] = 1.0
    expected_cam = torch.zeros(4, 4)
    expected_cam[0, 0] = 1.0
    torch.testing.assert_close(fam, expected_fam)
    torch.testing.assert_close(cam, expected_cam)


def test_flat_map_normalises_to_zeros() -> None:
    maps = torch.stack([torch.zeros(3, 3), torch.full((3, 3), 5.0), torch.arange(9.0).view(3, 3)])
    out = normalize_maps(maps)
    assert torch.equal(out[0], torch.zeros(3, 3))
    assert torch.equal(out[1], torch.zeros(3, 3))
    torch.testing.assert_close(out[2], torch.arange(9.0).view(3, 3) / 8)


def test_default_layer_is_deepest_stage_with_4x4_map(resnet: nn.Module) -> None:
    assert default_target_layer(resnet, 224) == "layer4"  # 7×7
    assert default_target_layer(resnet, 64) == "layer3"  # layer4 would be 2×2
    assert default_target_layer(resnet, 32) == "layer2"


def test_fast_path_detection(resnet: nn.Module) -> None:
    assert fast_path_applies(resnet, "layer4")
    assert not fast_path_applies(resnet, "layer3")
    with pytest.raises(ValueError, match="fast path"):
        grad_fam(resnet, nn.Linear(512, 4), torch.zeros(1, 3, 64, 64), 0, "layer3", fast=True)


def test_fast_path_equals_autograd_path(images: torch.Tensor) -> None:
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=5).double().eval()
    encoder = nn.Linear(512, 12).double()
    batch = images.double()
    features = [0, 3, 7, 11]
    for normalize in (False, True):
        fast = grad_fam(model, encoder, batch, features, "layer4", fast=True, normalize=normalize)
        slow = grad_fam(model, encoder, batch, features, "layer4", fast=False, normalize=normalize)
        assert fast.shape == (3, 4, 64, 64)
        assert fast.abs().amax() > 0
        torch.testing.assert_close(fast, slow, atol=1e-5, rtol=0)
    cam_fast = grad_cam(model, batch, [1, 4], "layer4", fast=True)
    cam_slow = grad_cam(model, batch, [1, 4], "layer4", fast=False)
    torch.testing.assert_close(cam_fast, cam_slow, atol=1e-5, rtol=0)


def test_target_shapes_and_batch_independence(resnet: nn.Module, images: torch.Tensor) -> None:
    encoder = nn.Linear(512, 6)
    every = grad_fam(resnet, encoder, images, [2, 5], "layer3")
    assert every.shape == (3, 2, 64, 64)
    single = grad_fam(resnet, encoder, images, 5, "layer3")
    torch.testing.assert_close(single, every[:, 1])
    per_image = grad_fam(resnet, encoder, images, torch.tensor([2, 5, 2]), "layer3")
    torch.testing.assert_close(per_image, torch.stack([every[0, 0], every[1, 1], every[2, 0]]))
    alone = grad_fam(resnet, encoder, images[1:2], [5], "layer3")
    # A batch of one runs other float32 conv kernels than a batch of three: ~1e-6 apart on [0, 1].
    torch.testing.assert_close(alone[0, 0], every[1, 1], atol=1e-5, rtol=0)
    assert 0.0 <= every.min() and every.amax(dim=(2, 3)).allclose(torch.ones(3, 2))


def test_bad_inputs_are_named(resnet: nn.Module, images: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="out of range"):
        grad_cam(resnet, images, [5], "layer3")
    with pytest.raises(ValueError, match="not a module"):
        grad_cam(resnet, images, [0], "layer9")
    with pytest.raises(ValueError, match="512"):
        grad_fam(resnet, nn.Linear(256, 4), images, [0])
    with pytest.raises(ValueError, match="one entry per image"):
        grad_cam(resnet, images, torch.tensor([0, 1]), "layer3")


def test_grad_mode_and_training_flag_restored(resnet: nn.Module, images: torch.Tensor) -> None:
    resnet.train()
    try:
        grad_cam(resnet, images[:1], 0, "layer3")
        assert resnet.training and torch.is_grad_enabled()
        with torch.no_grad():
            grad_cam(resnet, images[:1], 0, "layer3")
            assert not torch.is_grad_enabled()
    finally:
        resnet.eval()


def test_grad_cam_matches_pytorch_grad_cam(resnet: nn.Module, images: torch.Tensor) -> None:
    pgc = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    classes = [0, 3, 4]
    for layer in ("layer3", "layer4"):
        ours = grad_cam(resnet, images, torch.tensor(classes), layer).numpy()
        with pgc.GradCAM(resnet, [resnet.get_submodule(layer)]) as cam:
            reference = cam(images, [ClassifierOutputTarget(c) for c in classes])
        assert reference.max() > 0.99  # non-trivial maps
        assert abs(ours - reference).max() < 1e-4, layer


def _tiny_vit() -> nn.Module:
    torch.manual_seed(0)
    vit = torchvision.models.VisionTransformer(
        image_size=32,
        patch_size=8,
        num_layers=2,
        num_heads=2,
        hidden_dim=32,
        mlp_dim=64,
        num_classes=3,
    ).eval()
    nn.init.normal_(vit.heads.head.weight)  # torchvision zero-inits the head: no gradient
    return vit


def test_vit_token_grid_reshape() -> None:
    vit = _tiny_vit()
    images = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    layer = default_target_layer(vit, 32)
    assert layer == "encoder.layers.encoder_layer_1.ln_1"
    encoder = nn.Linear(32, 5)
    fam = grad_fam(vit, encoder, images, [0, 4])
    assert fam.shape == (2, 2, 32, 32)
    raw = grad_fam(vit, encoder, images, [0, 4], normalize=False)
    assert raw.abs().amax() > 0

    pgc = pytest.importorskip("pytorch_grad_cam")
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    def tokens_to_grid(tokens: torch.Tensor) -> torch.Tensor:
        patches = tokens[:, 1:, :].reshape(tokens.shape[0], 4, 4, tokens.shape[2])
        return patches.permute(0, 3, 1, 2)

    ours = grad_cam(vit, images, torch.tensor([1, 2])).numpy()
    with pgc.GradCAM(vit, [vit.get_submodule(layer)], reshape_transform=tokens_to_grid) as cam:
        reference = cam(images, [ClassifierOutputTarget(1), ClassifierOutputTarget(2)])
    assert reference.max() > 0.99
    assert abs(ours - reference).max() < 1e-4


def test_vit_layer_after_last_attention_is_rejected() -> None:
    vit = _tiny_vit()
    with pytest.raises(ValueError, match="no path to the \\[CLS\\]"):
        grad_cam(vit, torch.zeros(1, 3, 32, 32), 0, "encoder.layers.encoder_layer_1")
