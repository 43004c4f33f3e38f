"""SAE dictionaries in SAELens' format: conversions checked by hand, round trips through a session."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file

from core.discover.sae import sae_from_arrays
from core.discover.sae_interop import InteropError, expected_average_scale, from_saelens, to_saelens
from core.store.session import Session, copy_session
from core.workflow.pipeline import load_sae_arrays, run_stage
from core.workflow.sae_io import import_sae
from salve_tui.cli.main import main


@pytest.fixture
def session_path(tmp_path: Path, built_session_path: Path) -> Path:
    path = tmp_path / "tiny.h5"
    copy_session(built_session_path, path)
    return path


def _saelens_tensors(d_in: int = 6, d_sae: int = 10, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "W_enc": rng.normal(size=(d_in, d_sae)).astype(np.float32),
        "b_enc": rng.normal(size=d_sae).astype(np.float32),
        "W_dec": rng.normal(size=(d_sae, d_in)).astype(np.float32),
        "b_dec": rng.normal(size=d_in).astype(np.float32),
    }


def _saelens_forward(t: dict[str, np.ndarray], x: np.ndarray, relu: bool, apply_b_dec: bool):
    """SAELens' standard SAE written out: u = act((x − b_dec·[apply]) W_enc + b_enc), x̂ = u W_dec + b_dec."""
    pre = (x - t["b_dec"] if apply_b_dec else x) @ t["W_enc"] + t["b_enc"]
    u = np.maximum(pre, 0) if relu else pre
    return u, u @ t["W_dec"] + t["b_dec"]


@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("apply_b_dec", [True, False])
def test_imported_sae_encodes_like_saelens(relu: bool, apply_b_dec: bool) -> None:
    t = _saelens_tensors()
    cfg = {"architecture": "standard", "d_in": 6, "d_sae": 10, "apply_b_dec_to_input": apply_b_dec,
           "activation_fn": "relu" if relu else "identity"}
    imported = from_saelens(t, cfg, d_in=6)
    assert imported.kind == ("relu" if relu else "l1")
    x = np.random.default_rng(1).normal(size=(20, 6))
    u_ref, x_hat_ref = _saelens_forward({k: v.astype(np.float64) for k, v in t.items()}, x, relu, apply_b_dec)
    sae = sae_from_arrays(imported.weights, kind=imported.kind)
    with torch.no_grad():
        u, x_hat = sae(torch.tensor(x, dtype=torch.float32))
    np.testing.assert_allclose(u.numpy(), u_ref, atol=1e-4)
    np.testing.assert_allclose(x_hat.numpy(), x_hat_ref, atol=1e-4)
    # The decoder directions D[:, k] SALVE scales by are SAELens' W_dec rows.
    np.testing.assert_array_equal(sae.decoder_directions.detach().numpy(), t["W_dec"].T)


def test_expected_average_normalisation_is_folded_in() -> None:
    t = _saelens_tensors()
    x = np.random.default_rng(2).normal(size=(50, 6)) * 7.0
    s = expected_average_scale(x)
    assert s == pytest.approx(np.sqrt(6) / np.linalg.norm(x, axis=1).mean())
    cfg = {"architecture": "standard", "activation_fn": "relu", "normalize_activations": "expected_average_only_in"}
    imported = from_saelens(t, cfg, d_in=6, input_scale=s)
    u_ref, x_hat_scaled = _saelens_forward({k: v.astype(np.float64) for k, v in t.items()}, s * x, True, False)
    sae = sae_from_arrays(imported.weights, kind="relu")
    with torch.no_grad():
        u, x_hat = sae(torch.tensor(x, dtype=torch.float32))
    np.testing.assert_allclose(u.numpy(), u_ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(x_hat.numpy(), x_hat_scaled / s, rtol=1e-4, atol=1e-4)


def test_export_names_and_orientation() -> None:
    rng = np.random.default_rng(3)
    ours = {"encoder.weight": rng.normal(size=(10, 6)), "encoder.bias": rng.normal(size=10),
            "decoder.weight": rng.normal(size=(6, 10)), "decoder.bias": rng.normal(size=6)}
    tensors, cfg = to_saelens(ours)
    assert tensors["W_enc"].shape == (6, 10) and tensors["W_dec"].shape == (10, 6)
    assert (cfg["d_in"], cfg["d_sae"], cfg["activation_fn"]) == (6, 10, "identity")
    back = from_saelens(tensors, cfg, d_in=6)
    for name, value in ours.items():
        np.testing.assert_array_equal(back.weights[name], value.astype(np.float32))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t, c: t.update(W_enc=t["W_enc"].T.copy()), "looks transposed"),
        (lambda t, c: t.update(W_enc=np.zeros((5, 10), np.float32)), "another layer"),
        (lambda t, c: t.pop("b_dec"), "lacks b_dec"),
        (lambda t, c: t.update(W_dec=t["W_dec"].T.copy()), "W_dec is (6, 10)"),
        (lambda t, c: c.update(architecture="jumprelu"), "supported are standard"),
        (lambda t, c: c.update(normalize_activations="constant_norm_rescale"), "each input on its own"),
        (lambda t, c: t["W_enc"].__setitem__((0, 0), np.nan), "NaN"),
        (lambda t, c: c.update(d_sae=12), "says d_sae = 12 but the weights have 10"),
    ],
)
def test_bad_dictionaries_are_refused_with_the_reason(change, message: str) -> None:
    t, cfg = _saelens_tensors(), {"architecture": "standard", "activation_fn": "relu"}
    change(t, cfg)
    with pytest.raises(InteropError, match=message.replace("(", r"\(").replace(")", r"\)")):
        from_saelens(t, cfg, d_in=6)


