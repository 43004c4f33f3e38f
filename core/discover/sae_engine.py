"""The SAE training engines (SPEC §2, paper A.4): :class:`FastSAETrainer` runs K SAEs in lock-step.

See :mod:`core.discover.sae_train` for the maths and for when each engine (``native``: one C
call per seed and epoch; ``torch``: batched ``bmm`` and fused Adam) is picked.
"""

from __future__ import annotations

import ctypes
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from core.discover import native
from core.discover.sae import PARAM_NAMES

ADAM_BETAS = (0.9, 0.999)

ADAM_EPS = 1e-8

#: Up to this many encoder weights (d·h) the compiled kernel is picked without measuring: there
#: torch's per-op dispatch dominates a step, and the kernel wins by ~5× or more.
NATIVE_AUTO_MAX_WEIGHTS = 1 << 16

#: Steps each engine runs when their cost is measured (after one warm-up epoch of two steps).
PROBE_STEPS = 6

#: ``(kind, d, h, seeds, batch, threads) → (kernel threads or 0 for torch, why)``: the measured
#: choice, once a process.
_engine_choices: dict[tuple[str, int, int, int, int, int], tuple[int, str]] = {}

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
    l1_scales: Tensor | None = None  # (K, 1, 1) λ_i / (b·h) when the seeds have different λ
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
        l1_coeff: float | Sequence[float] = 0.0,
        device: torch.device | str = "cpu",
        fused_adam: bool | None = None,
        use_native: bool | None = None,
        batch_size: int = 32,
        native_threads: int | None = None,
    ) -> None:
        enc = params["encoder.weight"]
        self.n_seeds, self.hidden, self.dim = enc.shape
        self.kind, self.k = kind, k
        # one λ for all seeds, or one per seed (the width/λ search trains a grid of λ together)
        coeffs = [float(c) for c in l1_coeff] if isinstance(l1_coeff, Sequence) else [float(l1_coeff)] * self.n_seeds
        if len(coeffs) != self.n_seeds:
            raise ValueError(f"got {len(coeffs)} L1 coefficients for {self.n_seeds} seeds")
        self.l1_coeffs, self.l1_coeff = coeffs, coeffs[0]
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
        self.batch_size = int(batch_size)
        self.native_threads = native_threads if native_threads is not None else default_native_threads()
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

        Unless ``forced``: up to ``NATIVE_AUTO_MAX_WEIGHTS`` encoder weights always (on the 1 or
        2 threads that measured faster for the shape); above, only where it measured faster than the
        torch engine for this shape (:func:`measured_engine`, which also picks 1 or 2 threads:
        a second thread halves an idle machine's step, but on a loaded one the per-step
        barrier waits for a descheduled thread). ``SALVE_SAE_ENGINE=native|torch`` skips the
        measurement.
        """
        if self.kind != "l1" or self.device.type != "cpu":
            self.native_status = "the compiled kernel covers the L1 SAE on the CPU only"
            return None
        if self.dim % 16 or self.hidden % 16:
            self.native_status = "the compiled kernel needs d and h to be multiples of 16"
            return None
        lib = native.sae_kernels()
        self.native_status = native.status()
        if lib is None or forced:
            return lib
        if self.dim * self.hidden <= NATIVE_AUTO_MAX_WEIGHTS:
            self.native_threads = 1
            if default_native_threads() == 2 and self.hidden % 32 == 0:  # 1 or 2 threads: measured
                self.native_threads, why = measured_engine(self.dim, self.hidden, self.n_seeds, self.batch_size,
                                                           with_torch=False)
                self.native_status += f"; {why}"
            return lib
        wanted = os.environ.get("SALVE_SAE_ENGINE", "")
        if wanted in ("native", "torch"):
            self.native_status = f"SALVE_SAE_ENGINE={wanted}"
            return lib if wanted == "native" else None
        threads, why = measured_engine(self.dim, self.hidden, self.n_seeds, self.batch_size)
        self.native_status = why
        if threads:
            self.native_threads = threads
        return lib if threads else None

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
            if len(set(self.l1_coeffs)) > 1:
                ws.l1_scales = torch.tensor(self.l1_coeffs, device=self.device).view(K, 1, 1) / (batch * h)
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
        r, gu = ws.residual, ws.grad_latents
        # u straight into the caller's epoch buffer when it is one block (one seed): no copy
        direct = latents_out is not None and latents_out.is_contiguous() and latents_out.shape == ws.latents.shape
        u = latents_out if direct else ws.latents
        torch.baddbmm(p["encoder.bias"], batch, p["encoder.weight"], out=u)
        if self.kind == "topk":
            torch.abs(u, out=ws.abs_pre)
            torch.topk(ws.abs_pre, self.k, dim=-1, out=(ws.top_values, ws.top_index))
            ws.mask.zero_().scatter_(-1, ws.top_index, 1.0)
            u.mul_(ws.mask)
        torch.baddbmm(p["decoder.bias"], u, p["decoder.weight"], out=r)
        r.sub_(batch)
        if latents_out is not None and not direct:
            latents_out.copy_(u)
        if err_norm_out is not None:
            torch.linalg.vector_norm(r, dim=-1, out=err_norm_out)
        c = ws.recon_scale
        g["decoder.weight"].baddbmm_(u.transpose(1, 2), r, beta=0.0, alpha=c)
        g["decoder.bias"].baddbmm_(ws.ones, r, beta=0.0, alpha=c)
        torch.sign(u, out=gu)
        if ws.l1_scales is None:
            gu.baddbmm_(r, p["decoder.weight"].transpose(1, 2), beta=ws.l1_scale, alpha=c)
        else:  # per-seed λ: scale sign(u) first, then add c·r·D
            gu.mul_(ws.l1_scales).baddbmm_(r, p["decoder.weight"].transpose(1, 2), alpha=c)
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
            threads=self.native_threads,
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
            args.adam_step, args.l1_coeff = self.step, self.l1_coeffs[seed]
            code = self._native.salve_sae_l1_epoch(
                data.data_ptr(), order.data_ptr(), ctypes.byref(buffers), ctypes.byref(args),
                latents_buf[seed].data_ptr(), err_norm_buf[seed].data_ptr(),
            )
            if code != 0:
                raise RuntimeError(f"compiled SAE kernel failed (code {code}: 1 = bad shape, 2 = out of memory)")
        self.step = int(args.adam_step)

def default_native_threads() -> int:
    """Threads for the compiled kernel when nothing was measured: 2 (its two fixed halves of the
    latents) unless torch is limited to one (``OMP_NUM_THREADS=1``, ``torch.set_num_threads(1)``).
    Results do not depend on it."""
    return 2 if torch.get_num_threads() >= 2 else 1


def measured_engine(dim: int, hidden: int, n_seeds: int, batch_size: int,
                    with_torch: bool = True) -> tuple[int, str]:
    """Which engine is fastest for this L1 SAE shape: ``(threads, why)``, threads = 0 for the
    torch engine (a candidate only ``with_torch``), else the compiled kernel's thread count (1,
    or 2 where torch may use 2).

    Each candidate runs :data:`PROBE_STEPS` steps (4× that without torch: the small shapes'
    steps are short) on random data of the shape after a warm-up, twice, interleaved; the
    smallest time wins. Measured once per process and shape.
    """
    key = ("l1" if with_torch else "l1-kernel", dim, hidden, n_seeds, batch_size, torch.get_num_threads())
    if key not in _engine_choices:
        gen = torch.Generator().manual_seed(0)
        params = {
            "encoder.weight": torch.randn(n_seeds, hidden, dim, generator=gen) / dim**0.5,
            "encoder.bias": torch.zeros(n_seeds, hidden),
            "decoder.weight": torch.randn(n_seeds, dim, hidden, generator=gen) / hidden**0.5,
            "decoder.bias": torch.zeros(n_seeds, dim),
        }
        candidates = [1, 2] if default_native_threads() == 2 and hidden % 32 == 0 else [1]
        candidates += [0] if with_torch else []
        probe = PROBE_STEPS if with_torch else 4 * PROBE_STEPS
        trainers = {threads: FastSAETrainer(params, l1_coeff=1e-3, use_native=threads > 0,
                                            batch_size=batch_size, native_threads=max(1, threads))
                    for threads in candidates}
        seconds = {threads: math.inf for threads in trainers}
        for rows in (2 * batch_size, probe * batch_size, probe * batch_size):  # warm-up, then 2×
            data = torch.randn(rows, dim, generator=gen)
            orders = torch.arange(rows).repeat(n_seeds, 1)
            latents, errors = torch.empty(n_seeds, rows, hidden), torch.empty(n_seeds, rows)
            for threads, trainer in trainers.items():
                start = time.perf_counter()
                trainer.train_epoch(data, orders, batch_size, 1e-4, latents, errors)
                if rows > 2 * batch_size:
                    seconds[threads] = min(seconds[threads], time.perf_counter() - start)
        per_step = {threads: 1e3 * t / probe for threads, t in seconds.items()}
        best = min(candidates, key=lambda threads: per_step[threads])
        timings = ", ".join(f"compiled kernel on {t} thread(s) {per_step[t]:.2f} ms/step" for t in candidates if t)
        torch_timing = (f", torch {per_step[0]:.2f} ms/step on {torch.get_num_threads()} thread(s)"
                        if with_torch else "")
        _engine_choices[key] = (best, (
            f"measured for d={dim}, h={hidden}, batch {batch_size}, {n_seeds} seed(s): {timings}{torch_timing}"
            + (f"; compiled kernel on {best} thread(s)" if best else "")))
    return _engine_choices[key]


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

