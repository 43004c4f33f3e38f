"""Show an RGB uint8 numpy image in the terminal, over plain SSH or with a graphics protocol.

Half-blocks work everywhere: each cell shows two vertical pixels, the upper one as the
foreground colour of ``▀`` and the lower one as the background. Terminals that speak Kitty's
graphics protocol or Sixel get real pixels through ``textual_image`` — but that library has to
query the terminal *before* Textual takes it over, so :func:`preload_terminal_graphics` runs
from ``main()`` and :func:`image_backend` only reports what that query found.
``SALVE_TUI_IMAGES=halfblock`` forces half-blocks (tests, screenshots, odd terminals).
"""

from __future__ import annotations

import os
import sys

import numpy as np
from PIL import Image as PILImage
from rich.segment import Segment
from rich.style import Style
from textual.app import ComposeResult
from textual.geometry import Size
from textual.strip import Strip
from textual.widget import Widget

IMAGES_ENV = "SALVE_TUI_IMAGES"
HALF_BLOCK = "▀"
_RICH_BACKENDS = {"sixel", "tgp"}


def forced_halfblock() -> bool:
    return os.environ.get(IMAGES_ENV, "auto").strip().lower() in ("halfblock", "half", "halfblocks", "text")


def preload_terminal_graphics() -> None:
    """Let textual_image probe the terminal for Sixel/TGP (must happen before the app starts)."""
    if forced_halfblock() or not (sys.__stdout__ and sys.__stdout__.isatty()):
        return
    try:
        import textual_image.widget  # noqa: F401  (import performs the terminal query)
    except Exception:  # no terminal answer, odd platform: half-blocks still work
        return


def image_backend() -> str:
    """``sixel`` / ``tgp`` when the preloaded probe found support, else ``halfblock``."""
    if forced_halfblock():
        return "halfblock"
    renderable = sys.modules.get("textual_image.renderable")
    if renderable is None:
        return "halfblock"
    kind = getattr(renderable, "Image", None).__module__.rsplit(".", 1)[-1]
    return kind if kind in _RICH_BACKENDS else "halfblock"


def check_rgb(image: np.ndarray) -> np.ndarray:
    """Accept H×W×3 uint8 (or H×W grey); refuse anything else with a message."""
    array = np.asarray(image)
    if array.ndim == 2:
        array = np.repeat(array[:, :, None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise ValueError(
            f"images must be H×W×3 uint8 arrays, got shape {array.shape} dtype {array.dtype}; "
            "convert floats with (x * 255).clip(0, 255).astype(np.uint8)"
        )
    return array


def fit_pixels(height: int, width: int, cols: int, rows: int) -> tuple[int, int]:
    """Largest (pixel_width, pixel_height) with the image's aspect that fits ``cols``×``rows`` cells.

    A cell holds 1×2 half-block pixels, which are about square on common terminal fonts.
    """
    if cols <= 0 or rows <= 0 or height <= 0 or width <= 0:
        return 0, 0
    scale = min(cols / width, (2 * rows) / height)
    return max(1, min(cols, round(width * scale))), max(1, min(2 * rows, round(height * scale)))


def halfblock_lines(image: np.ndarray, cols: int, rows: int) -> list[list[Segment]]:
    """Segments per terminal row: the image downsampled to fit, two pixels per cell."""
    array = check_rgb(image)
    pixel_w, pixel_h = fit_pixels(array.shape[0], array.shape[1], cols, rows)
    if pixel_w == 0:
        return []
    if (pixel_w, pixel_h) != (array.shape[1], array.shape[0]):
        array = np.asarray(PILImage.fromarray(array).resize((pixel_w, pixel_h), PILImage.Resampling.BOX))
    lines: list[list[Segment]] = []
    for top in range(0, pixel_h, 2):
        segments = []
        for x in range(pixel_w):
            r, g, b = (int(v) for v in array[top, x])
            fg = f"rgb({r},{g},{b})"
            if top + 1 < pixel_h:
                r2, g2, b2 = (int(v) for v in array[top + 1, x])
                style = Style(color=fg, bgcolor=f"rgb({r2},{g2},{b2})")
            else:
                style = Style(color=fg)
            segments.append(Segment(HALF_BLOCK, style))
        lines.append(segments)
    return lines


class HalfBlockImage(Widget):
    """An RGB image drawn with coloured ``▀`` cells, resized to the widget."""

    DEFAULT_CSS = """
    HalfBlockImage { width: 1fr; height: 1fr; }
    """

    def __init__(self, image: np.ndarray | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self._image = None if image is None else check_rgb(image)
        self._cache_key: tuple[int, int] | None = None
        self._lines: list[list[Segment]] = []

    @property
    def image(self) -> np.ndarray | None:
        return self._image

    @image.setter
    def image(self, image: np.ndarray | None) -> None:
        self._image = None if image is None else check_rgb(image)
        self._cache_key = None
        self.refresh()

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        if self._image is None:
            return 1
        _, pixel_h = fit_pixels(self._image.shape[0], self._image.shape[1], width, 10_000)
        return (pixel_h + 1) // 2

    def render_line(self, y: int) -> Strip:
        width, height = self.content_size
        if self._image is None:
            return Strip.blank(width, self.rich_style)
        if self._cache_key != (width, height):
            self._lines = halfblock_lines(self._image, width, height)
            self._cache_key = (width, height)
        if y >= len(self._lines):
            return Strip.blank(width, self.rich_style)
        return Strip(self._lines[y]).extend_cell_length(width, self.rich_style)


class ImageView(Widget):
    """Image widget that picks the best backend: Sixel/TGP pixels when available, else half-blocks."""

    DEFAULT_CSS = """
    ImageView { width: 1fr; height: 1fr; }
    ImageView > * { width: 1fr; height: 1fr; }
    """

    def __init__(self, image: np.ndarray | None = None, backend: str | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.backend = backend or image_backend()
        self._image = None if image is None else check_rgb(image)

    def compose(self) -> ComposeResult:
        if self.backend == "halfblock":
            yield HalfBlockImage(self._image)
        else:
            from textual_image.widget import Image as PixelImage

            yield PixelImage(None if self._image is None else PILImage.fromarray(self._image))

    @property
    def image(self) -> np.ndarray | None:
        return self._image

    @image.setter
    def image(self, image: np.ndarray | None) -> None:
        self._image = None if image is None else check_rgb(image)
        if not self.is_mounted or not self.children:
            return
        child = self.children[0]
        if isinstance(child, HalfBlockImage):
            child.image = self._image
        else:
            child.image = None if self._image is None else PILImage.fromarray(self._image)  # type: ignore[attr-defined]
