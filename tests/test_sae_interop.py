"""SAE dictionaries in SAELens' format without the package: hand-worked encode rules and
conversions, bad input refused with one message and nothing written, round trips through a
session. The comparisons against the real SAELens are in ``test_sae_interop_saelens.py``."""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file
from safetensors.torch import save_file as save_torch

from core.discover.sae import sae_from_arrays
from core.discover.sae_interop import InteropError, check_cfg, from_saelens, to_saelens
from core.discover.sae_kinds import activate, denormalize_output, normalize_input
from core.store.session import Session, copy_session
from core.workflow.pipeline import SAE_IMPORT_KEY, load_sae_arrays, run_stage
from salve_tui.cli.main import main

V6 = {"sae_lens_version": "6.0.0"}


@pytest.fixture
def session_path(tmp_path: Path, built_session_path: Path) -> Path:
    path = tmp_path / "tiny.h5"
    copy_session(built_session_path, path)
    return path


def _tensors(d_in: int = 6, d_sae: int = 10, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"W_enc": rng.normal(size=(d_in, d_sae)).astype(np.float32),
            "b_enc": rng.normal(size=d_sae).astype(np.float32),
            "W_dec": rng.normal(size=(d_sae, d_in)).astype(np.float32),
            "b_dec": rng.normal(size=d_in).astype(np.float32)}


def _cfg(d_in: int = 6, d_sae: int = 10, **extra) -> dict:
    return {"architecture": "standard", "d_in": d_in, "d_sae": d_sae, "dtype": "float32",
            "apply_b_dec_to_input": False, "normalize_activations": "none", "metadata": dict(V6),
            **extra}


def _folder(path: Path, tensors: dict, cfg: dict) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path / "sae_weights.safetensors"))
    (path / "cfg.json").write_text(json.dumps(cfg))
    return path


# --------------------------------------------------------------------------- encode rules by hand


def test_each_kind_by_hand() -> None:
    pre = torch.tensor([[3.0, -5.0, 1.0, -0.5]])
    assert activate(pre, "l1").tolist() == [[3, -5, 1, -0.5]]
    assert activate(pre, "topk", k=2).tolist() == [[3, -5, 0, 0]]  # largest |u|, signs kept
    assert activate(pre, "relu").tolist() == [[3, 0, 1, 0]]
    assert activate(pre, "topk_relu", k=3).tolist() == [[3, 0, 1, 0]]  # values 3, 1, −0.5 → ReLU
    assert activate(pre, "topk_relu", k=1).tolist() == [[3, 0, 0, 0]]
    theta = torch.tensor([2.0, 0.0, 1.0, -1.0])
    assert activate(pre, "jumprelu", threshold=theta).tolist() == [[3, 0, 0, 0]]  # 1 > 1 is false


def test_input_normalisations_by_hand() -> None:
    a = torch.tensor([[3.0, 4.0]], dtype=torch.float64)
    x, undo = normalize_input(a, "constant_norm_rescale")
    torch.testing.assert_close(x, a * math.sqrt(2) / 5)
    torch.testing.assert_close(denormalize_output(x, "constant_norm_rescale", undo), a)
    b = torch.tensor([[1.0, 3.0]], dtype=torch.float64)
    y, undo = normalize_input(b, "layer_norm")  # mean 2, std (n−1) √2, eps 1e-5 as SAELens
    torch.testing.assert_close(y, torch.tensor([[-1.0, 1.0]], dtype=torch.float64) / (math.sqrt(2) + 1e-5))
    torch.testing.assert_close(denormalize_output(y * (math.sqrt(2) + 1e-5) / math.sqrt(2),
                                                  "layer_norm", undo), b)


def test_input_side_b_dec_is_folded_into_the_encoder_bias() -> None:
    t = {"W_enc": np.array([[2.0], [1.0]], np.float32), "b_enc": np.array([0.5], np.float32),
         "W_dec": np.array([[1.0, 1.0]], np.float32), "b_dec": np.array([1.0, -1.0], np.float32)}
    imported = from_saelens(t, _cfg(2, 1, apply_b_dec_to_input=True), d_in=2)
    assert imported.weights["encoder.bias"].tolist() == [-0.5]  # 0.5 − (1·2 − 1·1)
    sae = sae_from_arrays(imported.weights, kind=imported.kind)
    u = sae.encode(torch.tensor([[3.0, 2.0]]))
    assert u.item() == 7.5  # relu((3 − 1)·2 + (2 + 1)·1 + 0.5)


