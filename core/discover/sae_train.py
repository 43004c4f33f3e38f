"""The SAE's fast, resumable trainer (SPEC §2, paper A.4): :func:`train_sae`.

Training (:func:`train_sae`) does not use autograd or ``torch.optim``: the model is two matmuls,
so the gradients are written by hand (five matmuls), Adam follows the exact operation sequence of
``torch.optim.Adam``, and K seeds are trained at once. Two engines run this maths:

* **native** (the default for the L1 SAE on the CPU): one C call per seed and epoch
  (``core/discover/csrc/sae_l1_epoch.c``, compiled on first use by :mod:`core.discover.native`). At batch 32 the
  step is five 32×512×64 matmuls; through torch each costs ~17 µs on this project's AMD test
  machine (MKL takes its AVX2 path there) plus ~2 µs of dispatch per op, while the C loops use the
  machine's widest vectors and need no dispatch: ~6× the obvious DataLoader loop on one core
  against ~3.5× for the torch engine on two (``bench/RESULTS.md``).
* **torch** (TopK, GPUs, shapes the kernel does not cover, no C compiler, ``SALVE_NATIVE=0``):
  the same maths with ``bmm``/``baddbmm`` on a leading seed axis and torch's fused Adam on one flat
  buffer.

Each seed keeps its own generator (initialisation, then one ``randperm`` per epoch), so seed
``s`` trained in a batch of K gives the same SAE as seed ``s`` trained alone. Both engines are
checked against autograd and a plain ``torch.optim.Adam`` loop in ``tests/test_sae.py``;
``bench/bench_sae.py`` measures them.

Per-epoch metrics come from the values of the training steps themselves (no extra pass over
the data): each step stores u and the per-sample residual norm ||a − â|| into epoch buffers
that are reduced once per epoch. They therefore describe the parameters *during* the epoch (like a
logged training loss), not the end-of-epoch parameters. Definitions (history keys, one value per
seed and epoch): ``loss``/``recon``/``sparsity`` are sample-weighted means of the batch terms;
``ev`` = 1 − Σ||a − â||² / Σ||a − mean(a)||² over the epoch; ``l0`` = mean active latents per
sample (|u_k| > 1% of the sample's max |u|; exactly non-zero for TopK); ``dead`` = latents active
in no sample of the epoch; ``top5_share`` = mean share of a sample's L1 mass in its 5 largest
latents, estimated on 1,024 random samples of the epoch; ``lr`` = the epoch's learning rate.
"""

from __future__ import annotations

import ctypes
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from core.config import SAEConfig
from core.discover import native
from core.discover.sae import (
    PARAM_NAMES,
    TOP_SHARE_SAMPLES,
    SparseAutoencoder,
    sae_from_arrays,
    sparsity_from_abs,
)
from core.jobs import CancelToken, JobCancelled, JobFailed, ProgressFn, ProgressReporter

ADAM_BETAS = (0.9, 0.999)

ADAM_EPS = 1e-8

HISTORY_KEYS = ("loss", "recon", "sparsity", "l0", "top5_share", "ev", "dead", "lr")

STATE_FORMAT = 1

#: Above this many encoder weights (d·h) the compiled one-core kernel is not picked automatically.
NATIVE_AUTO_MAX_WEIGHTS = 1 << 20

@dataclass
class _Workspace:
    """Preallocated per-step buffers for one batch size (the last batch may be smaller)."""

    latents: Tensor  # (K, b, h)  u
    residual: Tensor  # (K, b, d)  â − a
    grad_latents: Tensor  # (K, b, h)  ∂L/∂(pre-activation)
    batch: Tensor  # (K, b, d)  the gathered activations
    ones: Tensor  # (K, 1, b)  sums over the batch as a matmul
    recon_scale: float  # 2 / (b·d): ∂ mean((â−a)²) / ∂â = recon_scale · (â − a)
    l1_scale: float  # λ / (b·h)
    abs_pre: Tensor | None = None  # TopK only
    top_values: Tensor | None = None
    top_index: Tensor | None = None
    mask: Tensor | None = None

class DataParallel:
    """This process's share of every batch when training under torch.distributed (DDP-style)."""

    def __init__(self, rank: int, world_size: int) -> None:
        self.rank, self.world_size = rank, world_size

    def rows(self, batch: int) -> tuple[int, int]:
        """Rows ``[lo, hi)`` of a batch of ``batch`` rows that this rank computes."""
        per, extra = divmod(batch, self.world_size)
        lo = self.rank * per + min(self.rank, extra)
        return lo, lo + per + (1 if self.rank < extra else 0)

    def all_reduce(self, tensor: Tensor) -> None:
        import torch.distributed as dist

        dist.all_reduce(tensor)


