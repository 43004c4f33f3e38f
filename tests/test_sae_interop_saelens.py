"""SAE interop checked against the real SAELens package, both ways, for every kind.

These tests import ``sae_lens`` (``pip install -e '.[interop]'``). Without it they skip with the
reason, except under ``SALVE_REQUIRE_INTEROP=1`` (CI), where a missing package fails them.
Latents and reconstructions must agree within 1e-5 relative to the largest value.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from core.discover.sae import sae_from_arrays
from core.discover.sae_interop import from_saelens, to_saelens
from core.store.session import Session, copy_session
from core.workflow.sae_io import read_saelens, write_saelens
from salve_tui.cli.main import main

TOL = 1e-5
KINDS = ("l1", "topk", "relu", "topk_relu", "jumprelu")
NORMS = ("none", "constant_norm_rescale", "layer_norm")


@pytest.fixture(scope="module")
def saelens():
    """The installed ``sae_lens`` package; a skip with the reason, or a failure where CI needs it."""
    try:
        import sae_lens
    except ImportError as exc:
        reason = (f"sae-lens is not installed ({exc}); install it with "
                  "pip install -e '.[interop]' (make install-interop)")
        if os.environ.get("SALVE_REQUIRE_INTEROP") == "1":
            pytest.fail(f"SALVE_REQUIRE_INTEROP=1 but {reason}", pytrace=False)
        warnings.warn(f"SAELens interop tests skipped: {reason}", stacklevel=1)  # shown without -rs
        pytest.skip(reason)
    return sae_lens


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a − b| over max |b|: the relative difference the issue bounds by 1e-5."""
    a, b = torch.as_tensor(a).double(), torch.as_tensor(b).double()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-30))


def salve_weights(d: int = 12, h: int = 10, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"encoder.weight": rng.normal(size=(h, d)).astype(np.float32),
            "encoder.bias": rng.normal(size=h).astype(np.float32),
            "decoder.weight": rng.normal(size=(d, h)).astype(np.float32),
            "decoder.bias": rng.normal(size=d).astype(np.float32),
            "threshold": np.abs(rng.normal(size=h)).astype(np.float32)}


def activations(n: int = 64, d: int = 12, seed: int = 1) -> torch.Tensor:
    return torch.tensor(np.random.default_rng(seed).normal(size=(n, d)) * 3 + 1, dtype=torch.float32)


def saelens_sae(saelens, architecture: str, d: int = 12, h: int = 10, seed: int = 2, **cfg):
    """A SAELens SAE of ``architecture`` with random non-zero weights, biases and thresholds."""
    classes = {"standard": (saelens.StandardSAE, saelens.StandardSAEConfig),
               "topk": (saelens.TopKSAE, saelens.TopKSAEConfig),
               "abstopk": (saelens.AbsTopKSAE, saelens.AbsTopKSAEConfig),
               "jumprelu": (saelens.JumpReLUSAE, saelens.JumpReLUSAEConfig)}
    sae_cls, cfg_cls = classes[architecture]
    sae = sae_cls(cfg_cls(d_in=d, d_sae=h, **cfg))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sae.named_parameters():
            p.copy_(torch.randn(p.shape, generator=generator) * (0.3 if name == "W_dec" else 1.0))
            if name == "threshold":
                p.abs_()
    return sae


# --------------------------------------------------------------------------- salve → SAELens


