"""Shapes: the embedded, procedurally generated dataset with ground-truth concept masks (SPEC §8).

Why it exists: the project must run end to end without downloads, and a synthetic dataset lets the
tool *measure* what saliency maps only suggest, because every image knows where each concept is.

Design, in short:

- 10 classes, each defined by a shape and a fixed texture (``CLASS_TEXTURES``; every texture is
  shared by two classes). Shapes are large (about 40–60 % of the image side), stand upright with
  a small random tilt (so the tower points up, as on a building), and get a random position,
  scale and colours.
- Backgrounds are muted random two-colour gradients plus pixel noise, with small distractor blobs
  and lines that are far smaller than any class shape. Shape, texture and background colours are
  drawn independently of the class, so no pixel statistic (mean colour, brightness) reveals it.
- One **shared part**, a "tower" (a mast with a ball on top, sitting on the shape), appears on an
  exact share of two classes' images (``SHARED_PART_RATES``) and nowhere else, like the paper's
  tower shared by church and petrol pump.
- Concepts = the 10 class shapes + the tower + the three non-solid textures; every image carries
  a presence flag and a pixel mask per concept.

Deterministic: the label order comes from ``seed`` and each image from its own generator seeded
with ``(seed, index)``, so the same seed gives byte-identical output. numpy + Pillow only: the TUI
can preview images without importing torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from core.config import DataConfig

SHAPES_CLASSES: tuple[str, ...] = (
    "circle",
    "square",
    "triangle",
    "star",
    "cross",
    "ring",
    "crescent",
    "heart",
    "arrow",
    "hourglass",
)
TEXTURES: tuple[str, ...] = ("stripes", "checker", "dots", "bands")
# Class -> texture painted inside the shape ("solid" = plain colour, not a concept).
CLASS_TEXTURES: dict[str, str] = {
    "circle": "solid",
    "square": "stripes",
    "triangle": "dots",
    "star": "bands",
    "cross": "checker",
    "ring": "dots",
    "crescent": "bands",
    "heart": "checker",
    "arrow": "solid",
    "hourglass": "stripes",
}
SHARED_PART = "tower"
SHARED_PART_CLASSES: tuple[str, str] = ("square", "circle")
# Exact share of each class's images that carry the part (rounded to whole images).
SHARED_PART_RATES: dict[str, float] = {"square": 0.8, "circle": 0.3}
CONCEPT_NAMES: tuple[str, ...] = SHAPES_CLASSES + (SHARED_PART,) + TEXTURES

# Geometry, as fractions of the image side.
_MIN_EXTENT, _MAX_EXTENT = 0.42, 0.62  # shape diameter (2 × radius) range
_MAX_TILT = math.radians(15)  # objects stand upright (the tower points up), slightly tilted
_BACKGROUND_SATURATION = (0.2, 0.6)  # backgrounds are muted so objects stand out by colour
_TOWER_HEIGHT = 0.85  # mast + ball height, in shape radii above the shape's top edge
_MIN_SHAPE_BG_DISTANCE = 110.0  # RGB distance between shape colour and both background colours
_MIN_TEXTURE_DISTANCE = 90.0  # RGB distance between the two colours of a texture


@dataclass
class ShapesData:
    """One split of generated images with labels and per-concept ground truth.

    Masks are stored compactly (one shape mask and one part mask per image) because a dense
    ``(N, n_concepts, H, W)`` array of 3000 images is ~170 MB of mostly zeros;
    :meth:`concept_masks` expands any subset and :attr:`masks` the whole split.
    """

    images: np.ndarray  # (N, H, W, 3) uint8
    labels: np.ndarray  # (N,) int64
    shape_masks: np.ndarray  # (N, H, W) bool: pixels of the class shape (texture included)
    part_masks: np.ndarray  # (N, H, W) bool: visible pixels of the shared part (empty if absent)
    concept_present: np.ndarray  # (N, n_concepts) bool
    class_names: list[str] = field(default_factory=lambda: list(SHAPES_CLASSES))
    concept_names: list[str] = field(default_factory=lambda: list(CONCEPT_NAMES))

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def image_size(self) -> int:
        return int(self.images.shape[1])

    def concept_masks(self, indices: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """Dense ``(B, n_concepts, H, W)`` bool masks for ``indices`` (all images when None)."""
        idx = np.arange(len(self)) if indices is None else np.asarray(indices, dtype=np.int64)
        labels = self.labels[idx]
        shape = self.shape_masks[idx]
        n, h, w = shape.shape
        out = np.zeros((n, len(self.concept_names), h, w), dtype=bool)
        rows = np.arange(n)
        out[rows, labels] = shape
        out[:, self.concept_names.index(SHARED_PART)] = self.part_masks[idx]
        texture_concept = _CLASS_TEXTURE_CONCEPT[labels]
        textured = texture_concept >= 0
        out[rows[textured], texture_concept[textured]] = shape[textured]
        return out

    @cached_property
    def masks(self) -> np.ndarray:
        """Dense ``(N, n_concepts, H, W)`` bool masks of the whole split (built once, cached)."""
        return self.concept_masks()


_CLASS_TEXTURE_CONCEPT = np.array(
    [
        CONCEPT_NAMES.index(CLASS_TEXTURES[name]) if CLASS_TEXTURES[name] in TEXTURES else -1
        for name in SHAPES_CLASSES
    ],
    dtype=np.int64,
)


def generate_shapes(
    n: int, image_size: int = 64, seed: int = 0, objects: bool = True
) -> ShapesData:
    """Generate ``n`` images with balanced classes (counts differ by at most one).

    Same arguments give byte-identical arrays on every run. ``objects=False`` renders the very
    same scenes (backgrounds, distractors, noise) without the class shape and shared part: a
    concept-free control set, and the reference that shows the masks cover exactly what the
    objects changed. Its labels say which object was left out; masks and flags are all empty.
    """
    if n < 1:
        raise ValueError(f"number of Shapes images must be ≥ 1, got {n}")
    if image_size < 16:
        raise ValueError(f"Shapes image size must be ≥ 16 px, got {image_size}")
    n_classes = len(SHAPES_CLASSES)
    label_rng = np.random.default_rng([seed, 0x5EED])
    labels = label_rng.permutation(np.arange(n, dtype=np.int64) % n_classes)
    has_part = np.zeros(n, dtype=bool)
    for class_name, rate in SHARED_PART_RATES.items():
        members = np.flatnonzero(labels == SHAPES_CLASSES.index(class_name))
        chosen = label_rng.permutation(members)[: int(round(rate * members.size))]
        has_part[chosen] = True

    grid = _PixelGrid(image_size)
    images = np.empty((n, image_size, image_size, 3), dtype=np.uint8)
    shape_masks = np.empty((n, image_size, image_size), dtype=bool)
    part_masks = np.empty((n, image_size, image_size), dtype=bool)
    for i in range(n):
        rng = np.random.default_rng([seed, i])
        images[i], shape_masks[i], part_masks[i] = _render_image(
            rng, grid, int(labels[i]), bool(has_part[i]), draw_objects=objects
        )

    present = np.zeros((n, len(CONCEPT_NAMES)), dtype=bool)
    present[np.arange(n), labels] = True
    present[:, CONCEPT_NAMES.index(SHARED_PART)] = has_part
    texture_concept = _CLASS_TEXTURE_CONCEPT[labels]
    textured = texture_concept >= 0
    present[np.flatnonzero(textured), texture_concept[textured]] = True
    if not objects:
        present[:] = False
    return ShapesData(images, labels, shape_masks, part_masks, present)


def shapes_splits(config: DataConfig) -> tuple[ShapesData, ShapesData]:
    """Train and test splits for ``config``; seeds ``2·seed`` and ``2·seed + 1`` never collide."""
    train = generate_shapes(config.n_train, config.image_size, seed=2 * config.seed)
    test = generate_shapes(config.n_test, config.image_size, seed=2 * config.seed + 1)
    return train, test


# ---------------------------------------------------------------------------------------------
# Rendering


class _PixelGrid:
    """Pixel-centre coordinates shared by every image of a run (allocated once)."""

    def __init__(self, size: int) -> None:
        self.size = size
        centres = np.arange(size, dtype=np.float32) + 0.5
        self.y, self.x = np.meshgrid(centres, centres, indexing="ij")


def _background(rng: np.random.Generator, grid: _PixelGrid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A gradient between two random (desaturated) colours in a random direction; returns the
    float image and both end colours (the shape's colour must contrast with them)."""
    bg_from, bg_to = rng.uniform(0, 255, size=(2, 3)).astype(np.float32)
    saturation = rng.uniform(*_BACKGROUND_SATURATION)
    bg_from = bg_from.mean() + saturation * (bg_from - bg_from.mean())
    bg_to = bg_to.mean() + saturation * (bg_to - bg_to.mean())
    angle = rng.uniform(0, 2 * math.pi)
    t = (grid.x * math.cos(angle) + grid.y * math.sin(angle)) / grid.size
    t = (t - t.min()) / max(float(t.max() - t.min()), 1e-6)
    return bg_from + (bg_to - bg_from) * t[..., None], bg_from, bg_to


