"""The SAE's fast, resumable trainer (SPEC §2, paper A.4): :func:`train_sae`.

Training (:func:`train_sae`) does not use autograd or ``torch.optim``: the model is two matmuls,
so the gradients are written by hand (five matmuls), Adam follows the exact operation sequence of
``torch.optim.Adam``, and K seeds are trained at once. Two engines run this maths:

* **native** (the L1 SAE on the CPU: always up to d·h = 2¹⁶, above only where it measured
  faster for the shape; on the 1 or 2 threads that measured faster,
  :func:`core.discover.sae_engine.measured_engine`): one C call per seed and epoch
  (``core/discover/csrc/sae_l1_epoch.c``, compiled on first use by :mod:`core.discover.native`
  for the CPU's widest vectors). At batch 32 a small SAE's step is five tiny matmuls, each
  ~17 µs through torch plus ~2 µs of dispatch per op; the C loops need no dispatch, apply Adam
  straight from the gradient registers, and split the latents into two fixed halves that two
  threads update with one barrier a step (``bench/RESULTS.md``: h = 64 … 4096 against the
  obvious loop). The SAE is linear, so its latents are dense: there is no sparsity to skip.
* **torch** (TopK, GPUs, shapes the kernel does not cover, no C compiler, ``SALVE_NATIVE=0``,
  or where it measured faster): the same maths with ``bmm``/``baddbmm`` on a leading seed axis
  and torch's fused Adam on one flat buffer (:mod:`core.discover.sae_engine`).

Seeds may each have their own λ (``l1_coeffs``: the width search trains a λ grid as seeds), and
training may stop early on a loss plateau (:mod:`core.discover.sae_schedule`).

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

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from core.config import SAEConfig
from core.discover.sae import (
    PARAM_NAMES,
    TOP_SHARE_SAMPLES,
    SparseAutoencoder,
    sae_from_arrays,
    sparsity_from_abs,
)
from core.discover.sae_engine import (  # noqa: F401  (re-exported: the trainer's public names)
    ADAM_BETAS,
    ADAM_EPS,
    NATIVE_AUTO_MAX_WEIGHTS,
    DataParallel,
    FastSAETrainer,
)
from core.discover.sae_schedule import PlateauRule, plateau_reached
from core.jobs import CancelToken, JobCancelled, JobFailed, ProgressFn, ProgressReporter

HISTORY_KEYS = ("loss", "recon", "sparsity", "l0", "top5_share", "ev", "dead", "lr")

STATE_FORMAT = 1


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
    stopped_early: bool = False  # the plateau rule ended training before ``config.epochs``

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
            "stopped_early": self.stopped_early,
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
            history=group("history"), stopped_early=bool(scalars.get("stopped_early", False)),
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
    #: How the schedule ran: planned and completed epochs, the plateau rule and where it stopped.
    schedule: dict[str, Any] = field(default_factory=dict)

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
    l1_coeffs: Sequence[float] | None = None,
) -> SAEResult:
    """Train ``n_seeds`` SAEs (seeds ``config.seed … config.seed + n_seeds − 1``) on ``activations``.

    Paper schedule from ``config``: Adam, StepLR (×``lr_gamma`` every ``lr_step_epochs``), batches
    of ``batch_size`` reshuffled each epoch by a generator seeded with the seed. ``on_checkpoint``
    gets the state every ``checkpoint_every`` epochs, at the end, and before a cancellation raises
    :class:`JobCancelled` (cancel is checked between epochs). A NaN/inf loss raises
    :class:`JobFailed` without checkpointing the bad state. ``resume`` continues a saved state
    exactly (its seeds, learning-rate position and shuffling); the run ends at ``config.epochs``.
    ``native``: None picks the compiled engine where it applies, True requires it, False never.
    ``l1_coeffs``: one λ per seed instead of ``config.l1_coeff`` (the width/λ search).
    Stops early on a plateau when ``config.early_stop_patience`` > 0
    (:mod:`core.discover.sae_schedule`); ``SAEResult.schedule`` records it.
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
        l1_coeffs=l1_coeffs,
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


def _trainer_for(state: SAETrainState, config: SAEConfig, device: torch.device, native: bool | None,
                 data_parallel: DataParallel | None, l1_coeffs: Sequence[float] | None) -> FastSAETrainer:
    """The engine loaded with ``state``'s parameters and Adam moments."""
    trainer = FastSAETrainer(
        {name: torch.from_numpy(np.ascontiguousarray(v)) for name, v in state.params.items()},
        kind=config.kind, k=config.k, l1_coeff=list(l1_coeffs) if l1_coeffs is not None else config.l1_coeff,
        device=device, use_native=native, batch_size=config.batch_size,
    )
    trainer.data_parallel = data_parallel
    trainer.load_optimizer(state.exp_avg, state.exp_avg_sq, state.adam_step)
    return trainer


def _snapshot(start: SAETrainState, config: SAEConfig, trainer: FastSAETrainer, generators: list[torch.Generator],
              history: dict[str, list[np.ndarray]], epoch: int, lr: float, stopped_early: bool) -> SAETrainState:
    """The resumable state after ``epoch`` epochs (``start`` gives what does not change)."""
    exp_avg, exp_avg_sq = trainer.optimizer_standard()
    n_k = len(start.seeds)
    return SAETrainState(
        kind=config.kind, k=config.k, seeds=list(start.seeds), epoch=epoch, lr=lr, adam_step=trainer.step,
        n_samples=start.n_samples, dim=start.dim, hidden=config.hidden, params=trainer.parameters_standard(),
        exp_avg=exp_avg, exp_avg_sq=exp_avg_sq,
        generator_states=np.stack([g.get_state().numpy() for g in generators]),
        history={key: np.stack(values, axis=1) if values else np.zeros((n_k, 0))
                 for key, values in history.items()},
        stopped_early=stopped_early,
    )


