"""The cached activation is exactly the input of the final linear layer, for ResNet and ViT."""

from __future__ import annotations

import torch

from core.discover.activations import activations_and_logits
from core.discover.backbone import build_model, final_linear


def test_resnet_activation_is_flattened_avgpool() -> None:
    model = build_model("resnet18", 5, seed=0).eval()
    x = torch.randn(2, 3, 64, 64)
    a, logits = activations_and_logits(model, x)
    with torch.no_grad():
        trunk = torch.nn.Sequential(*list(model.children())[:-1])
        expected = trunk(x).flatten(1)
    assert a.shape == (2, 512)
    assert torch.allclose(a, expected, atol=1e-6)
    _, _, fc = final_linear(model)
    assert torch.allclose(logits, a @ fc.weight.T + fc.bias, atol=1e-5)


def test_vit_activation_is_cls_token_after_final_layernorm() -> None:
    model = build_model("vit_tiny", 3, image_size=32, seed=0).eval()
    x = torch.randn(2, 3, 32, 32)
    a, logits = activations_and_logits(model, x)
    with torch.no_grad():
        tokens = model._process_input(x)
        cls = model.class_token.expand(2, -1, -1)
        encoded = model.encoder(torch.cat([cls, tokens], dim=1))  # includes the final LayerNorm
        expected = encoded[:, 0]
    assert a.shape == (2, 64)
    assert torch.allclose(a, expected, atol=1e-5)
    _, _, head = final_linear(model)
    assert torch.allclose(logits, a @ head.weight.T + head.bias, atol=1e-5)