def _render_image(
    rng: np.random.Generator,
    grid: _PixelGrid,
    label: int,
    has_part: bool,
    draw_objects: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Render one image; returns ``(image uint8 HxWx3, shape mask, visible part mask)``.

    Every random number is drawn whether or not ``draw_objects`` is set, so rendering the same
    generator state without the shape and part gives exactly the image's background (tests use
    this to check that the masks cover precisely the pixels the objects changed).
    """
    size = grid.size
    class_name = SHAPES_CLASSES[label]

    image, bg_from, bg_to = _background(rng, grid)
    _draw_distractors(rng, grid, image)

    # Shape placement: radius, rotation, centre (leaving room above for the tower).
    radius = rng.uniform(_MIN_EXTENT, _MAX_EXTENT) * size / 2
    if has_part:  # tiny images only: keep shape + tower inside the frame
        radius = min(radius, (size - 3) / (2 + _TOWER_HEIGHT))
    rotation = rng.uniform(-_MAX_TILT, _MAX_TILT)
    top_room = radius * (1 + _TOWER_HEIGHT) + 1 if has_part else radius + 1
    cx = rng.uniform(radius + 1, size - radius - 1)
    cy = rng.uniform(top_room, size - radius - 1)
    shape_colour = _contrasting_colour(rng, (bg_from, bg_to), _MIN_SHAPE_BG_DISTANCE)
    texture_colour = _contrasting_colour(rng, (shape_colour,), _MIN_TEXTURE_DISTANCE)
    texture_period = rng.uniform(0.3, 0.4) * radius + 2.0  # coarse enough to survive pooling
    noise_sigma = rng.uniform(2.0, 8.0)
    noise = rng.standard_normal((size, size, 3), dtype=np.float32)

    cos_r, sin_r = math.cos(rotation), math.sin(rotation)
    dx, dy = grid.x - cx, grid.y - cy
    u = (cos_r * dx + sin_r * dy) / radius  # shape frame, in radii
    v = (-sin_r * dx + cos_r * dy) / radius
    shape = _SHAPE_FUNCTIONS[class_name](u, v)
    part = _tower_mask(grid, shape, cx, radius) & ~shape if has_part else np.zeros_like(shape)

    if draw_objects:
        image[part] = shape_colour
        image[shape] = shape_colour
        pattern = _texture_pattern(
            CLASS_TEXTURES[class_name], u * radius, v * radius, texture_period
        )
        if pattern is not None:
            image[shape & pattern] = texture_colour
    else:
        shape = np.zeros_like(shape)
        part = np.zeros_like(part)
    image += noise * noise_sigma
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), shape, part


def _contrasting_colour(
    rng: np.random.Generator, avoid: Sequence[np.ndarray], min_distance: float
) -> np.ndarray:
    """A random RGB colour at least ``min_distance`` from every colour in ``avoid``.

    Rejection sampling with a fixed number of candidates keeps the random stream length
    independent of the outcome; the farthest candidate wins if none is far enough.
    """
    candidates = rng.uniform(0, 255, size=(16, 3)).astype(np.float32)
    distances = np.min([np.linalg.norm(candidates - colour, axis=1) for colour in avoid], axis=0)
    good = np.flatnonzero(distances >= min_distance)
    return candidates[good[0]] if good.size else candidates[int(np.argmax(distances))]


def _draw_distractors(rng: np.random.Generator, grid: _PixelGrid, image: np.ndarray) -> None:
    """Paint 2–5 small blobs and thin lines, far smaller than any class shape."""
    size = grid.size
    scale = size / 64
    n_blobs, n_lines = rng.integers(1, 4), rng.integers(1, 3)
    for _ in range(n_blobs):
        cx, cy = rng.uniform(0, size, 2)
        rx, ry = rng.uniform(1.0, 3.0, 2) * scale
        colour = rng.uniform(0, 255, 3).astype(np.float32)
        image[((grid.x - cx) / rx) ** 2 + ((grid.y - cy) / ry) ** 2 <= 1] = colour
    for _ in range(n_lines):
        x0, y0 = rng.uniform(0, size, 2)
        length = rng.uniform(6, 16) * scale
        angle = rng.uniform(0, math.pi)
        half_width = rng.uniform(0.5, 0.9) * scale
        colour = rng.uniform(0, 255, 3).astype(np.float32)
        ux, uy = math.cos(angle), math.sin(angle)
        along = (grid.x - x0) * ux + (grid.y - y0) * uy
        across = -(grid.x - x0) * uy + (grid.y - y0) * ux
        image[(np.abs(across) <= half_width) & (along >= 0) & (along <= length)] = colour


def _tower_mask(grid: _PixelGrid, shape: np.ndarray, cx: float, radius: float) -> np.ndarray:
    """Mast and ball standing vertically on the shape's top edge at column ``cx``."""
    column = min(int(cx), grid.size - 1)
    rows = np.flatnonzero(shape[:, column])
    top = float(rows[0]) + 0.5 if rows.size else 0.5
    ball_radius = max(1.5, 0.17 * radius)
    mast_top = top - _TOWER_HEIGHT * radius + 2 * ball_radius
    half_width = max(1.0, 0.09 * radius)
    mast = (np.abs(grid.x - cx) <= half_width) & (grid.y >= mast_top) & (grid.y <= top + 2)
    ball_cy = mast_top - ball_radius + 1
    ball = (grid.x - cx) ** 2 + (grid.y - ball_cy) ** 2 <= ball_radius**2
    return mast | ball


