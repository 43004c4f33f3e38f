"""SALVE weight edits: known factors, identities, non-commutativity, replay and model copies."""

from __future__ import annotations

import json

import pytest
import torch
import torchvision
from torch import nn

from core.control.edit import edited_linear, edited_model, replay, replay_linear
from core.control.methods.salve import apply_salve_edit, modulation_factors
from core.control.methods.steering import steer_spec, steering, steering_vector_for
from core.control.spec import EditSpec
from core.discover.backbone import final_linear

# Hand-sized layer: 3 classes, d = 3, two SAE features.
W = torch.tensor([[2.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, -1.0]])
# |D[:,0]| = (.5, 0, 0), |D[:,1]| = (0, 1, .5)
D = torch.tensor([[-0.5, 0.0], [0.0, 1.0], [0.0, 0.5]])


def test_modulation_factors_by_hand() -> None:
    # suppress feature 0 at α=1: 1 − 1·(.5, 0, 0) = (.5, 1, 1); the sign of D_jk is irrelevant.
    assert torch.equal(modulation_factors(D, [0], 1.0, "suppress"), torch.tensor([0.5, 1.0, 1.0]))
    # enhance: 1 + 1·(.5, 0, 0)
    assert torch.equal(modulation_factors(D, [0], 1.0, "enhance"), torch.tensor([1.5, 1.0, 1.0]))
    # two features multiply: (.5, 1, 1) ∘ (1, 0, .5) = (.5, 0, .5)
    assert torch.equal(modulation_factors(D, [0, 1], 1.0), torch.tensor([0.5, 0.0, 0.5]))
    # α=4: linear goes negative (1 − 2 = −1), clamped stops at 0.
    assert torch.equal(
        modulation_factors(D, [0], 4.0, "suppress", "linear"), torch.tensor([-1.0, 1, 1])
    )
    assert torch.equal(
        modulation_factors(D, [0], 4.0, "suppress", "clamped"), torch.tensor([0.0, 1, 1])
    )
    W_new = apply_salve_edit(W, D, EditSpec(features=(0,), alpha=1.0))
    assert torch.equal(W_new, torch.tensor([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, -1.0]]))


@pytest.mark.parametrize("modulation", ["linear", "clamped"])
@pytest.mark.parametrize("mode", ["suppress", "enhance"])
def test_alpha_zero_is_identity(mode: str, modulation: str) -> None:
    torch.manual_seed(0)
    Wr, Dr, A = torch.randn(5, 16), torch.randn(16, 8), torch.randn(20, 16)
    layer = nn.Linear(16, 5)
    with torch.no_grad():
        layer.weight.copy_(Wr)
    spec = EditSpec(features=(2, 5), mode=mode, alpha=0.0, modulation=modulation)
    assert torch.equal(apply_salve_edit(Wr, Dr, spec), Wr)
    edited = edited_linear(layer, spec, Dr)
    with torch.no_grad():
        assert torch.equal(edited(A), layer(A))


def test_edits_never_mutate_inputs() -> None:
    torch.manual_seed(1)
    Wr, Dr = torch.randn(4, 6), torch.randn(6, 3)
    W_copy, D_copy = Wr.clone(), Dr.clone()
    layer = nn.Linear(6, 4)
    layer_state = {k: v.clone() for k, v in layer.state_dict().items()}
    spec = EditSpec(features=(1,), alpha=3.0)
    apply_salve_edit(Wr, Dr, spec)
    new_layer = edited_linear(layer, spec, Dr)
    assert torch.equal(Wr, W_copy) and torch.equal(Dr, D_copy)
    assert all(torch.equal(layer.state_dict()[k], v) for k, v in layer_state.items())
    assert new_layer is not layer and new_layer.weight.data_ptr() != layer.weight.data_ptr()
    assert torch.equal(new_layer.bias, layer.bias)  # SALVE leaves the bias alone


def test_suppress_then_enhance_does_not_restore_but_replays_exactly() -> None:
    """Suppress by α then enhance by α multiplies W by (1 − x)(1 + x) = 1 − x² with x = α|D_jk|.

    That is 1 only where D_jk = 0, so the second edit does not undo the first: the way back
    to the original weights is the recorded original, not an inverse edit.
    """
    torch.manual_seed(2)
    Wr, Dr = torch.randn(5, 12), torch.randn(12, 4)
    alpha = 0.7
    edits = [
        EditSpec(features=(3,), mode="suppress", alpha=alpha),
        EditSpec(features=(3,), mode="enhance", alpha=alpha),
    ]
    W_after = apply_salve_edit(apply_salve_edit(Wr, Dr, edits[0]), Dr, edits[1])
    x = alpha * Dr[:, 3].abs()
    assert torch.allclose(W_after, Wr * (1 - x**2), atol=1e-6)
    assert (W_after - Wr).abs().max() > 0.05
    # Replaying the stored (JSON round-tripped) edit list reproduces W' bit for bit.
    stored = json.loads(json.dumps([e.to_dict() for e in edits]))
    assert torch.equal(replay(Wr, Dr, [EditSpec.from_dict(d) for d in stored]), W_after)


