"""Image sources and their shared preprocessing: every dataset kind hands the pipeline an
:class:`ImageSource` (batches of normalised tensors), and a :class:`DatasetBundle` of both splits.

Every image goes through the same preprocessing: shorter side resized to ``image_size``, centre
crop, ImageNet mean/std normalisation (what torchvision backbones expect).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from core.discover.pixels import to_rgb8
from core.discover.shapes import ShapesData

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
IMAGE_EXTENSIONS: tuple[str, ...] = (
    ".jpg",
    ".jpeg",
    ".png",
    ".ppm",
    ".bmp",
    ".pgm",
    ".tif",
    ".tiff",
    ".webp",
)
VAL_SPLIT_NAMES: tuple[str, ...] = ("val", "test")  # Imagenette uses val/; accept test/ too

Indices = Sequence[int] | np.ndarray | torch.Tensor
Batch = tuple[torch.Tensor, torch.Tensor, np.ndarray]


# ---------------------------------------------------------------------------------------------
# Shared preprocessing


def normalize_uint8(batch_uint8_nhwc: torch.Tensor) -> torch.Tensor:
    """``(B, H, W, 3)`` uint8 → ``(B, 3, H, W)`` float32 with ImageNet mean/std."""
    if batch_uint8_nhwc.ndim != 4 or batch_uint8_nhwc.shape[-1] != 3:
        raise ValueError(
            f"expected a (B, H, W, 3) uint8 batch, got shape {tuple(batch_uint8_nhwc.shape)}"
        )
    # (x/255 − mean)/std folded into one multiply-add; the uint8 transpose is the cheap one.
    nchw = batch_uint8_nhwc.permute(0, 3, 1, 2).contiguous().to(torch.float32)
    scale, shift = _normalisation_affine(nchw.device)
    return torch.addcmul(shift, nchw, scale)


def _normalisation_affine(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel ``scale = 1/(255·std)`` and ``shift = −mean/std``, shaped (1, 3, 1, 1)."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float64)
    scale = (1.0 / (255.0 * std)).to(torch.float32).view(1, 3, 1, 1)
    shift = (-mean / std).to(torch.float32).view(1, 3, 1, 1)
    return scale.to(device), shift.to(device)


def denormalize(x: torch.Tensor) -> np.ndarray:
    """Inverse of :func:`normalize_uint8` for display: ``(B,3,H,W)``/``(3,H,W)`` → uint8 HWC.

    Values outside the displayable range (e.g. from activation maximisation) are clipped.
    """
    if x.ndim not in (3, 4) or x.shape[-3] != 3:
        raise ValueError(f"expected a (B, 3, H, W) or (3, H, W) tensor, got {tuple(x.shape)}")
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(3, 1, 1)
    pixels = (x.detach().to("cpu", torch.float32) * std + mean).mul(255.0).round().clamp(0, 255)
    return pixels.to(torch.uint8).movedim(-3, -1).numpy()


def resize_center_crop_uint8(batch_uint8_nhwc: torch.Tensor, size: int) -> torch.Tensor:
    """Resize the shorter side to ``size`` (antialiased) and centre-crop to ``size × size``."""
    from torchvision.transforms.v2 import functional as tvf

    if batch_uint8_nhwc.shape[1] == size and batch_uint8_nhwc.shape[2] == size:
        return batch_uint8_nhwc
    nchw = batch_uint8_nhwc.permute(0, 3, 1, 2)
    nchw = tvf.resize(nchw, [size], antialias=True)
    nchw = tvf.center_crop(nchw, [size, size])
    return nchw.permute(0, 2, 3, 1).contiguous()


def _as_index_array(indices: Indices) -> np.ndarray:
    if isinstance(indices, torch.Tensor):
        indices = indices.cpu().numpy()
    return np.asarray(indices, dtype=np.int64).reshape(-1)


# ---------------------------------------------------------------------------------------------
# Image sources


class ImageSource(ABC):
    """One split of a dataset: labels in memory, pixels on demand.

    Subclasses only implement :meth:`_load_uint8`; batching, normalisation and shuffling are
    shared so every dataset kind feeds the backbone identically.
    """

    class_names: list[str]
    labels: np.ndarray  # (N,) int64
    image_size: int
    skipped: int = 0  # unreadable files found at scan time and left out
    # Ground truth (shapes only; None for real data).
    concept_names: list[str] | None = None
    concept_present: np.ndarray | None = None  # (N, n_concepts) bool
    _benefits_from_workers = False  # lazy file decoding gains from DataLoader workers

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @abstractmethod
    def _load_uint8(self, indices: np.ndarray) -> torch.Tensor:
        """``(B, image_size, image_size, 3)`` uint8 tensor for ``indices``."""

    def raw_images(self, indices: Indices) -> np.ndarray:
        """``(B, H, W, 3)`` uint8 images at ``image_size``, for display and figures."""
        return self._load_uint8(self._checked(indices)).numpy()

    def load_batch(self, indices: Indices) -> torch.Tensor:
        """``(B, 3, H, W)`` float32 images, resized and ImageNet-normalised."""
        return normalize_uint8(self._load_uint8(self._checked(indices)))

    def concept_masks(self, indices: Indices) -> np.ndarray | None:
        """``(B, n_concepts, H, W)`` bool ground-truth masks, or None without ground truth."""
        return None

    def iter_batches(
        self,
        batch_size: int,
        indices: Indices | None = None,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        num_workers: int = 0,
    ) -> Iterator[Batch]:
        """Yield ``(images, labels, indices)`` batches over ``indices`` (default: all).

        ``shuffle`` permutes with ``generator`` (reproducible when seeded). ``num_workers > 0``
        decodes in DataLoader worker processes (useful for image folders only).
        """
        if batch_size < 1:
            raise ValueError(f"batch size must be ≥ 1, got {batch_size}")
        order = np.arange(len(self)) if indices is None else self._checked(indices)
        if shuffle:
            order = order[torch.randperm(order.size, generator=generator).numpy()]
        chunks = [order[i : i + batch_size] for i in range(0, order.size, batch_size)]
        if num_workers > 0 and self._benefits_from_workers:
            loader = torch.utils.data.DataLoader(
                _BatchDataset(self, chunks),
                batch_size=None,
                num_workers=num_workers,
                collate_fn=_keep_as_is,
            )
            yield from loader
            return
        for chunk in chunks:
            yield self.load_batch(chunk), torch.from_numpy(self.labels[chunk]), chunk

    def _checked(self, indices: Indices) -> np.ndarray:
        idx = _as_index_array(indices)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"image index out of range for a split of {len(self)} images")
        return idx


def _keep_as_is(batch: Batch) -> Batch:
    """DataLoader collate that keeps a pre-built batch (indices stay a numpy array)."""
    return batch


class _BatchDataset(torch.utils.data.Dataset):
    """Maps a batch number to a whole loaded batch, so DataLoader workers decode batches."""

    def __init__(self, source: ImageSource, chunks: list[np.ndarray]) -> None:
        self.source = source
        self.chunks = chunks

    def __len__(self) -> int:
        return len(self.chunks)

    def __getitem__(self, i: int) -> Batch:
        chunk = self.chunks[i]
        return self.source.load_batch(chunk), torch.from_numpy(self.source.labels[chunk]), chunk


class ArrayImageSource(ImageSource):
    """Images already in memory (Shapes, CIFAR-100); resized on the fly if their size differs."""

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        class_names: list[str],
        image_size: int,
        shapes: ShapesData | None = None,
    ) -> None:
        if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
            raise ValueError(
                f"expected (N, H, W, 3) uint8 images, got {images.dtype} {images.shape}"
            )
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f"{images.shape[0]} images but {labels.shape[0]} labels")
        self._images = torch.from_numpy(np.ascontiguousarray(images))
        self.labels = np.asarray(labels, dtype=np.int64)
        self.class_names = list(class_names)
        self.image_size = image_size
        self.shapes = shapes
        if shapes is not None:
            self.concept_names = list(shapes.concept_names)
            self.concept_present = shapes.concept_present

    def _load_uint8(self, indices: np.ndarray) -> torch.Tensor:
        batch = self._images[torch.from_numpy(indices)]
        return resize_center_crop_uint8(batch, self.image_size)

    def concept_masks(self, indices: Indices) -> np.ndarray | None:
        if self.shapes is None:
            return None
        return self.shapes.concept_masks(self._checked(indices))


class FolderImageSource(ImageSource):
    """Image files decoded lazily (one PIL decode per image, JPEG draft mode for speed)."""

    _benefits_from_workers = True

    def __init__(
        self,
        paths: list[Path],
        labels: np.ndarray,
        class_names: list[str],
        image_size: int,
        skipped: int = 0,
    ) -> None:
        self.paths = list(paths)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.class_names = list(class_names)
        self.image_size = image_size
        self.skipped = skipped

    def _load_uint8(self, indices: np.ndarray) -> torch.Tensor:
        out = np.empty((indices.size, self.image_size, self.image_size, 3), dtype=np.uint8)
        for row, i in enumerate(indices):
            out[row] = load_image_file(self.paths[int(i)], self.image_size)
        return torch.from_numpy(out)


def load_image_file(path: str | Path, size: int) -> np.ndarray:
    """Decode one file to ``(size, size, 3)`` uint8: shorter side → ``size``, centre crop.

    Same geometry as torchvision ``Resize(size)`` + ``CenterCrop(size)``. Raises ValueError
    naming the file if it passed the scan-time check but cannot be decoded (e.g. truncated).
    """
    try:
        with Image.open(path) as img:
            img.draft("RGB", (size, size))  # JPEG: let the decoder downscale by 2^k (fast)
            img = to_rgb8(img)
            width, height = img.size
            if width <= height:
                new_size = (size, int(size * height / width))
            else:
                new_size = (int(size * width / height), size)
            img = img.resize(new_size, Image.Resampling.BILINEAR)
            left = int(round((new_size[0] - size) / 2.0))
            top = int(round((new_size[1] - size) / 2.0))
            return np.array(img.crop((left, top, left + size, top + size)), dtype=np.uint8)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ValueError(
            f"could not decode image {path}: {exc} — remove or replace the file and run again"
        ) from exc



# ---------------------------------------------------------------------------------------------
# Dataset bundles


@dataclass
class DatasetBundle:
    """Both splits of a dataset plus what a user needs to recognise it."""

    class_names: list[str]
    train: ImageSource
    test: ImageSource
    kind: str
    description: str

    @property
    def concept_names(self) -> list[str] | None:
        return self.train.concept_names