def _texture_pattern(texture: str, u_px: np.ndarray, v_px: np.ndarray, period: float):
    """Boolean pattern in the shape's own frame (so it rotates with the shape); None = solid."""
    if texture == "solid":
        return None
    phase_u = np.floor(u_px / period).astype(np.int64)
    phase_v = np.floor(v_px / period).astype(np.int64)
    if texture == "stripes":
        return (phase_u % 2) == 0
    if texture == "checker":
        return ((phase_u + phase_v) % 2) == 0
    if texture == "bands":  # concentric rings around the shape's centre
        return np.floor(np.sqrt(u_px**2 + v_px**2) / period).astype(np.int64) % 2 == 1
    if texture == "dots":
        fu = u_px / period - phase_u - 0.5
        fv = v_px / period - phase_v - 0.5
        return fu**2 + fv**2 <= 0.3**2
    raise ValueError(f"unknown texture '{texture}'")


# Shapes in their own frame: (u, v) in shape radii, v pointing down; all fit the unit disc.


def _circle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return u**2 + v**2 <= 1.0


def _square(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.maximum(np.abs(u), np.abs(v)) <= 0.7


def _triangle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    inside = np.ones(u.shape, dtype=bool)
    for normal_angle in (math.pi / 2, 7 * math.pi / 6, 11 * math.pi / 6):
        inside &= u * math.cos(normal_angle) + v * math.sin(normal_angle) <= 0.5
    return inside


def _star(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    theta = np.arctan2(v, u)
    arm = np.mod(theta * 5 / (2 * math.pi), 1.0)  # 0 and 1 at a point, 0.5 between points
    outline = 0.42 + 0.58 * np.abs(2 * arm - 1)
    return np.sqrt(u**2 + v**2) <= outline


def _cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    au, av = np.abs(u), np.abs(v)
    return ((au <= 0.28) & (av <= 0.92)) | ((av <= 0.28) & (au <= 0.92))


def _ring(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    r2 = u**2 + v**2
    return (r2 <= 1.0) & (r2 >= 0.55**2)


def _crescent(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return (u**2 + v**2 <= 1.0) & ((u - 0.5) ** 2 + v**2 > 0.8**2)


def _heart(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    x = 1.25 * u
    y = -1.25 * v + 0.25
    return (x**2 + y**2 - 1) ** 3 - x**2 * y**3 <= 0


def _arrow(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    shaft = (np.abs(v) <= 0.22) & (u >= -0.95) & (u <= 0.05)
    head = (u >= 0.0) & (u <= 0.95) & (np.abs(v) <= 0.75 * (0.95 - u) / 0.95)
    return shaft | head


def _hourglass(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return (np.abs(v) <= 0.85) & (np.abs(u) <= 0.55 * np.abs(v) + 0.05)


_SHAPE_FUNCTIONS = {
    "circle": _circle,
    "square": _square,
    "triangle": _triangle,
    "star": _star,
    "cross": _cross,
    "ring": _ring,
    "crescent": _crescent,
    "heart": _heart,
    "arrow": _arrow,
    "hourglass": _hourglass,
}
