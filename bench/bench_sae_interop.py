"""SAE interop measured against the real SAELens package, per kind and direction (issue 22).

Builds two small real sessions (Shapes, ResNet-18, one L1 and one TopK SAE trained by salve),
then for each kind and direction reports the largest difference between what salve computes and
what SAELens computes on the session's test activations:

- **salve → SAELens**: ``export_saelens`` then ``SAE.load_from_disk``; latents (the linear SAE
  through its documented 2h mapping ``u_k = f_k − f_{k+h}``) and reconstructions;
- **SAELens → salve**: a SAELens SAE with random non-zero weights saved with ``save_model``,
  ``import_sae`` into the session, ``load_sae(session).encode`` vs SAELens' ``encode``;
- **round trips**: the largest weight difference after salve → SAELens → salve and
  SAELens → salve → SAELens.

Needs the interop extra. Run: ``.venv/bin/python bench/bench_sae_interop.py`` (prints markdown).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from core.config import BackboneConfig, DataConfig, SAEConfig, SessionConfig
from core.store.session import Session, copy_session
from core.workflow.pipeline import load_activations, load_sae, load_sae_arrays, run_pipeline
from core.workflow.sae_io import export_saelens, import_sae, read_saelens, write_saelens


def build(path: Path, kind: str) -> None:
    config = SessionConfig(
        name=path.stem, device="cpu",
        data=DataConfig(kind="shapes", image_size=32, n_train=400, n_test=200, seed=3),
        backbone=BackboneConfig(arch="resnet18", epochs=1, batch_size=32, lr=1e-3, augment=False),
        sae=SAEConfig(kind=kind, hidden=64, k=8, epochs=30, batch_size=32, lr_step_epochs=10,
                      checkpoint_every=10),
    )
    with Session.create(path, config) as session:
        run_pipeline(session)


def diff(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float]:
    """(max |a − b|, that over max |b|)."""
    a, b = a.double(), b.double()
    d = float((a - b).abs().max())
    return d, d / float(b.abs().max())


def test_rows(session: Session) -> torch.Tensor:
    return torch.from_numpy(np.asarray(load_activations(session, "test")["a"], dtype=np.float32))


def export_rows(path: Path, tmp: Path, saelens) -> list[tuple]:
    with Session.open(path, read_only=True) as s:
        kind, sae, a = s.config.sae.kind, load_sae(s), test_rows(s)
        export_saelens(s, tmp / f"export-{kind}")
        weights = load_sae_arrays(s)
    theirs = saelens.SAE.load_from_disk(tmp / f"export-{kind}", device="cpu")
    with torch.no_grad():
        f = theirs.encode(a)
        x_hat = theirs.decode(f)
        u, a_hat = sae(a)
    if kind == "l1":
        h = u.shape[1]
        f = f[:, :h] - f[:, h:]
    theirs.save_model(tmp / f"again-{kind}")
    tensors, cfg, _, dtypes = read_saelens(tmp / f"again-{kind}")
    from core.discover.sae_interop import from_saelens

    back = from_saelens(tensors, cfg, a.shape[1], source_dtypes=dtypes).weights
    trip = max(float(np.abs(back[n] - weights[n]).max()) for n in weights)
    return [(kind, f"salve → SAELens `{type(theirs).__name__}`", *diff(f, u), *diff(x_hat, a_hat),
             trip, len(a))]


def saelens_sae(saelens, architecture: str, d: int, h: int = 64, **cfg):
    classes = {"standard": (saelens.StandardSAE, saelens.StandardSAEConfig),
               "topk": (saelens.TopKSAE, saelens.TopKSAEConfig),
               "abstopk": (saelens.AbsTopKSAE, saelens.AbsTopKSAEConfig),
               "jumprelu": (saelens.JumpReLUSAE, saelens.JumpReLUSAEConfig)}
    sae_cls, cfg_cls = classes[architecture]
    sae = sae_cls(cfg_cls(d_in=d, d_sae=h, **cfg))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in sae.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.05 if name.startswith("W") else 0.2))
            if name == "threshold":
                p.abs_()
    return sae


IMPORTS = [
    ("standard", {"apply_b_dec_to_input": True}),
    ("standard", {"apply_b_dec_to_input": True, "normalize_activations": "layer_norm"}),
    ("topk", {"k": 8, "apply_b_dec_to_input": True, "rescale_acts_by_decoder_norm": True}),
    ("abstopk", {"k": 8, "apply_b_dec_to_input": True}),
    ("jumprelu", {"apply_b_dec_to_input": True}),
    ("jumprelu", {"apply_b_dec_to_input": False, "normalize_activations": "constant_norm_rescale"}),
]


def import_rows(path: Path, tmp: Path, saelens) -> list[tuple]:
    from core.discover.sae_interop import to_saelens

    rows = []
    for i, (architecture, cfg) in enumerate(IMPORTS):
        target = tmp / f"import-{i}.h5"
        copy_session(path, target)
        with Session.open(target) as s:
            a = test_rows(s)
            theirs = saelens_sae(saelens, architecture, a.shape[1], **cfg)
            theirs.save_model(tmp / f"saelens-{i}")
            record = import_sae(s, tmp / f"saelens-{i}")
            sae = load_sae(s)
        with torch.no_grad():
            f = theirs.encode(a)
            x_hat = theirs.decode(f)
            u, a_hat = sae(a)
        tensors, out_cfg = to_saelens(load_sae_arrays_of(target), record["kind"], record["k"],
                                      record["input_norm"], record["apply_b_dec_to_input"])
        write_saelens(tmp / f"back-{i}", tensors, out_cfg)
        again = saelens.SAE.load_from_disk(tmp / f"back-{i}", device="cpu")
        if getattr(theirs.cfg, "rescale_acts_by_decoder_norm", False):
            theirs.fold_W_dec_norm()  # the documented mapping
        original = theirs.state_dict()
        trip = max(float((again.state_dict()[n] - original[n]).abs().max()) for n in original)
        label = architecture + "".join(f", {k}={v}" for k, v in cfg.items() if k != "apply_b_dec_to_input")
        rows.append((record["kind"], f"SAELens `{label}` → salve", *diff(u, f), *diff(a_hat, x_hat),
                     trip, len(a)))
    return rows


def load_sae_arrays_of(path: Path) -> dict[str, np.ndarray]:
    with Session.open(path, read_only=True) as s:
        return load_sae_arrays(s)


def main() -> int:
    try:
        import sae_lens
    except ImportError:
        print("sae-lens is not installed: pip install -e '.[interop]'", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        paths = {kind: tmp / f"{kind}.h5" for kind in ("l1", "topk")}
        for kind, path in paths.items():
            build(path, kind)
        rows = export_rows(paths["l1"], tmp, sae_lens) + export_rows(paths["topk"], tmp, sae_lens)
        rows += import_rows(paths["l1"], tmp, sae_lens)
    print(f"sae-lens {sae_lens.__version__}, torch {torch.__version__}\n")
    print("| salve kind | direction | max \\|Δu\\| | relative | max \\|Δx̂\\| | relative | round-trip max \\|Δw\\| | rows |")
    print("|---|---|---|---|---|---|---|---|")
    for kind, direction, du, ru, dx, rx, trip, n in rows:
        print(f"| {kind} | {direction} | {du:.2e} | {ru:.2e} | {dx:.2e} | {rx:.2e} | {trip:.2e} | {n} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