def test_clamped_never_flips_a_weight_sign_while_linear_does() -> None:
    torch.manual_seed(3)
    Wr, Dr = torch.randn(6, 32), torch.randn(32, 5)
    flipped_linear = False
    for alpha in [0.1, 1.0, 3.0, 10.0, 100.0]:
        W_c = apply_salve_edit(Wr, Dr, EditSpec(features=(0, 4), alpha=alpha, modulation="clamped"))
        assert bool((W_c * Wr >= 0).all())
        assert bool((W_c.abs() <= Wr.abs()).all())
        W_l = apply_salve_edit(Wr, Dr, EditSpec(features=(0,), alpha=alpha, modulation="linear"))
        flipped_linear |= bool((W_l * Wr < 0).any())
    assert flipped_linear  # the check above is not vacuous


def test_editspec_json_round_trip_and_validation() -> None:
    spec = EditSpec(
        features=[3, 1], mode="enhance", alpha=2, modulation="clamped", extra={"note": "x"}
    )
    assert spec.features == (3, 1) and isinstance(spec.alpha, float)
    assert EditSpec.from_json(spec.to_json()) == spec
    with pytest.raises(ValueError, match="mode"):
        EditSpec(features=(0,), mode="remove")
    with pytest.raises(ValueError, match="≥ 0"):
        EditSpec(features=(0,), alpha=-1.0)
    with pytest.raises(ValueError, match="at least one feature"):
        EditSpec(features=(), alpha=1.0)
    with pytest.raises(ValueError, match="out of range"):
        modulation_factors(D, [7], 1.0)
    with pytest.raises(ValueError, match="different layer"):
        apply_salve_edit(torch.zeros(3, 4), D, EditSpec(features=(0,), alpha=1.0))


def _fc_inputs(model: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(input of the final linear, output) of ``model`` on ``x``."""
    captured = {}
    _, _, linear = final_linear(model)
    handle = linear.register_forward_pre_hook(lambda m, args: captured.setdefault("a", args[0]))
    with torch.no_grad():
        out = model(x)
    handle.remove()
    return captured["a"], out


def test_edited_resnet_matches_cached_activation_logits() -> None:
    torch.manual_seed(4)
    model = torchvision.models.resnet18(num_classes=4).eval()
    x = torch.randn(3, 3, 32, 32)
    a, out_before = _fc_inputs(model, x)
    Dr = torch.randn(512, 6) * 0.1
    spec = EditSpec(features=(2,), alpha=5.0)
    new_model = edited_model(model, spec, Dr).eval()
    with torch.no_grad():
        out_after = new_model(x)
        assert torch.equal(model(x), out_before)  # the original model is untouched
    W_new = apply_salve_edit(model.fc.weight.detach(), Dr, spec)
    assert torch.allclose(out_after, a @ W_new.T + model.fc.bias.detach(), atol=1e-5)
    assert not torch.allclose(out_after, out_before, atol=1e-3)


def test_edited_vit_replaces_the_head() -> None:
    torch.manual_seed(7)
    vit = torchvision.models.VisionTransformer(
        image_size=32,
        patch_size=16,
        num_layers=1,
        num_heads=2,
        hidden_dim=8,
        mlp_dim=16,
        num_classes=3,
    ).eval()
    with torch.no_grad():
        vit.heads.head.weight.normal_()  # torchvision starts the ViT head at zero
    x = torch.randn(2, 3, 32, 32)
    a, _ = _fc_inputs(vit, x)  # the [CLS] token after the final LayerNorm
    Dr = torch.randn(8, 4)
    head_before = vit.heads.head.weight.detach().clone()
    spec = EditSpec(features=(1,), alpha=0.8, modulation="clamped")
    new_vit = edited_model(vit, spec, Dr).eval()
    with torch.no_grad():
        out = new_vit(x)
    W_new = apply_salve_edit(vit.heads.head.weight.detach(), Dr, spec)
    assert torch.allclose(out, a @ W_new.T + vit.heads.head.bias.detach(), atol=1e-5)
    assert new_vit.heads.head is not vit.heads.head
    assert torch.equal(vit.heads.head.weight, head_before)  # the original head is untouched
    assert not torch.equal(new_vit.heads.head.weight, head_before)


def test_steering_edit_folds_into_the_bias_and_matches_the_hook() -> None:
    torch.manual_seed(5)
    model = torchvision.models.resnet18(num_classes=3).eval()
    x = torch.randn(2, 3, 32, 32)
    Dr = torch.randn(512, 4) * 0.2
    M = torch.tensor([[0.1, -2.0, 0.3, 0.0], [1.0, 0.2, 0.1, 0.0], [0.0, 0.1, 0.9, 0.2]])
    spec = steer_spec(M, target_class=0, beta=3.0)
    assert spec.features == (1,) and spec.extra["signs"] == [-1.0]
    with steering(model, steering_vector_for(Dr, spec)), torch.no_grad():
        hooked = model(x)
    with torch.no_grad():
        folded = edited_model(model, spec, Dr)(x)
        plain = model(x)  # hook removed on exit
    assert torch.allclose(hooked, folded, atol=1e-5)
    assert not torch.allclose(plain, hooked, atol=1e-3)
    # replay_linear with a mixed list: SALVE then steering compose on the same layer.
    salve = EditSpec(features=(0,), alpha=2.0)
    layer = replay_linear(model.fc, Dr, [salve, spec])
    W_s = apply_salve_edit(model.fc.weight.detach(), Dr, salve)
    assert torch.allclose(
        layer.bias, model.fc.bias + W_s @ steering_vector_for(Dr, spec), atol=1e-6
    )