def test_session_round_trip_and_cli(session_path: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "sae-out"
    assert main(["sae", "export", str(session_path), str(out), "--json"]) == 0
    written = json.loads(capsys.readouterr().out)
    cfg = json.loads((out / "cfg.json").read_text())
    with Session.open(session_path, read_only=True) as s:
        original = load_sae_arrays(s)
        M_before = s.read_array("rankings/class_means") if s.has("rankings/class_means") else None
        d = s.read_array("activations/train/a").shape[1]
    assert cfg["d_in"] == d == written["d_in"]
    np.testing.assert_array_equal(load_file(str(out / "sae_weights.safetensors"))["W_dec"],
                                  original["decoder.weight"].T)
    # exporting again without --force refuses and changes nothing
    before = (out / "cfg.json").stat().st_mtime_ns
    assert main(["sae", "export", str(session_path), str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert (out / "cfg.json").stat().st_mtime_ns == before

    assert main(["sae", "import", str(session_path), str(out)]) == 0
    assert "salve run" in capsys.readouterr().out
    with Session.open(session_path) as s:
        for name, value in original.items():
            np.testing.assert_array_equal(load_sae_arrays(s)[name], value)
        stages = s.stages()
        assert stages["sae"].state == "done" and stages["sae"].info.get("imported") is True
        assert stages["rankings"].state == "stale"
        assert s.summary()["sae"]["engine"] == "imported"
        run_stage(s, "rankings")
        if M_before is not None:
            np.testing.assert_allclose(s.read_array("rankings/class_means"), M_before, rtol=1e-5, atol=1e-6)


def test_import_of_a_relu_dictionary_changes_the_latents(session_path: Path, tmp_path: Path) -> None:
    with Session.open(session_path, read_only=True) as s:
        d = s.read_array("activations/train/a").shape[1]
    t = _saelens_tensors(d_in=d, d_sae=24, seed=5)
    folder = tmp_path / "relu"
    folder.mkdir()
    save_file(t, str(folder / "sae_weights.safetensors"))
    (folder / "cfg.json").write_text(json.dumps({"architecture": "standard", "activation_fn": "relu",
                                                 "d_in": d, "d_sae": 24}))
    with Session.open(session_path) as s:
        import_sae(s, folder)
        run_stage(s, "rankings")
        a = s.read_array("activations/train/a").astype(np.float64)
        labels = s.read_array("activations/train/labels")
        u = np.maximum(a @ t["W_enc"].astype(np.float64) + t["b_enc"], 0)
        expected = np.stack([u[labels == c].mean(0) for c in range(int(labels.max()) + 1)])
        M = s.read_array("rankings/class_means")
    np.testing.assert_allclose(M[: expected.shape[0]], expected, rtol=1e-4, atol=1e-4)


def test_cli_import_errors_are_one_line(session_path: Path, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    assert main(["sae", "import", str(session_path), str(bad)]) == 2
    err = capsys.readouterr().err
    assert "not a readable safetensors file" in err and "Traceback" not in err
    assert main(["sae", "import", str(session_path), str(tmp_path / "missing")]) == 2
    assert "SAELens folder" in capsys.readouterr().err