def test_linear_sae_exports_as_a_2h_relu_dictionary() -> None:
    rng = np.random.default_rng(3)
    ours = {"encoder.weight": rng.normal(size=(10, 6)), "encoder.bias": rng.normal(size=10),
            "decoder.weight": rng.normal(size=(6, 10)), "decoder.bias": rng.normal(size=6)}
    tensors, cfg = to_saelens(ours)
    assert (cfg["architecture"], cfg["d_sae"], cfg["apply_b_dec_to_input"]) == ("standard", 20, False)
    assert cfg["metadata"]["sae_lens_version"] == "6.0.0" and cfg["metadata"]["salve_hidden"] == 10
    np.testing.assert_array_equal(tensors["W_enc"][:, 10:], -tensors["W_enc"][:, :10])
    x = rng.normal(size=(30, 6))
    f = np.maximum(x @ tensors["W_enc"] + tensors["b_enc"], 0)  # SAELens' standard encode
    u = x @ ours["encoder.weight"].T + ours["encoder.bias"]
    np.testing.assert_allclose(f[:, :10] - f[:, 10:], u, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(f @ tensors["W_dec"] + tensors["b_dec"],
                               u @ ours["decoder.weight"].T + ours["decoder.bias"], rtol=1e-4, atol=1e-4)
    back = from_saelens(tensors, cfg, d_in=6)
    assert back.kind == "l1"
    for name, value in ours.items():
        np.testing.assert_array_equal(back.weights[name], value.astype(np.float32))
    tensors["W_enc"][0, 12] += 1  # no longer the exact 2h form: it stays a ReLU dictionary
    assert from_saelens(tensors, cfg, d_in=6).kind == "relu"


def test_an_all_ones_scaling_factor_is_dropped_as_saelens_does() -> None:
    t = _tensors()
    plain = from_saelens(t, _cfg(), d_in=6).weights
    with_ones = from_saelens({**t, "scaling_factor": np.ones(10, np.float32)}, _cfg(), d_in=6).weights
    for name, value in plain.items():
        np.testing.assert_array_equal(with_ones[name], value)


def test_legacy_configs_are_read_as_saelens_reads_them() -> None:
    legacy = {"d_in": 6, "d_sae": 10, "activation_fn_str": "topk", "activation_fn_kwargs": {"k": 3}}
    cfg = check_cfg(legacy)
    assert (cfg["architecture"], cfg["k"], cfg["apply_b_dec_to_input"]) == ("topk", 3, True)
    assert check_cfg({"d_in": 6, "d_sae": 10, "normalize_activations": True})["normalize_activations"] \
        == "expected_average_only_in"
    with pytest.raises(InteropError, match="no architecture"):
        check_cfg({"d_in": 6, "d_sae": 10, "metadata": V6})


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda t, c: c.pop("d_in"), "no d_in"),
        (lambda t, c: c.pop("d_sae"), "no d_sae"),
        (lambda t, c: c.update(d_sae="ten"), "d_sae as a positive whole number"),
        (lambda t, c: c.update(dtype="int8"), "dtype 'int8'"),
        (lambda t, c: c.update(architecture="gated"), "architecture 'gated'"),
        (lambda t, c: c.update(d_sae=12), r"W_enc is \(6, 10\) but cfg.json \(d_in 6, d_sae 12\)"),
        (lambda t, c: t.update(W_enc=t["W_enc"].T.copy()), "looks transposed"),
        (lambda t, c: t.pop("b_dec"), "lacks b_dec"),
        (lambda t, c: t.update(scaling_factor=np.ones(10, np.float32) * 2), "also holds scaling_factor"),
        (lambda t, c: c.update(architecture="jumprelu"), "lacks threshold"),
        (lambda t, c: c.update(architecture="topk", k=11), "1 ≤ k ≤ d_sae"),
        (lambda t, c: t["W_enc"].__setitem__((0, 0), np.nan), "W_enc hold NaN"),
        (lambda t, c: c.update(normalize_activations="expected_average_only_in"), "norm scaling factor"),
        (lambda t, c: c.update(normalize_activations="covariance_whitening"), "whitening mean and matrix"),
        (lambda t, c: c.update(d_in=5, metadata=V6) or t.update(W_enc=t["W_enc"][:5], b_dec=t["b_dec"][:5],
                                                              W_dec=t["W_dec"][:, :5]), "another layer"),
        (lambda t, c: [c.pop("metadata"), c.update(activation_fn="identity")], "activation_fn 'identity'"),
    ],
)
def test_bad_dictionaries_are_refused_with_the_reason(change, message: str) -> None:
    t, cfg = _tensors(), _cfg()
    change(t, cfg)
    with pytest.raises(InteropError, match=message):
        from_saelens(t, cfg, d_in=6)