class FastSAETrainer:
    """K independent SAEs updated in lock-step with hand-written gradients and Adam.

    Parameters live in one flat buffer (and so do gradients and Adam moments), so one Adam update
    (one fused kernel, or seven in-place ops) covers all parameters of all seeds. Internally the weights are stored
    transposed (``encoder.weight.T`` as K×d×h, ``decoder.weight.T`` as K×h×d) so every matmul
    reads contiguous operands; :meth:`parameters_standard` converts back to ``nn.Linear`` layout.
    :meth:`train_epoch` hands a whole epoch to the compiled kernel when :attr:`engine` is
    ``"native"`` (``use_native``: None = when it applies, True = required, False = never);
    :meth:`forward_backward` and :meth:`adam_step` are the torch engine's step.
    """

    def __init__(
        self,
        params: Mapping[str, Tensor],
        *,
        kind: str = "l1",
        k: int = 8,
        l1_coeff: float = 0.0,
        device: torch.device | str = "cpu",
        fused_adam: bool | None = None,
        use_native: bool | None = None,
    ) -> None:
        enc = params["encoder.weight"]
        self.n_seeds, self.hidden, self.dim = enc.shape
        self.kind, self.k, self.l1_coeff = kind, k, float(l1_coeff)
        self.device = torch.device(device)
        K, h, d = self.n_seeds, self.hidden, self.dim
        self._shapes = {
            "encoder.weight": (K, d, h),
            "encoder.bias": (K, 1, h),
            "decoder.weight": (K, h, d),
            "decoder.bias": (K, 1, d),
        }
        total = sum(math.prod(shape) for shape in self._shapes.values())
        zeros = lambda: torch.zeros(total, device=self.device)  # noqa: E731
        self.flat, self.grad, self.exp_avg, self.exp_avg_sq = zeros(), zeros(), zeros(), zeros()
        self._denom = zeros()
        self.step = 0
        self._step_tensor = torch.zeros((), device=self.device)
        self._fused_adam = fused_adam if fused_adam is not None else _fused_adam_available(self.device)
        self.p = self._views(self.flat)
        self.g = self._views(self.grad)
        self._moments = (self._views(self.exp_avg), self._views(self.exp_avg_sq))
        self._fused_args = ([self.flat], [self.grad], [self.exp_avg], [self.exp_avg_sq], [], [self._step_tensor])
        self.native_status = "disabled by the caller"
        self._native = self._native_kernels(bool(use_native)) if use_native is not False else None
        if use_native and self._native is None:
            raise RuntimeError(f"the compiled SAE kernel cannot be used here: {self.native_status}")
        self.load_parameters(params)
        self._workspaces: dict[int, _Workspace] = {}
        self.data_parallel: DataParallel | None = None

    @property
    def engine(self) -> str:
        """``"native"`` (the compiled C epoch, ``core/discover/native.py``) or ``"torch"``."""
        return "native" if self._native is not None else "torch"

    def _native_kernels(self, forced: bool):
        """The compiled kernel when it covers this trainer (L1, CPU, d and h multiples of 16).

        Unless ``forced``, only for SAEs up to ``NATIVE_AUTO_MAX_WEIGHTS`` encoder weights: the
        kernel runs on one core, and past that size torch's multi-threaded BLAS is the better bet.
        """
        if self.kind != "l1" or self.device.type != "cpu":
            self.native_status = "the compiled kernel covers the L1 SAE on the CPU only"
            return None
        if self.dim % 16 or self.hidden % 16:
            self.native_status = "the compiled kernel needs d and h to be multiples of 16"
            return None
        if not forced and self.dim * self.hidden > NATIVE_AUTO_MAX_WEIGHTS:
            self.native_status = f"d·h = {self.dim * self.hidden:,} > {NATIVE_AUTO_MAX_WEIGHTS:,}: torch's threaded BLAS"
            return None
        lib = native.sae_kernels()
        self.native_status = native.status()
        return lib

    def _views(self, buffer: Tensor) -> dict[str, Tensor]:
        views, offset = {}, 0
        for name, shape in self._shapes.items():
            size = math.prod(shape)
            views[name] = buffer[offset : offset + size].view(shape)
            offset += size
        return views

    @staticmethod
    def _to_internal(name: str, value: Tensor) -> Tensor:
        return value.transpose(1, 2) if name.endswith("weight") else value.unsqueeze(1)

    @staticmethod
    def _to_standard(name: str, value: Tensor) -> Tensor:
        return value.transpose(1, 2) if name.endswith("weight") else value.squeeze(1)

    def _load(self, buffer: Tensor, values: Mapping[str, Tensor | np.ndarray]) -> None:
        for name, view in self._views(buffer).items():
            view.copy_(self._to_internal(name, torch.as_tensor(values[name])))

    def _export(self, buffer: Tensor) -> dict[str, np.ndarray]:
        return {
            name: self._to_standard(name, view).detach().cpu().numpy().copy()
            for name, view in self._views(buffer).items()
        }

    def load_parameters(self, params: Mapping[str, Tensor | np.ndarray]) -> None:
        self._load(self.flat, params)

    def load_optimizer(self, exp_avg: Mapping, exp_avg_sq: Mapping, step: int) -> None:
        self._load(self.exp_avg, exp_avg)
        self._load(self.exp_avg_sq, exp_avg_sq)
        self.step = int(step)

    def parameters_standard(self) -> dict[str, np.ndarray]:
        """Parameters in ``nn.Linear`` layout with a leading seed axis, as numpy copies."""
        return self._export(self.flat)

    def optimizer_standard(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        return self._export(self.exp_avg), self._export(self.exp_avg_sq)

    def gradients_standard(self) -> dict[str, Tensor]:
        """Gradients of the last :meth:`forward_backward` in ``nn.Linear`` layout (views)."""
        return {name: self._to_standard(name, view) for name, view in self.g.items()}

    def finite(self) -> Tensor:
        """Per-seed flag: are all parameters finite?"""
        return torch.stack([torch.isfinite(v.reshape(self.n_seeds, -1)).all(1) for v in self.p.values()]).all(0)

    def _workspace(self, batch: int) -> _Workspace:
        ws = self._workspaces.get(batch)
        if ws is None:
            K, h, d = self.n_seeds, self.hidden, self.dim
            empty = lambda *shape: torch.empty(shape, device=self.device)  # noqa: E731
            ws = _Workspace(
                latents=empty(K, batch, h),
                residual=empty(K, batch, d),
                grad_latents=empty(K, batch, h),
                batch=empty(K, batch, d),
                ones=torch.ones(K, 1, batch, device=self.device),
                recon_scale=2.0 / (batch * d),
                l1_scale=self.l1_coeff / (batch * h),
            )
            if self.kind == "topk":
                ws.abs_pre = empty(K, batch, h)
                ws.top_values = empty(K, batch, self.k)
                ws.top_index = torch.empty(K, batch, self.k, dtype=torch.long, device=self.device)
                ws.mask = empty(K, batch, h)
            self._workspaces[batch] = ws
        return ws

    def forward_backward(
        self, batch: Tensor, latents_out: Tensor | None = None, err_norm_out: Tensor | None = None
    ) -> None:
        """Gradients of the SAE loss for ``batch`` (K × b × d) into ``self.grad`` (torch path).

        ``latents_out`` (K × b × h) receives u, ``err_norm_out`` (K × b) each sample's ||â − a||
        (the epoch metrics). The maths, with r = â − a, c = 2/(b·d):
        ∂L/∂Dᵀ = c·uᵀr, ∂L/∂b_dec = c·Σ_b r, ∂L/∂u = c·r·D + λ/(b·h)·sign(u) (masked for TopK),
        ∂L/∂Eᵀ = aᵀ·∂L/∂u, ∂L/∂b_enc = Σ_b ∂L/∂u.
        """
        ws = self._workspace(batch.shape[1])
        p, g = self.p, self.g
        u, r, gu = ws.latents, ws.residual, ws.grad_latents
        torch.baddbmm(p["encoder.bias"], batch, p["encoder.weight"], out=u)
        if self.kind == "topk":
            torch.abs(u, out=ws.abs_pre)
            torch.topk(ws.abs_pre, self.k, dim=-1, out=(ws.top_values, ws.top_index))
            ws.mask.zero_().scatter_(-1, ws.top_index, 1.0)
            u.mul_(ws.mask)
        torch.baddbmm(p["decoder.bias"], u, p["decoder.weight"], out=r)
        r.sub_(batch)
        if latents_out is not None:
            latents_out.copy_(u)
        if err_norm_out is not None:
            torch.linalg.vector_norm(r, dim=-1, out=err_norm_out)
        c = ws.recon_scale
        g["decoder.weight"].baddbmm_(u.transpose(1, 2), r, beta=0.0, alpha=c)
        g["decoder.bias"].baddbmm_(ws.ones, r, beta=0.0, alpha=c)
        torch.sign(u, out=gu)
        gu.baddbmm_(r, p["decoder.weight"].transpose(1, 2), beta=ws.l1_scale, alpha=c)
        if self.kind == "topk":
            gu.mul_(ws.mask)
        g["encoder.weight"].baddbmm_(batch.transpose(1, 2), gu, beta=0.0)
        g["encoder.bias"].baddbmm_(ws.ones, gu, beta=0.0)

    def adam_step(self, lr: float) -> None:
        """One ``torch.optim.Adam`` update (defaults, no weight decay) of every parameter.

        Uses torch's own fused CPU/CUDA Adam kernel on the flat buffers when this torch has it
        (one kernel instead of seven passes), else :meth:`adam_step_reference`.
        """
        if self._fused_adam:
            self.step += 1
            self._step_tensor.fill_(float(self.step))
            beta1, beta2 = ADAM_BETAS
            torch._fused_adam_(
                *self._fused_args,
                lr=lr, beta1=beta1, beta2=beta2, weight_decay=0.0, eps=ADAM_EPS,
                amsgrad=False, maximize=False,
            )
        else:
            self.adam_step_reference(lr)

    def adam_step_reference(self, lr: float) -> None:
        """Adam written out with the exact op sequence of ``torch.optim.Adam``'s default path."""
        beta1, beta2 = ADAM_BETAS
        self.step += 1
        self.exp_avg.lerp_(self.grad, 1 - beta1)
        self.exp_avg_sq.mul_(beta2).addcmul_(self.grad, self.grad, value=1 - beta2)
        bias_correction1 = 1 - beta1 ** float(self.step)
        bias_correction2 = 1 - beta2 ** float(self.step)
        step_size = lr / bias_correction1
        torch.sqrt(self.exp_avg_sq, out=self._denom)
        self._denom.div_(bias_correction2**0.5).add_(ADAM_EPS)
        self.flat.addcdiv_(self.exp_avg, self._denom, value=-step_size)

    def train_epoch(
        self, data: Tensor, orders: Tensor, batch_size: int, lr: float, latents_buf: Tensor, err_norm_buf: Tensor
    ) -> None:
        """One pass over ``data`` (n × d); seed i visits samples in order ``orders[i]`` (K × n).

        Batches of ``batch_size``, the last one possibly smaller (like ``DataLoader(drop_last=False)``).
        ``latents_buf`` (K × n × h) and ``err_norm_buf`` (K × n) receive u and ||â − a|| in visit order.
        """
        if self._native is not None:
            self._train_epoch_native(data, orders, batch_size, lr, latents_buf, err_norm_buf)
            return
        n_seeds, n = orders.shape
        n_full = n // batch_size
        # (steps, K, b) so each step's indices for all seeds are one contiguous block
        full = orders[:, : n_full * batch_size].reshape(n_seeds, n_full, batch_size).transpose(0, 1).contiguous()
        if self.data_parallel is not None:
            latents_buf.zero_()  # each rank fills its part of every batch; summed below
            err_norm_buf.zero_()
        for step in range(n_full):
            self._train_step(data, full[step], step * batch_size, lr, latents_buf, err_norm_buf)
        if n_full * batch_size < n:
            self._train_step(data, orders[:, n_full * batch_size :], n_full * batch_size, lr,
                             latents_buf, err_norm_buf)
        if self.data_parallel is not None:
            self.data_parallel.all_reduce(latents_buf)
            self.data_parallel.all_reduce(err_norm_buf)

    def _train_step(
        self, data: Tensor, indices: Tensor, start: int, lr: float, latents_buf: Tensor, err_norm_buf: Tensor
    ) -> None:
        """One Adam step on the batch ``indices`` (K × B) whose epoch positions begin at ``start``.

        Data parallel: this rank takes rows ``[lo, hi)`` of the batch; its gradient, a mean over
        those rows, is weighted by their share of B and summed over ranks, which is the gradient
        of the whole batch: every rank then makes the same Adam update.
        """
        B = indices.shape[1]
        lo, hi = (0, B) if self.data_parallel is None else self.data_parallel.rows(B)
        if hi > lo:
            batch = self._workspace(hi - lo).batch
            torch.index_select(data, 0, indices[:, lo:hi].reshape(-1), out=batch.view(-1, data.shape[1]))
            window = slice(start + lo, start + hi)
            self.forward_backward(batch, latents_buf[:, window], err_norm_buf[:, window])
        else:
            self.grad.zero_()
        if self.data_parallel is not None:
            if hi > lo:
                self.grad.mul_((hi - lo) / B)
            self.data_parallel.all_reduce(self.grad)
        self.adam_step(lr)

    def _train_epoch_native(
        self, data: Tensor, orders: Tensor, batch_size: int, lr: float, latents_buf: Tensor, err_norm_buf: Tensor
    ) -> None:
        """:meth:`train_epoch` as one C call per seed (seeds are independent, so running them one
        after another gives what lock-step would; each starts from the shared Adam step count)."""
        n_seeds, n = orders.shape
        data = data.to(torch.float32).contiguous()  # no copy for train_sae's activations
        # C reads raw pointers: check every shape it relies on instead of crashing the process
        if data.shape[1] != self.dim or (n and (int(orders.min()) < 0 or int(orders.max()) >= data.shape[0])):
            raise ValueError(f"orders must index the rows of data (n × {self.dim})")
        if (tuple(latents_buf.shape) != (n_seeds, n, self.hidden) or tuple(err_norm_buf.shape) != (n_seeds, n)
                or latents_buf.dtype != torch.float32 or err_norm_buf.dtype != torch.float32
                or not (latents_buf.is_contiguous() and err_norm_buf.is_contiguous())):
            raise ValueError(f"latents_buf must be a contiguous float32 ({n_seeds}, {n}, {self.hidden}) tensor "
                             f"and err_norm_buf ({n_seeds}, {n})")
        args = native.EpochArgs(
            n=n, d=self.dim, h=self.hidden, batch=batch_size, lr=lr, l1_coeff=self.l1_coeff,
            beta1=ADAM_BETAS[0], beta2=ADAM_BETAS[1], eps=ADAM_EPS, adam_step=self.step,
        )
        exp_avg, exp_avg_sq = self._moments
        for seed in range(n_seeds):
            buffers = native.SAEBuffers()
            for slot, name in enumerate(PARAM_NAMES):
                buffers.param[slot] = self.p[name][seed].data_ptr()
                buffers.grad[slot] = self.g[name][seed].data_ptr()
                buffers.exp_avg[slot] = exp_avg[name][seed].data_ptr()
                buffers.exp_avg_sq[slot] = exp_avg_sq[name][seed].data_ptr()
            order = orders[seed].to(torch.int64).contiguous()
            args.adam_step = self.step
            code = self._native.salve_sae_l1_epoch(
                data.data_ptr(), order.data_ptr(), ctypes.byref(buffers), ctypes.byref(args),
                latents_buf[seed].data_ptr(), err_norm_buf[seed].data_ptr(),
            )
            if code != 0:
                raise RuntimeError(f"compiled SAE kernel failed (code {code}: 1 = bad shape, 2 = out of memory)")
        self.step = int(args.adam_step)

def _fused_adam_available(device: torch.device) -> bool:
    """Does this torch build have the fused Adam kernel for ``device``? (CPU since torch 2.4.)"""
    if not hasattr(torch, "_fused_adam_"):
        return False
    try:
        one = [torch.zeros(1, device=device)]
        torch._fused_adam_(one, [torch.zeros(1, device=device)], [torch.zeros(1, device=device)],
                           [torch.zeros(1, device=device)], [], [torch.ones((), device=device)],
                           lr=0.0, beta1=0.9, beta2=0.999, weight_decay=0.0, eps=1e-8,
                           amsgrad=False, maximize=False)
    except (RuntimeError, NotImplementedError):
        return False
    return True

@dataclass
class SAETrainState:
    """Everything needed to continue training bit-for-bit (for K seeds at once).

    Parameter and Adam-moment arrays use ``nn.Linear`` layout with a leading seed axis;
    ``history`` maps each of :data:`HISTORY_KEYS` to a (K × epochs) array.
    """

    kind: str
    k: int
    seeds: list[int]
    epoch: int  # completed epochs
    lr: float  # learning rate for the next epoch (StepLR position together with ``epoch``)
    adam_step: int
    n_samples: int
    dim: int
    hidden: int
    params: dict[str, np.ndarray]
    exp_avg: dict[str, np.ndarray]
    exp_avg_sq: dict[str, np.ndarray]
    generator_states: np.ndarray  # (K × state bytes) uint8, torch CPU generators
    history: dict[str, np.ndarray] = field(default_factory=dict)

    def to_arrays(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Flat ``{name: array}`` plus JSON-able scalars, for the HDF5 session store."""
        arrays: dict[str, np.ndarray] = {"generator_states": self.generator_states}
        for prefix, group in (("params", self.params), ("exp_avg", self.exp_avg),
                              ("exp_avg_sq", self.exp_avg_sq), ("history", self.history)):
            arrays.update({f"{prefix}.{name}": value for name, value in group.items()})
        scalars = {
            "format": STATE_FORMAT, "kind": self.kind, "k": self.k, "seeds": list(self.seeds),
            "epoch": self.epoch, "lr": self.lr, "adam_step": self.adam_step,
            "n_samples": self.n_samples, "dim": self.dim, "hidden": self.hidden,
        }
        return arrays, scalars

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray], scalars: Mapping[str, Any]) -> SAETrainState:
        if scalars.get("format") != STATE_FORMAT:
            raise ValueError(
                f"SAE checkpoint format {scalars.get('format')} is not supported (expected "
                f"{STATE_FORMAT}); re-train the SAE"
            )
        missing = [f"params.{n}" for n in PARAM_NAMES if f"params.{n}" not in arrays]
        if missing or "generator_states" not in arrays:
            raise ValueError(f"SAE checkpoint is incomplete (missing {missing or 'generator_states'}); re-train the SAE")

        def group(prefix: str) -> dict[str, np.ndarray]:
            return {key[len(prefix) + 1 :]: np.asarray(value) for key, value in arrays.items()
                    if key.startswith(prefix + ".")}

        return cls(
            kind=str(scalars["kind"]), k=int(scalars["k"]), seeds=[int(s) for s in scalars["seeds"]],
            epoch=int(scalars["epoch"]), lr=float(scalars["lr"]), adam_step=int(scalars["adam_step"]),
            n_samples=int(scalars["n_samples"]), dim=int(scalars["dim"]), hidden=int(scalars["hidden"]),
            params=group("params"), exp_avg=group("exp_avg"), exp_avg_sq=group("exp_avg_sq"),
            generator_states=np.asarray(arrays["generator_states"], dtype=np.uint8),
            history=group("history"),
        )

@dataclass
class SAEResult:
    """Outcome of :func:`train_sae`.

    ``weights``: final parameters as numpy arrays in ``nn.Linear`` layout with a leading seed axis
    (``encoder.weight`` K×h×d, ``decoder.weight`` K×d×h, biases K×h / K×d); ``history``: per-epoch
    metrics, each (K × epochs); ``state``: the final :class:`SAETrainState` (resume to train longer);
    ``engine``: ``"native"`` or ``"torch"`` (see the module docstring), ``engine_note`` why.
    """

    config: SAEConfig
    seeds: list[int]
    weights: dict[str, np.ndarray]
    history: dict[str, np.ndarray]
    state: SAETrainState
    engine: str = "torch"
    engine_note: str = ""

    def sae(self, seed_index: int = 0) -> SparseAutoencoder:
        """The trained SAE of one seed as an ``nn.Module`` (CPU)."""
        return sae_from_arrays(self.weights, seed_index, kind=self.config.kind, k=self.config.k)

    def decoder_directions(self, seed_index: int = 0) -> np.ndarray:
        """``D`` (d × h) of one seed."""
        return self.weights["decoder.weight"][seed_index]

def _as_activations(activations: Tensor | np.ndarray, device: torch.device) -> Tensor:
    a = torch.as_tensor(activations)
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(
            f"activations must be a (samples × features) matrix, got shape {tuple(a.shape)}; "
            "extract activations first"
        )
    if not a.is_floating_point():
        raise ValueError(f"activations must be floating point, got {a.dtype}")
    a = a.to(device=device, dtype=torch.float32)
    step = max(1, STAT_CHUNK_ELEMENTS // a.shape[1])  # isfinite makes float temporaries: in chunks
    if not all(bool(torch.isfinite(a[lo : lo + step]).all()) for lo in range(0, a.shape[0], step)):
        raise ValueError("activations contain NaN or inf values; re-extract them (check the backbone)")
    return a.contiguous()

def _initial_state(config: SAEConfig, seeds: list[int], n: int, d: int) -> SAETrainState:
    params: dict[str, list[np.ndarray]] = {name: [] for name in PARAM_NAMES}
    gen_states = []
    for seed in seeds:
        generator = torch.Generator().manual_seed(seed)
        sae = SparseAutoencoder(d, config.hidden, config.kind, config.k, generator=generator)
        for name, value in sae.state_dict().items():
            params[name].append(value.numpy())
        gen_states.append(generator.get_state().numpy())
    stacked = {name: np.stack(values) for name, values in params.items()}
    zeros = {name: np.zeros_like(value) for name, value in stacked.items()}
    return SAETrainState(
        kind=config.kind, k=config.k, seeds=list(seeds), epoch=0, lr=float(config.lr), adam_step=0,
        n_samples=n, dim=d, hidden=config.hidden, params=stacked, exp_avg=zeros,
        exp_avg_sq={name: z.copy() for name, z in zeros.items()},
        generator_states=np.stack(gen_states),
        history={key: np.zeros((len(seeds), 0)) for key in HISTORY_KEYS},
    )

def _check_resume(state: SAETrainState, config: SAEConfig, n: int, d: int) -> None:
    problems = []
    if (state.n_samples, state.dim) != (n, d):
        problems.append(f"it was trained on {state.n_samples}×{state.dim} activations, these are {n}×{d}")
    if (state.kind, state.hidden) != (config.kind, config.hidden) or (
        config.kind == "topk" and state.k != config.k
    ):
        problems.append(f"it is a {state.kind} SAE with {state.hidden} latents, the config asks for "
                        f"{config.kind} with {config.hidden}")
    if problems:
        raise ValueError("cannot resume SAE training: " + "; ".join(problems) + ". Start a new training.")

@dataclass
class EpochStats:
    """One epoch's metrics per seed, from the training steps themselves (see the module docstring).

    ``sq_err``: Σ ||a − â||² over the epoch (float64); ``l0``, ``top5_share``, ``dead``,
    ``mean_abs`` as in :func:`core.discover.sae.sparsity_from_abs`.
    """

    sq_err: Tensor
    l0: Tensor
    top5_share: Tensor
    dead: Tensor
    mean_abs: Tensor


#: One epoch of training: ``(trainer, generators, lr, epoch) → EpochStats``; it draws its
#: shuffling from the seeds' generators only, so a checkpointed state resumes exactly.
EpochRunner = Callable[[FastSAETrainer, list[torch.Generator], float, int], EpochStats]


def in_memory_epoch(data: Tensor, config: SAEConfig, n_seeds: int) -> EpochRunner:
    """The epoch over activations held in memory: one full ``randperm`` per seed."""
    n = data.shape[0]
    latents_buf = torch.empty(n_seeds, n, config.hidden, device=data.device)
    err_norm_buf = torch.empty(n_seeds, n, device=data.device)

    def run(trainer: FastSAETrainer, generators: list[torch.Generator], lr: float, epoch: int) -> EpochStats:
        orders = torch.stack([torch.randperm(n, generator=g) for g in generators]).to(data.device)
        trainer.train_epoch(data, orders, config.batch_size, lr, latents_buf, err_norm_buf)
        stats = sparsity_from_abs(latents_buf.abs(), config.kind == "topk", TOP_SHARE_SAMPLES)
        return EpochStats(err_norm_buf.double().square().sum(1), stats["l0"], stats["top5_share"],
                          stats["dead"], stats["mean_abs"])

    return run


#: Rows per float64 step of the whole-array statistics (bounds their temporaries to ~50 MB).
STAT_CHUNK_ELEMENTS = 1 << 22


def centred_energy_of(data: Tensor) -> float:
    """Σ ||a − mean(a)||² in float64 (the explained variance's denominator), two passes over
    row chunks so the float64 copies stay small whatever the size of ``data``."""
    step = max(1, STAT_CHUNK_ELEMENTS // max(1, data.shape[1]))
    total = torch.zeros(data.shape[1], dtype=torch.float64, device=data.device)
    for lo in range(0, data.shape[0], step):
        total += data[lo : lo + step].double().sum(0)
    mean = total / data.shape[0]
    return float(sum(float((data[lo : lo + step].double() - mean).pow(2).sum())
                     for lo in range(0, data.shape[0], step)))


def train_sae(
    activations: Tensor | np.ndarray,
    config: SAEConfig,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
    *,
    n_seeds: int = 1,
    resume: SAETrainState | None = None,
    on_checkpoint: Callable[[SAETrainState], None] | None = None,
    device: torch.device | str | None = None,
    native: bool | None = None,
    data_parallel: DataParallel | None = None,
) -> SAEResult:
    """Train ``n_seeds`` SAEs (seeds ``config.seed … config.seed + n_seeds − 1``) on ``activations``.

    Paper schedule from ``config``: Adam, StepLR (×``lr_gamma`` every ``lr_step_epochs``), batches
    of ``batch_size`` reshuffled each epoch by a generator seeded with the seed. ``on_checkpoint``
    gets the state every ``checkpoint_every`` epochs, at the end, and before a cancellation raises
    :class:`JobCancelled` (cancel is checked between epochs). A NaN/inf loss raises
    :class:`JobFailed` without checkpointing the bad state. ``resume`` continues a saved state
    exactly (its seeds, learning-rate position and shuffling); the run ends at ``config.epochs``.
    ``native``: None picks the compiled engine where it applies, True requires it, False never.
    ``data_parallel``: train as one rank of a torch.distributed group (torch engine; every rank
    passes the same activations and config and ends with the same weights).
    Activations larger than memory: :func:`core.discover.sae_stream.train_sae_streamed`.
    """
    device = torch.device("cpu") if device is None else torch.device(device)
    _check_settings(config, n_seeds)
    data = _as_activations(activations, device)
    n, d = data.shape
    state = _start_state(config, n_seeds, n, d, resume)
    with torch.no_grad():
        energy = centred_energy_of(data)
    return run_training(
        config, state, in_memory_epoch(data, config, len(state.seeds)), energy, progress, cancel,
        resumed=resume is not None, on_checkpoint=on_checkpoint, device=device,
        native=False if data_parallel is not None else native, data_parallel=data_parallel,
    )


def _check_settings(config: SAEConfig, n_seeds: int) -> None:
    problems = config.validate()
    if problems:
        raise ValueError("invalid SAE settings: " + "; ".join(problems))
    if n_seeds < 1:
        raise ValueError(f"n_seeds must be ≥ 1, got {n_seeds}")


def _start_state(config: SAEConfig, n_seeds: int, n: int, d: int, resume: SAETrainState | None) -> SAETrainState:
    """A fresh state for ``n_seeds`` seeds, or ``resume`` once it is checked to fit."""
    if resume is None:
        return _initial_state(config, [config.seed + i for i in range(n_seeds)], n, d)
    _check_resume(resume, config, n, d)
    return resume


def run_training(
    config: SAEConfig,
    state: SAETrainState,
    run_epoch: EpochRunner,
    centred_energy: float,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
    *,
    resumed: bool = False,
    on_checkpoint: Callable[[SAETrainState], None] | None = None,
    device: torch.device | str = "cpu",
    native: bool | None = None,
    data_parallel: DataParallel | None = None,
) -> SAEResult:
    """The training loop shared by the in-memory and streamed epochs: schedule, metrics,
    divergence check, checkpoints and cancellation (see :func:`train_sae`)."""
    device = torch.device(device)
    seeds, n_k = list(state.seeds), len(state.seeds)
    n, d = state.n_samples, state.dim
    trainer = FastSAETrainer(
        {name: torch.from_numpy(np.ascontiguousarray(v)) for name, v in state.params.items()},
        kind=config.kind, k=config.k, l1_coeff=config.l1_coeff, device=device, use_native=native,
    )
    trainer.data_parallel = data_parallel
    trainer.load_optimizer(state.exp_avg, state.exp_avg_sq, state.adam_step)
    generators = []
    for row in state.generator_states:
        generator = torch.Generator()
        generator.set_state(torch.from_numpy(np.ascontiguousarray(row, dtype=np.uint8)))
        generators.append(generator)
    history = {key: [state.history[key][:, i] for i in range(state.history[key].shape[1])]
               if key in state.history else [] for key in HISTORY_KEYS}
    epoch, lr = state.epoch, state.lr

    reporter = ProgressReporter("sae", total=config.epochs, progress=progress, start=state.epoch)
    last_checkpoint = state.epoch if resumed else None

    def snapshot() -> SAETrainState:
        exp_avg, exp_avg_sq = trainer.optimizer_standard()
        return SAETrainState(
            kind=config.kind, k=config.k, seeds=seeds, epoch=epoch, lr=lr, adam_step=trainer.step,
            n_samples=n, dim=d, hidden=config.hidden, params=trainer.parameters_standard(),
            exp_avg=exp_avg, exp_avg_sq=exp_avg_sq,
            generator_states=np.stack([g.get_state().numpy() for g in generators]),
            history={key: np.stack(values, axis=1) if values else np.zeros((n_k, 0))
                     for key, values in history.items()},
        )

    with torch.no_grad():
        while epoch < config.epochs:
            if cancel is not None and cancel.cancelled:
                if on_checkpoint is not None:
                    on_checkpoint(snapshot())
                raise JobCancelled(f"SAE training cancelled after epoch {epoch}; progress was saved")
            stats = run_epoch(trainer, generators, lr, epoch)

            sq_err = stats.sq_err
            recon = sq_err / (n * d)
            sparsity = config.l1_coeff * stats.mean_abs.double()
            bad = ~(torch.isfinite(recon + sparsity) & trainer.finite())
            if bool(bad.any()):
                seed_text = ", ".join(str(seeds[i]) for i in torch.nonzero(bad).flatten().tolist())
                kept = (f"the last good checkpoint (epoch {last_checkpoint}) is kept"
                        if last_checkpoint is not None else "no checkpoint was written yet")
                raise JobFailed(
                    f"SAE training diverged at epoch {epoch + 1} (seed {seed_text}): the loss became "
                    f"NaN/inf; {kept}. Try a lower learning rate (now {lr:g}) or a lower L1 "
                    f"coefficient (now {config.l1_coeff:g})."
                )
            values = {
                "loss": recon + sparsity, "recon": recon, "sparsity": sparsity,
                "l0": stats.l0, "top5_share": stats.top5_share,
                "ev": 1.0 - sq_err / centred_energy if centred_energy > 0 else torch.full_like(recon, float("nan")),
                "dead": stats.dead, "lr": torch.full_like(recon, lr),
            }
            for key in HISTORY_KEYS:
                history[key].append(values[key].double().cpu().numpy())
            epoch += 1
            if epoch % config.lr_step_epochs == 0:  # StepLR's chained update, same float ops
                lr = lr * config.lr_gamma
            reporter.report(
                epoch, f"epoch {epoch}/{config.epochs}",
                **{key: float(np.mean(history[key][-1])) for key in ("loss", "l0", "ev", "dead")},
                lr=float(history["lr"][-1][0]),
            )
            if on_checkpoint is not None and (
                epoch % max(1, config.checkpoint_every) == 0 or epoch == config.epochs
            ):
                on_checkpoint(snapshot())
                last_checkpoint = epoch

    final = snapshot()
    return SAEResult(config=config, seeds=seeds, weights=final.params, history=final.history, state=final,
                     engine=trainer.engine, engine_note=trainer.native_status)