@pytest.mark.parametrize("norm", NORMS)
@pytest.mark.parametrize("kind", KINDS)
def test_export_runs_identically_in_saelens(saelens, tmp_path: Path, kind: str, norm: str) -> None:
    weights = salve_weights()
    tensors, cfg = to_saelens(weights, kind, k=3, input_norm=norm)
    write_saelens(tmp_path, tensors, cfg)
    loaded = saelens.SAE.load_from_disk(tmp_path, device="cpu")
    expected = {"l1": "StandardSAE", "topk": "AbsTopKSAE", "relu": "StandardSAE",
                "topk_relu": "TopKSAE", "jumprelu": "JumpReLUSAE"}[kind]
    assert type(loaded).__name__ == expected
    ours = sae_from_arrays(weights, kind=kind, k=3, input_norm=norm)
    x = activations()
    with torch.no_grad():
        f = loaded.encode(x)
        x_hat_saelens = loaded.decode(f)
        u, x_hat = ours(x)
    if kind == "l1":  # the documented 2h mapping: u_k = f_k − f_{k+h}
        h = weights["encoder.weight"].shape[0]
        assert f.shape[1] == 2 * h and (f >= 0).all()
        f = f[:, :h] - f[:, h:]
    assert rel(f, u) < TOL and rel(x_hat_saelens, x_hat) < TOL
    if kind != "l1":
        assert (u < 0).any() == (kind == "topk")  # only salve's TopK keeps signs


def test_exported_linear_sae_is_not_taken_down_the_legacy_path(saelens, tmp_path: Path) -> None:
    tensors, cfg = to_saelens(salve_weights(), "l1")
    write_saelens(tmp_path, tensors, cfg)
    written = json.loads((tmp_path / "cfg.json").read_text())
    assert written["metadata"]["sae_lens_version"].split(".")[0] == "6"
    from sae_lens.loading.pretrained_sae_loaders import handle_config_defaulting

    assert handle_config_defaulting(dict(written)) == written  # v6: SAELens takes it as written


# --------------------------------------------------------------------------- SAELens → salve


IMPORT_CASES = [
    ("standard", {"apply_b_dec_to_input": True}),
    ("standard", {"apply_b_dec_to_input": False, "normalize_activations": "constant_norm_rescale"}),
    ("standard", {"apply_b_dec_to_input": True, "normalize_activations": "layer_norm"}),
    ("topk", {"k": 4, "apply_b_dec_to_input": True}),
    ("topk", {"k": 4, "rescale_acts_by_decoder_norm": True}),
    ("abstopk", {"k": 3, "apply_b_dec_to_input": True}),
    ("jumprelu", {"apply_b_dec_to_input": True}),
    ("jumprelu", {"apply_b_dec_to_input": False, "normalize_activations": "layer_norm"}),
]


def _import(folder: Path, d_in: int = 12):
    tensors, cfg, _, dtypes = read_saelens(folder)
    return from_saelens(tensors, cfg, d_in, source_dtypes=dtypes)


@pytest.mark.parametrize(("architecture", "cfg"), IMPORT_CASES)
def test_import_encodes_like_saelens(saelens, tmp_path: Path, architecture: str, cfg: dict) -> None:
    theirs = saelens_sae(saelens, architecture, **cfg)
    theirs.save_model(tmp_path)
    imported = _import(tmp_path)
    assert imported.kind == {"standard": "relu", "topk": "topk_relu", "abstopk": "topk",
                             "jumprelu": "jumprelu"}[architecture]
    assert imported.notes == []
    ours = sae_from_arrays(imported.weights, kind=imported.kind, k=imported.k or 1,
                           input_norm=imported.input_norm)
    x = activations()
    with torch.no_grad():
        f = theirs.encode(x)
        x_hat_theirs = theirs.decode(f)
        u, x_hat = ours(x)
    assert (f != 0).any() and (f == 0).any()  # a real mix of active and inactive latents
    assert rel(u, f) < TOL and rel(x_hat, x_hat_theirs) < TOL