class _Trap:
    """Unpickling this creates a marker file: proof that a pickle was (or was not) loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def _bad_inputs(tmp_path: Path, d: int) -> list[tuple[Path, str]]:
    good = _tensors(d_in=d)
    cases = [("no-d-in", good, {k: v for k, v in _cfg(d).items() if k != "d_in"}, "no d_in"),
             ("dtype", good, _cfg(d, dtype="float8"), "dtype 'float8'"),
             ("arch", good, _cfg(d, architecture="matryoshka"), "architecture 'matryoshka'"),
             ("shape", good, _cfg(d, d_sae=11), "W_enc is"),
             ("nan", {**good, "b_enc": np.full(10, np.nan, np.float32)}, _cfg(d), "NaN")]
    out = [(_folder(tmp_path / name, t, c), msg) for name, t, c, msg in cases]
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    (pickled / "cfg.json").write_text(json.dumps(_cfg(d)))
    (pickled / "sae_weights.pt").write_bytes(pickle.dumps(_Trap(tmp_path / "unpickled")))
    out += [(pickled, "is a pickle"), (pickled / "sae_weights.pt", "is a pickle")]
    return out


def test_cli_refuses_bad_input_in_one_line_and_writes_nothing(session_path: Path, tmp_path: Path,
                                                              capsys) -> None:
    with Session.open(session_path, read_only=True) as s:
        d = s.read_array("activations/train/a").shape[1]
        before = load_sae_arrays(s)
        stages_before = {k: v.state for k, v in s.stages().items()}
    for source, message in _bad_inputs(tmp_path / "bad", d):
        listing = sorted(p.name for p in source.parent.rglob("*"))
        assert main(["sae", "import", str(session_path), str(source)]) == 2, source
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert sorted(p.name for p in source.parent.rglob("*")) == listing
    assert not (tmp_path / "bad" / "unpickled").exists()  # no pickle was ever loaded
    with Session.open(session_path, read_only=True) as s:
        assert {k: v.state for k, v in s.stages().items()} == stages_before
        assert s.read_json(SAE_IMPORT_KEY, None) is None
        for name, value in before.items():
            np.testing.assert_array_equal(load_sae_arrays(s)[name], value)


def test_cli_import_errors_are_one_line(session_path: Path, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "garbled"
    folder.mkdir()
    (folder / "sae_weights.safetensors").write_bytes(b"not a safetensors file")
    (folder / "cfg.json").write_text(json.dumps(_cfg()))
    assert main(["sae", "import", str(session_path), str(folder)]) == 2
    err = capsys.readouterr().err
    assert "not a readable safetensors file" in err and "Traceback" not in err
    assert main(["sae", "import", str(session_path), str(tmp_path / "missing")]) == 2
    assert "SAELens folder" in capsys.readouterr().err
    save_file(_tensors(), str(tmp_path / "lonely.safetensors"))
    assert main(["sae", "import", str(session_path), str(tmp_path / "lonely.safetensors")]) == 2
    assert "no cfg.json beside lonely.safetensors" in capsys.readouterr().err


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_weights_are_converted(session_path: Path, tmp_path: Path, dtype, capsys) -> None:
    with Session.open(session_path, read_only=True) as s:
        d = s.read_array("activations/train/a").shape[1]
    t = {name: torch.from_numpy(value).to(dtype) for name, value in _tensors(d_in=d, d_sae=8).items()}
    folder = tmp_path / "half"
    folder.mkdir()
    save_torch(t, str(folder / "sae_weights.safetensors"))
    name = str(dtype).removeprefix("torch.")
    (folder / "cfg.json").write_text(json.dumps(_cfg(d, 8, dtype=name)))
    assert main(["sae", "import", str(session_path), str(folder)]) == 0
    out = capsys.readouterr().out
    assert f"warning: cfg.json's dtype is {name}" in out and "converted to float32" in out
    with Session.open(session_path, read_only=True) as s:
        w = load_sae_arrays(s)
    assert w["encoder.weight"].dtype == np.float32
    np.testing.assert_array_equal(w["encoder.weight"], t["W_enc"].float().numpy().T)


# --------------------------------------------------------------------------- through a session


def test_session_round_trip_and_cli(session_path: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "sae-out"
    assert main(["sae", "export", str(session_path), str(out), "--json"]) == 0
    written = json.loads(capsys.readouterr().out)
    cfg = json.loads((out / "cfg.json").read_text())
    with Session.open(session_path, read_only=True) as s:
        original = load_sae_arrays(s)
        M_before = s.read_array("rankings/class_means")
        d = s.read_array("activations/train/a").shape[1]
    h = original["encoder.weight"].shape[0]
    assert cfg["d_in"] == d == written["d_in"] and cfg["d_sae"] == 2 * h
    assert cfg["metadata"]["salve_latent_map"] and written["notes"]
    W_dec = load_file(str(out / "sae_weights.safetensors"))["W_dec"]
    np.testing.assert_array_equal(W_dec, np.concatenate([original["decoder.weight"].T,
                                                         -original["decoder.weight"].T]))
    # exporting again without --force refuses and changes nothing
    before = (out / "cfg.json").stat().st_mtime_ns
    assert main(["sae", "export", str(session_path), str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    assert (out / "cfg.json").stat().st_mtime_ns == before

    assert main(["sae", "import", str(session_path), str(out)]) == 0
    assert "salve kind l1" in capsys.readouterr().out
    with Session.open(session_path) as s:
        for name, value in original.items():
            np.testing.assert_array_equal(load_sae_arrays(s)[name], value)
        stages = s.stages()
        assert stages["sae"].state == "done" and stages["sae"].info.get("imported") is True
        assert stages["rankings"].state == "stale"
        assert s.summary()["sae"]["engine"] == "imported"
        run_stage(s, "rankings")
        np.testing.assert_allclose(s.read_array("rankings/class_means"), M_before, rtol=1e-5, atol=1e-6)


def test_imported_relu_dictionary_drives_rankings_and_cards(session_path: Path, tmp_path: Path) -> None:
    """Rankings and the feature cards' latents both use the imported ReLU (the cards used the
    session's trained kind before, so they showed signed linear latents)."""
    from core.workflow.feature_card import split_latents

    with Session.open(session_path, read_only=True) as s:
        d = s.read_array("activations/train/a").shape[1]
    t = _tensors(d_in=d, d_sae=24, seed=5)
    folder = _folder(tmp_path / "relu", t, _cfg(d, 24, apply_b_dec_to_input=True))
    assert main(["sae", "import", str(session_path), str(folder)]) == 0
    with Session.open(session_path) as s:
        run_stage(s, "rankings")
        a = s.read_array("activations/train/a").astype(np.float64)
        labels = s.read_array("activations/train/labels")
        T = {k: v.astype(np.float64) for k, v in t.items()}
        u = np.maximum((a - T["b_dec"]) @ T["W_enc"] + T["b_enc"], 0)
        expected = np.stack([u[labels == c].mean(0) for c in range(int(labels.max()) + 1)])
        M = s.read_array("rankings/class_means")
        test_a = s.read_array("activations/test/a").astype(np.float64)
        cards = split_latents(s)
    np.testing.assert_allclose(M[: expected.shape[0]], expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(cards, np.maximum((test_a - T["b_dec"]) @ T["W_enc"] + T["b_enc"], 0),
                               rtol=1e-5, atol=1e-5)
    assert (cards >= 0).all()


def test_input_scale_folds_the_norm_scaling_factor(session_path: Path, tmp_path: Path, capsys) -> None:
    with Session.open(session_path, read_only=True) as s:
        d = s.read_array("activations/train/a").shape[1]
        a = s.read_array("activations/test/a").astype(np.float64)[:5]
    t = _tensors(d_in=d, d_sae=8, seed=7)
    folder = _folder(tmp_path / "scaled", t,
                     _cfg(d, 8, apply_b_dec_to_input=True, normalize_activations="expected_average_only_in"))
    assert main(["sae", "import", str(session_path), str(folder)]) == 2
    assert "--input-scale" in capsys.readouterr().err
    assert main(["sae", "import", str(session_path), str(folder), "--input-scale", "2.5"]) == 0
    assert "norm scaling factor 2.5 was folded" in capsys.readouterr().out
    with Session.open(session_path, read_only=True) as s:
        sae = sae_from_arrays(load_sae_arrays(s), kind="relu")
    T = {k: v.astype(np.float64) for k, v in t.items()}
    u = np.maximum((2.5 * a - T["b_dec"]) @ T["W_enc"] + T["b_enc"], 0)  # trained on 2.5·x
    with torch.no_grad():
        ours, a_hat = sae(torch.tensor(a, dtype=torch.float32))
    np.testing.assert_allclose(ours.numpy(), u, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(a_hat.numpy(), (u @ T["W_dec"] + T["b_dec"]) / 2.5, rtol=1e-4, atol=1e-4)


def test_imported_jumprelu_exports_back_as_jumprelu(session_path: Path, tmp_path: Path) -> None:
    with Session.open(session_path, read_only=True) as s:
        d = s.read_array("activations/train/a").shape[1]
    t = {**_tensors(d_in=d, d_sae=8, seed=9), "threshold": np.full(8, 0.25, np.float32)}
    folder = _folder(tmp_path / "jr", t, _cfg(d, 8, architecture="jumprelu", apply_b_dec_to_input=True))
    assert main(["sae", "import", str(session_path), str(folder)]) == 0
    assert main(["sae", "export", str(session_path), str(tmp_path / "out")]) == 0
    cfg = json.loads((tmp_path / "out" / "cfg.json").read_text())
    back = load_file(str(tmp_path / "out" / "sae_weights.safetensors"))
    assert (cfg["architecture"], cfg["apply_b_dec_to_input"]) == ("jumprelu", True)
    for name in ("W_enc", "W_dec", "b_dec", "threshold"):
        np.testing.assert_array_equal(back[name], t[name])
    np.testing.assert_allclose(back["b_enc"], t["b_enc"], rtol=1e-6, atol=1e-6)


def test_nested_or_huge_cfg_json_is_refused_in_one_line_and_writes_nothing(session_path: Path, tmp_path: Path,
                                                                          capsys) -> None:
    """Issue 23 (bounded parsing): a cfg.json nested 200,000 deep, or past the size limit, is one
    clear message (no RecursionError traceback) and leaves the session and the folder as they were."""
    from core.workflow.sae_io import CFG_MAX_BYTES

    with Session.open(session_path, read_only=True) as s:
        d = s.read_array("activations/train/a").shape[1]
        stages_before = {k: v.state for k, v in s.stages().items()}
        before = load_sae_arrays(s)
    deep = _folder(tmp_path / "deep", _tensors(d_in=d), _cfg(d))
    text = json.dumps(_cfg(d))
    (deep / "cfg.json").write_text(text[:-1] + ', "x": ' + "[" * 200_000 + "]" * 200_000 + "}")
    huge = _folder(tmp_path / "huge", _tensors(d_in=d), {**_cfg(d), "pad": "x" * CFG_MAX_BYTES})
    for folder, message in ((deep, "nested 200001 levels deep"), (huge, "kB, more than this tool reads")):
        listing = sorted((p.name, p.stat().st_mtime_ns) for p in folder.iterdir())
        assert main(["sae", "import", str(session_path), str(folder)]) == 2
        err = capsys.readouterr().err
        assert message in err and "cfg.json" in err, err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert sorted((p.name, p.stat().st_mtime_ns) for p in folder.iterdir()) == listing
    with Session.open(session_path, read_only=True) as s:
        assert {k: v.state for k, v in s.stages().items()} == stages_before
        assert s.read_json(SAE_IMPORT_KEY, None) is None
        for name, value in before.items():
            np.testing.assert_array_equal(load_sae_arrays(s)[name], value)