def _restore_generators(states: np.ndarray) -> list[torch.Generator]:
    generators = []
    for row in states:
        generator = torch.Generator()
        generator.set_state(torch.from_numpy(np.ascontiguousarray(row, dtype=np.uint8)))
        generators.append(generator)
    return generators


def epoch_values(stats: EpochStats, lambdas: Tensor, n_entries: int, centred_energy: float,
                 lr: float) -> dict[str, Tensor]:
    """One epoch's history values per seed (``lambdas``: each seed's λ, float64)."""
    recon = stats.sq_err / n_entries
    sparsity = lambdas.to(stats.mean_abs.device) * stats.mean_abs.double()
    ev = (1.0 - stats.sq_err / centred_energy if centred_energy > 0
          else torch.full_like(recon, float("nan")))
    return {"loss": recon + sparsity, "recon": recon, "sparsity": sparsity, "l0": stats.l0,
            "top5_share": stats.top5_share, "ev": ev, "dead": stats.dead, "lr": torch.full_like(recon, lr)}


def _diverged(bad: Tensor, seeds: list[int], epoch: int, last_checkpoint: int | None, lr: float,
              config: SAEConfig) -> JobFailed:
    seed_text = ", ".join(str(seeds[i]) for i in torch.nonzero(bad).flatten().tolist())
    kept = (f"the last good checkpoint (epoch {last_checkpoint}) is kept"
            if last_checkpoint is not None else "no checkpoint was written yet")
    return JobFailed(
        f"SAE training diverged at epoch {epoch + 1} (seed {seed_text}): the loss became "
        f"NaN/inf; {kept}. Try a lower learning rate (now {lr:g}) or a lower L1 "
        f"coefficient (now {config.l1_coeff:g})."
    )


def run_training(
    config: SAEConfig, state: SAETrainState, run_epoch: EpochRunner, centred_energy: float,
    progress: ProgressFn | None = None, cancel: CancelToken | None = None, *, resumed: bool = False,
    on_checkpoint: Callable[[SAETrainState], None] | None = None, device: torch.device | str = "cpu",
    native: bool | None = None, data_parallel: DataParallel | None = None,
    l1_coeffs: Sequence[float] | None = None,
) -> SAEResult:
    """The training loop shared by the in-memory and streamed epochs: schedule, metrics,
    divergence check, checkpoints and cancellation (see :func:`train_sae`)."""
    seeds, n, d = list(state.seeds), state.n_samples, state.dim
    trainer = _trainer_for(state, config, torch.device(device), native, data_parallel, l1_coeffs)
    generators = _restore_generators(state.generator_states)
    history = {key: [state.history[key][:, i] for i in range(state.history[key].shape[1])]
               if key in state.history else [] for key in HISTORY_KEYS}
    epoch, lr = state.epoch, state.lr

    reporter = ProgressReporter("sae", total=config.epochs, progress=progress, start=state.epoch)
    last_checkpoint = state.epoch if resumed else None

    def snapshot() -> SAETrainState:
        return _snapshot(state, config, trainer, generators, history, epoch, lr, stopped_early)

    rule = PlateauRule(config.early_stop_patience, config.early_stop_min_improvement)
    stopped_early = state.stopped_early
    lambdas = torch.tensor(trainer.l1_coeffs, dtype=torch.float64)

    with torch.no_grad():
        while epoch < config.epochs and not stopped_early:
            if cancel is not None and cancel.cancelled:
                if on_checkpoint is not None:
                    on_checkpoint(snapshot())
                raise JobCancelled(f"SAE training cancelled after epoch {epoch}; progress was saved")
            stats = run_epoch(trainer, generators, lr, epoch)
            values = epoch_values(stats, lambdas, n * d, centred_energy, lr)
            bad = ~(torch.isfinite(values["loss"]) & trainer.finite())
            if bool(bad.any()):
                raise _diverged(bad, seeds, epoch, last_checkpoint, lr, config)
            for key in HISTORY_KEYS:
                history[key].append(values[key].double().cpu().numpy())
            epoch += 1
            if epoch % config.lr_step_epochs == 0:  # StepLR's chained update, same float ops
                lr = lr * config.lr_gamma
            stopped_early = rule.active and plateau_reached(np.stack(history["loss"], axis=1), rule)
            reporter.report(
                epoch, f"epoch {epoch}/{config.epochs}" + (
                    f": loss plateau, stopping early ({rule.describe()})" if stopped_early else ""),
                **{key: float(np.mean(history[key][-1])) for key in ("loss", "l0", "ev", "dead")},
                lr=float(history["lr"][-1][0]),
            )
            if on_checkpoint is not None and (
                epoch % max(1, config.checkpoint_every) == 0 or epoch == config.epochs or stopped_early
            ):
                on_checkpoint(snapshot())
                last_checkpoint = epoch

    final = snapshot()
    schedule = {"epochs_planned": config.epochs, "epochs_run": epoch, "stopped_early": stopped_early,
                "early_stop": rule.to_dict()}
    return SAEResult(config=config, seeds=seeds, weights=final.params, history=final.history, state=final,
                     engine=trainer.engine, engine_note=trainer.native_status, schedule=schedule)