@pytest.mark.parametrize("legacy", [
    {"activation_fn_str": "relu"},  # apply_b_dec_to_input defaults to True on this path
    {"activation_fn_str": "topk", "activation_fn_kwargs": {"k": 3}, "apply_b_dec_to_input": False},
    {"normalize_activations": False, "hook_point": "blocks.0.hook_resid_pre"},
])
def test_pre_6_configs_are_read_as_saelens_reads_them(saelens, tmp_path: Path, legacy: dict) -> None:
    from safetensors.numpy import save_file

    rng = np.random.default_rng(4)
    t = {"W_enc": rng.normal(size=(12, 10)), "b_enc": rng.normal(size=10),
         "W_dec": rng.normal(size=(10, 12)), "b_dec": rng.normal(size=12)}
    save_file({k: v.astype(np.float32) for k, v in t.items()}, str(tmp_path / "sae_weights.safetensors"))
    (tmp_path / "cfg.json").write_text(json.dumps({"d_in": 12, "d_sae": 10, "dtype": "float32", **legacy}))
    theirs = saelens.SAE.load_from_disk(tmp_path, device="cpu")
    imported = _import(tmp_path)
    ours = sae_from_arrays(imported.weights, kind=imported.kind, k=imported.k or 1)
    x = activations()
    with torch.no_grad():
        f = theirs.encode(x)
        assert rel(ours.encode(x), f) < TOL and rel(ours(x)[1], theirs.decode(f)) < TOL


def test_imported_cards_use_saelens_encode_in_float64(saelens, tmp_path: Path) -> None:
    """The feature cards' float64 encoder gives SAELens' latents too (jumprelu, layer_norm)."""
    from core.workflow.feature_card import encode

    theirs = saelens_sae(saelens, "jumprelu", normalize_activations="layer_norm")
    theirs.save_model(tmp_path)
    imported = _import(tmp_path)
    x = activations()
    with torch.no_grad():
        f = theirs.encode(x)
    u = encode(x.numpy(), imported.weights, imported.kind, 1, imported.input_norm)
    assert rel(torch.from_numpy(u), f) < TOL


def test_bfloat16_weights_are_converted(saelens, tmp_path: Path) -> None:
    theirs = saelens_sae(saelens, "standard").to(torch.bfloat16)
    theirs.save_model(tmp_path)
    assert json.loads((tmp_path / "cfg.json").read_text())["dtype"] == "bfloat16"
    imported = _import(tmp_path)
    assert any("bfloat16" in note for note in imported.notes)
    as_float = saelens.SAE.load_from_disk(tmp_path, device="cpu", dtype="float32")
    ours = sae_from_arrays(imported.weights, kind="relu")
    x = activations()
    with torch.no_grad():
        assert rel(ours.encode(x), as_float.encode(x)) < TOL


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("kind", KINDS)
def test_salve_saelens_salve_gives_the_same_weights(saelens, tmp_path: Path, kind: str) -> None:
    weights = salve_weights()
    tensors, cfg = to_saelens(weights, kind, k=3)
    write_saelens(tmp_path, tensors, cfg)
    loaded = saelens.SAE.load_from_disk(tmp_path, device="cpu")
    loaded.save_model(tmp_path / "again")  # SAELens' own writer in between
    back = _import(tmp_path / "again")
    assert back.kind == kind
    for name, value in back.weights.items():
        np.testing.assert_array_equal(value, weights[name])


@pytest.mark.parametrize(("architecture", "cfg"), IMPORT_CASES)
def test_saelens_salve_saelens_gives_the_same_weights(saelens, tmp_path: Path, architecture: str,
                                                     cfg: dict) -> None:
    theirs = saelens_sae(saelens, architecture, **cfg)
    theirs.save_model(tmp_path / "a")
    imported = _import(tmp_path / "a")
    tensors, out_cfg = to_saelens(imported.weights, imported.kind, imported.k, imported.input_norm,
                                  apply_b_dec_to_input=imported.apply_b_dec_to_input)
    write_saelens(tmp_path / "b", tensors, out_cfg)
    again = saelens.SAE.load_from_disk(tmp_path / "b", device="cpu")
    assert type(again) is type(theirs)
    assert again.cfg.normalize_activations == theirs.cfg.normalize_activations
    if getattr(theirs.cfg, "rescale_acts_by_decoder_norm", False):
        theirs.fold_W_dec_norm()  # the documented mapping: decoder norms folded into the encoder
    original, result = theirs.state_dict(), again.state_dict()
    assert set(original) == set(result)
    for name in original:
        if name == "b_enc" or architecture == "topk" and cfg.get("rescale_acts_by_decoder_norm"):
            # b_dec·W_enc is folded into b_enc and back: equal to float32 rounding
            torch.testing.assert_close(result[name], original[name], rtol=1e-6, atol=1e-6)
        else:
            assert torch.equal(result[name], original[name]), name


