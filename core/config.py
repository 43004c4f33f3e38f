"""Dataclass configs for every pipeline stage.

Torch-free on purpose: the TUI's new-session form and ``salve info`` import this module at
start-up. Each config round-trips through plain dicts (stored as JSON in the session file).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from dataclasses import dataclass, field
from typing import Any

DATASET_KINDS = ("shapes", "imagefolder", "cifar100")
SAE_KINDS = ("l1", "topk")
MODULATIONS = ("linear", "clamped")
MAX_NAME_LENGTH = 100  # leaves room for ".h5", ".lock" and temp suffixes in a 255-byte file name


@dataclass
class DataConfig:
    """Which images to use. ``shapes`` is the embedded, generated dataset (SPEC §8)."""

    kind: str = "shapes"
    path: str | None = None  # folder for imagefolder (train/ + val/) or cifar100 root
    image_size: int = 64
    seed: int = 0
    n_train: int = 2000  # shapes only: number of generated training images
    n_test: int = 1000  # shapes only
    max_per_class: int | None = None  # optional cap for quick runs on real data

    def validate(self) -> list[str]:
        problems = []
        if self.kind not in DATASET_KINDS:
            problems.append(f"dataset kind must be one of {', '.join(DATASET_KINDS)}, got '{self.kind}'")
        if self.kind != "shapes" and not self.path:
            problems.append(f"dataset '{self.kind}' needs a path (--data-path)")
        if not 16 <= self.image_size <= 1024:
            problems.append(f"image size must be between 16 and 1024, got {self.image_size}")
        if self.kind == "shapes" and (self.n_train < 10 or self.n_test < 10):
            problems.append("shapes needs at least 10 train and 10 test images")
        return problems


@dataclass
class BackboneConfig:
    """The classifier: a torchvision architecture by name plus where its weights come from.

    ``weights``: ``none`` (random init), ``pretrained`` (torchvision default weights, from the
    local torch hub cache or the network) or a path to a local checkpoint (plain state_dict).
    Paper A.3 defaults: Adam, cross-entropy, batch 16, ResNet 10 epochs, ViT 5 epochs.
    """

    arch: str = "resnet18"
    weights: str = "none"
    train: bool = True
    epochs: int = 10
    batch_size: int = 16
    lr: float = 1e-4
    weight_decay: float = 0.0
    augment: bool | str = True  # none | flip | shift | flip+shift (True: flip+shift, False: none)
    schedule: str = "constant"  # constant (paper A.3) | onecycle (warm-up then cosine decay)

    def validate(self) -> list[str]:
        problems = []
        if self.epochs < 0:
            problems.append("epochs must be ≥ 0")
        if self.batch_size < 1:
            problems.append("batch size must be ≥ 1")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            problems.append(f"learning rate must be > 0 and finite, got {self.lr}")
        if self.schedule not in ("constant", "onecycle"):
            problems.append(f"schedule must be constant or onecycle, got '{self.schedule}'")
        try:
            augment_mode(self.augment)
        except ValueError as exc:
            problems.append(str(exc))
        return problems


@dataclass
class SAEConfig:
    """Sparse autoencoder (SPEC §2). ``l1``: the paper's linear SAE; ``topk``: keeps k latents.

    Paper schedule: Adam, 1000 epochs, StepLR(step 200 epochs, gamma 0.8), batch 32 (ResNet).
    """

    kind: str = "l1"
    hidden: int = 64
    l1_coeff: float = 1e-2
    k: int = 8
    lr: float = 1e-3
    epochs: int = 1000
    batch_size: int = 32
    lr_step_epochs: int = 200
    lr_gamma: float = 0.8
    seed: int = 0
    checkpoint_every: int = 50  # epochs between checkpoints (also the resume granularity)
    # Train on activations scaled to mean ‖a‖² = d; the scale is folded back into the stored
    # weights, so the decoder (edits, α_crit) is in the activations' units. λ then weighs
    # mean |u| against the MSE of unit-mean-square activations.
    normalize: bool = False
    # Stop on a plateau (core/discover/sae_schedule.py): after ≥ 2·patience epochs, when the last
    # `patience` epochs improved the best training loss by less than this share. 0 = fixed schedule.
    early_stop_patience: int = 0
    early_stop_min_improvement: float = 1e-3
    # --sae-width auto: before the first training, search a grid of (h, λ) and train the chosen
    # one (core/discover/sae_search.py); the search's table is kept in summary.sae_search.
    auto_width: bool = False

    def validate(self) -> list[str]:
        problems = []
        if self.kind not in SAE_KINDS:
            problems.append(f"SAE kind must be one of {', '.join(SAE_KINDS)}, got '{self.kind}'")
        if self.hidden < 1:
            problems.append("SAE hidden size must be ≥ 1")
        if self.kind == "topk" and not 1 <= self.k <= self.hidden:
            problems.append(f"TopK k must be between 1 and hidden ({self.hidden})")
        if not (self.l1_coeff >= 0 and math.isfinite(self.l1_coeff)):
            problems.append(f"L1 coefficient must be ≥ 0 and finite, got {self.l1_coeff}")
        if self.epochs < 1 or self.batch_size < 1:
            problems.append("SAE epochs and batch size must be ≥ 1")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            problems.append(f"SAE learning rate must be > 0 and finite, got {self.lr}")
        if self.seed < 0:
            problems.append(f"SAE seed must be ≥ 0, got {self.seed}")
        if self.early_stop_patience < 0:
            problems.append(f"SAE early-stop patience must be ≥ 0 epochs, got {self.early_stop_patience}")
        if not (self.early_stop_min_improvement >= 0 and math.isfinite(self.early_stop_min_improvement)):
            problems.append("SAE early-stop minimum improvement must be ≥ 0 and finite, "
                            f"got {self.early_stop_min_improvement}")
        return problems


@dataclass
class SessionConfig:
    """Everything needed to (re)build a session from scratch."""

    name: str = "demo"
    data: DataConfig = field(default_factory=DataConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    sae: SAEConfig = field(default_factory=SAEConfig)
    device: str = "auto"
    seed: int = 0

    def validate(self) -> list[str]:
        problems = []
        if not self.name or any(c in self.name for c in "/\\\0") or self.name.startswith("."):
            problems.append(f"session name '{self.name}' is not a valid file name")
        elif len(self.name) > MAX_NAME_LENGTH:
            problems.append(f"session name is {len(self.name)} characters long; use at most {MAX_NAME_LENGTH}")
        if self.seed < 0:
            problems.append(f"seed must be ≥ 0, got {self.seed}")
        problems += self.data.validate() + self.backbone.validate() + self.sae.validate()
        return problems

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SessionConfig:
        return cls(
            name=d.get("name", "session"),
            data=_build(DataConfig, d.get("data", {})),
            backbone=_build(BackboneConfig, d.get("backbone", {})),
            sae=_build(SAEConfig, d.get("sae", {})),
            device=d.get("device", "auto"),
            seed=d.get("seed", 0),
        )

    @classmethod
    def from_json(cls, text: str) -> SessionConfig:
        return cls.from_dict(json.loads(text))


def _build(kind: type, values: dict[str, Any]):
    """Construct a dataclass ignoring unknown keys (forward compatibility of stored configs)."""
    names = {f.name for f in dataclasses.fields(kind)}
    return kind(**{k: v for k, v in values.items() if k in names})


AUGMENTATIONS = ("none", "flip", "shift", "flip+shift")
PAPER_SAE_WIDTH_MULTIPLE = 2  # --preset paper: h = 2·d (kept as it was)
# Real data without a preset: a small SAE, chosen by measured outcome (bench/bench_realdata.py,
# bench/RESULTS.md "Real data"), as the paper's own SAEs are small on purpose (A.4: "low latent
# dimensionality"). On a 10-class real set (ResNet-18, d = 512) h = 4·d = 2048 gave 3/10 distinct
# dominant features at ~7.5 s an epoch; h = 64 gives a distinct dominant feature per class at a
# fraction of a second an epoch. The width grows with the number of classes (at least
# REAL_SAE_PER_CLASS latents a class, so C classes can have C distinct dominant features).
REAL_SAE_MIN_HIDDEN = 64
REAL_SAE_PER_CLASS = 4
REAL_SAE_L1 = 1e-2  # λ on activations normalised to mean ‖a‖² = d
REAL_SAE_EPOCHS = 200
REAL_SAE_LR_STEP = 40  # StepLR(γ 0.8) every 40 epochs: the paper's 5 steps over the run


def real_data_sae_hidden(n_classes: int | None) -> int:
    """The real-data SAE width: ``max(64, 4·C)`` rounded up to a multiple of 64 (64 when C is unknown)."""
    per_class = REAL_SAE_PER_CLASS * int(n_classes or 0)
    return max(REAL_SAE_MIN_HIDDEN, -(-per_class // 64) * 64)


#: d of each architecture's final linear layer, known without building the model (fronts use it
#: to show defaults before torch is imported); tests check it against ``backbone.head_input_dim``.
HEAD_INPUT_DIMS = {"resnet18": 512, "resnet50": 2048, "vit_b_16": 768, "vit_tiny": 64}


def dataset_class_count(kind: str, path: str | None) -> int | None:
    """Classes of a dataset known without reading images (ImageFolder: the class folders under
    ``train/``; CIFAR-100: 100); None when unknown (the default width then applies)."""
    if kind == "cifar100":
        return 100
    if kind != "imagefolder" or not path:
        return None
    try:
        return sum(1 for p in os.scandir(os.path.join(os.path.expanduser(path), "train"))
                   if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return None


def default_sae_hidden(activation_dim: int, multiple: int = PAPER_SAE_WIDTH_MULTIPLE) -> int:
    """``multiple · d`` for activations of dimension d (the paper preset's width, > d)."""
    if activation_dim < 1 or multiple < 2:
        raise ValueError(f"need d ≥ 1 and a multiple ≥ 2, got d={activation_dim}, multiple={multiple}")
    return int(multiple) * int(activation_dim)


def augment_mode(value: bool | str) -> str:
    """The augmentation setting as one of AUGMENTATIONS (stored booleans map to all / none)."""
    if value is True:
        return "flip+shift"
    if value is False:
        return "none"
    if value not in AUGMENTATIONS:
        raise ValueError(f"augment must be one of {', '.join(AUGMENTATIONS)}, got '{value}'")
    return str(value)


def paper_config(name: str, arch: str, activation_dim: int, data: DataConfig | None = None) -> SessionConfig:
    """The paper's settings for ``arch`` on any dataset (A.3 backbone, A.4 SAE schedule).

    A.3: Adam, cross-entropy, batch 16, constant lr, ResNet 10 epochs, ViT 5. A.4: Adam, 1000
    epochs, StepLR(200, 0.8), batch 32 ResNet / 16 ViT. ``h = 2·d`` (``activation_dim`` = d).
    """
    vit = arch.startswith("vit")
    return SessionConfig(
        name=name,
        data=data or DataConfig(),
        backbone=BackboneConfig(arch=arch, epochs=5 if vit else 10, batch_size=16, lr=1e-4,
                                schedule="constant"),
        sae=SAEConfig(kind="l1", hidden=default_sae_hidden(activation_dim, PAPER_SAE_WIDTH_MULTIPLE),
                      epochs=1000, batch_size=16 if vit else 32, lr_step_epochs=200, lr_gamma=0.8,
                      normalize=True),
    )


def demo_config(name: str = "demo") -> SessionConfig:
    """The embedded default: ResNet-18 trained from scratch on Shapes, then the L1 SAE.

    Tuned so `make demo` finishes in minutes on a 2-core CPU (see bench/RESULTS.md).
    """
    return SessionConfig(
        name=name,
        data=DataConfig(kind="shapes", image_size=64, n_train=2000, n_test=1000),
        backbone=BackboneConfig(arch="resnet18", weights="none", epochs=8, batch_size=32, lr=2e-3,
                                schedule="onecycle"),
        sae=SAEConfig(kind="l1", hidden=64, l1_coeff=0.1, epochs=300, batch_size=32, lr_step_epochs=60),
    )


def real_data_config(name: str, n_classes: int | None = None, from_scratch: bool = True) -> SessionConfig:
    """Defaults for real data (ImageFolder, CIFAR-100) without a preset, chosen by measured
    outcome on real data (see REAL_SAE_* above): a small SAE on normalised activations.

    A backbone trained from scratch uses the demo's recipe (batch 64 is ~2.5× the images a
    second of batch 16 on a CPU core; lr 2e-3 with one-cycle); fine-tuning keeps the paper's
    A.3 values (batch 16, lr 1e-4)."""
    backbone = BackboneConfig(epochs=8, batch_size=64, lr=2e-3, schedule="onecycle") if from_scratch \
        else BackboneConfig()
    return SessionConfig(name=name, backbone=backbone, sae=SAEConfig(
        hidden=real_data_sae_hidden(n_classes), l1_coeff=REAL_SAE_L1, epochs=REAL_SAE_EPOCHS,
        lr_step_epochs=REAL_SAE_LR_STEP, normalize=True))


def dataset_defaults(name: str, kind: str, path: str | None = None, from_scratch: bool = True) -> SessionConfig:
    """The settings a new session starts from on a dataset kind when no preset is chosen: the
    demo's on Shapes, real data's otherwise (:func:`real_data_config`, the SAE width from the
    classes found under ``path``). ``salve new`` and the TUI's new-session form both start here."""
    if kind == "shapes":
        return demo_config(name)
    return real_data_config(name, dataset_class_count(kind, path), from_scratch=from_scratch)


# --------------------------------------------------------------------------- memory budget

MEMORY_BUDGET_ENV = "SALVE_MEMORY_BUDGET"
#: Default budget: this share of the machine's memory (or of the cgroup limit when lower).
DEFAULT_MEMORY_FRACTION = 0.5
_SIZE_UNITS = {"": 1, "B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


def total_memory_bytes() -> int:
    """Physical memory, capped by a cgroup v2/v1 memory limit where one applies (containers)."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = open(limit_file).read().strip()  # noqa: SIM115 - a one-line kernel file
        except OSError:
            continue
        if text.isdigit() and 0 < int(text) < total:
            total = int(text)
    return int(total)


def parse_memory_size(text: str | int | float) -> int:
    """Bytes from ``"1G"``, ``"512M"``, ``"2.5GiB"``, ``"1073741824"`` or a share of RAM ``"25%"``."""
    value = str(text).strip().upper().replace("IB", "").rstrip("B")
    if value.endswith("%"):
        try:
            share = float(value[:-1]) / 100
        except ValueError:
            share = -1.0
        if not 0 < share <= 1:
            raise ValueError(f"memory budget '{text}' must be a share of RAM between 0% and 100%")
        return int(share * total_memory_bytes())
    unit = value[-1] if value and value[-1] in _SIZE_UNITS else ""
    try:
        size = float(value[: len(value) - len(unit)]) * _SIZE_UNITS[unit]
    except ValueError:
        raise ValueError(f"memory budget '{text}' is not a size; use e.g. 1G, 512M, 2.5G or 25%") from None
    if not (math.isfinite(size) and size >= 1 << 20):
        raise ValueError(f"memory budget '{text}' is too small; give at least 1M (e.g. 1G, 512M or 25%)")
    return int(size)


def memory_budget(override: str | int | None = None) -> int:
    """Bytes that out-of-core compute may hold for data (activations, latents, buffers).

    ``override`` (a CLI flag), else ``$SALVE_MEMORY_BUDGET``, else
    :data:`DEFAULT_MEMORY_FRACTION` of the machine's memory. Stages whose arrays fit keep the
    in-memory path; larger ones stream row blocks from the session instead.
    """
    if override is not None:
        return parse_memory_size(override)
    env = os.environ.get(MEMORY_BUDGET_ENV, "").strip()
    if env:
        try:
            return parse_memory_size(env)
        except ValueError as exc:
            raise ValueError(f"${MEMORY_BUDGET_ENV}: {exc}") from None
    return int(DEFAULT_MEMORY_FRACTION * total_memory_bytes())