# --------------------------------------------------------------------------- through a session


@pytest.fixture
def session_path(tmp_path: Path, built_session_path: Path) -> Path:
    path = tmp_path / "tiny.h5"
    copy_session(built_session_path, path)
    return path


def test_session_export_matches_saelens_on_its_activations(saelens, session_path: Path,
                                                           tmp_path: Path, capsys) -> None:
    from core.workflow.pipeline import load_activations, load_sae

    out = tmp_path / "exported"
    assert main(["sae", "export", str(session_path), str(out)]) == 0
    assert "f_k - f_(k+h)" in capsys.readouterr().out
    with Session.open(session_path, read_only=True) as s:
        sae = load_sae(s)
        a = torch.from_numpy(np.asarray(load_activations(s, "test")["a"], dtype=np.float32))
    loaded = saelens.SAE.load_from_disk(out, device="cpu")
    h = sae.encoder.out_features
    with torch.no_grad():
        f = loaded.encode(a)
        u, a_hat = sae(a)
        assert rel(f[:, :h] - f[:, h:], u) < TOL and rel(loaded.decode(f), a_hat) < TOL


def test_session_import_of_a_jumprelu_sae_runs_rankings_and_alpha_crit(
    saelens, session_path: Path, tmp_path: Path, capsys
) -> None:
    from core.workflow.alpha_crit import run_alpha_crit
    from core.workflow.edits import build_spec, edited_head
    from core.workflow.feature_card import split_latents
    from core.workflow.inputs import load_inputs
    from core.workflow.pipeline import load_activations, load_sae, run_stage

    with Session.open(session_path, read_only=True) as s:
        a = torch.from_numpy(np.asarray(load_activations(s, "test")["a"], dtype=np.float32))
    theirs = saelens_sae(saelens, "jumprelu", d=a.shape[1], h=24, apply_b_dec_to_input=True)
    with torch.no_grad():
        theirs.threshold.mul_(0.1)
    theirs.save_model(tmp_path / "jr")
    assert main(["sae", "import", str(session_path), str(tmp_path / "jr")]) == 0
    assert "salve kind jumprelu" in capsys.readouterr().out
    with Session.open(session_path) as s:
        with torch.no_grad():
            f = theirs.encode(a)
            assert rel(load_sae(s).encode(a), f) < TOL
        assert rel(torch.from_numpy(split_latents(s)), f) < TOL
        run_stage(s, "rankings")
        results = run_alpha_crit(s, record=False)
        inputs = load_inputs(s)
        spec = build_spec(inputs, target_class=0, alpha=0.5)
        W_edit, _ = edited_head(inputs, spec)
    # the edit scales the head by SAELens' own decoder row: W ⊙ (1 − α|W_dec[k]|)
    k = spec.features[0]
    D_k = theirs.W_dec.detach()[k].double()
    assert torch.equal(inputs.D[:, k].double(), D_k)
    torch.testing.assert_close(W_edit, inputs.W * (1 - 0.5 * D_k.abs()).to(inputs.W.dtype))
    # α_crit reads only the decoder and the head: analytic z/S stays exact under linear modulation
    both = [r for r in results if torch.isfinite(r.analytic).any()]
    assert both
    for r in both:
        ok = torch.isfinite(r.analytic) & torch.isfinite(r.numerical)
        torch.testing.assert_close(r.numerical[ok], r.analytic[ok], rtol=1e-6, atol=0)
