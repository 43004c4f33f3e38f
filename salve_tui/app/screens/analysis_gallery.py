"""Exported PNGs previewed in the terminal: every image in the session's export folder.

Lists ``<session>.exports/**/*.png`` newest first; the highlighted one is read (and shrunk to
what the terminal can show) in a thread worker and drawn with the image widget (real pixels on
Sixel/Kitty terminals, half-blocks elsewhere).
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import numpy as np
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from salve_tui.app.screens.base import SessionScreen, session_view
from salve_tui.app.widgets.chrome import ScreenFooter, ScreenHeader
from salve_tui.app.widgets.filter import FILTER_BINDING, FilterBar, matches
from salve_tui.app.widgets.image import ImageView

MAX_PREVIEW_PIXELS = 480  # longest side kept for drawing; the terminal shows far fewer


def list_pngs(folder: Path) -> list[Path]:
    """PNG files under ``folder`` (recursively), newest first, ties by name."""
    if not folder.is_dir():
        return []
    files = [p for p in folder.rglob("*.png") if p.is_file() and not p.name.startswith(".")]
    return sorted(files, key=lambda p: (-p.stat().st_mtime, str(p)))


def read_preview(path: Path, longest: int = MAX_PREVIEW_PIXELS) -> tuple[np.ndarray, tuple[int, int]]:
    """(RGB uint8 array shrunk so its longest side is at most ``longest``, original (w, h))."""
    from PIL import Image

    with Image.open(path) as image:
        size = image.size
        rgb = image.convert("RGB")
        if max(size) > longest:
            rgb.thumbnail((longest, longest), Image.Resampling.LANCZOS)
        return np.asarray(rgb), size


def human_size(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


@session_view(footer="PNGs", key="p", title="PNG previews", requires=(), order=55,
              name="png_previews", in_footer=False,
              description="Preview the exported PNG figures and heatmaps in the terminal")
class GalleryScreen(SessionScreen):
    SCREEN_TITLE = "PNG previews"
    HELP_TEXT = (
        "Every PNG in the session's export folder (heatmaps, figures, act-max), newest first. "
        "↑/↓ choose one; it is drawn on the right (real pixels on terminals with Sixel or Kitty "
        "graphics, coloured half-blocks elsewhere: set SALVE_TUI_IMAGES=halfblock to force them). "
        "r re-reads the folder."
    )
    CSS_PATH = Path(__file__).with_suffix(".tcss")  # this module's screens
    LOADING = "the list of PNGs in the export folder"
    INFO, FAILED, LOAD_ERROR_IN_INFO = "gallery-info", "preview the PNGs", True
    BINDINGS: ClassVar[list[Binding]] = [Binding("r", "rescan", "Re-read"), FILTER_BINDING]

    def __init__(self) -> None:
        super().__init__()
        self.files: list[Path] = []
        self.folder: Path | None = None
        self.filter_text = ""
        self.shown: Path | None = None

    def compose(self) -> ComposeResult:
        yield ScreenHeader()
        yield Static("", id="gallery-info", markup=False)
        yield FilterBar()
        with Horizontal(id="gallery-body"):
            yield OptionList(id="gallery-list")
            with Vertical(id="gallery-right"):
                yield Static("", id="gallery-caption", markup=False)
                yield ImageView(id="gallery-image")
        yield ScreenFooter(compact=True)

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()

    def load(self) -> tuple[Path, list[Path]]:
        folder = self.session.exports_dir
        return folder, list_pngs(folder)

    def action_rescan(self) -> None:
        self.reload()

    def show(self, listed: tuple[Path, list[Path]]) -> None:
        folder, files = listed
        changed = files != self.files or self.folder is None  # the first listing always shows
        self.files, self.folder = files, folder
        if changed:
            self._fill_options()

    def apply_filter(self, text: str) -> None:
        self.filter_text = text.strip()
        self._fill_options()

    def _fill_options(self) -> None:
        """The PNGs matching the filter (all without one); option ids index ``self.files``."""
        folder, files = self.folder, self.files
        if folder is None:
            return
        options = self.query_one(OptionList)
        shown = [(i, p) for i, p in enumerate(files) if matches(self.filter_text, p.relative_to(folder))]
        options.clear_options()
        options.add_options([Option(str(p.relative_to(folder)), id=str(i)) for i, p in shown])
        total = sum(p.stat().st_size for p in files if p.exists())
        info = (f"{len(files)} PNG file(s) in {folder.name}/ ({human_size(total)})" if files else
                f"no PNG in {folder} yet: export figures (x) or heatmaps first")
        if self.filter_text:
            info += f" · {len(shown)} match '{self.filter_text}'"
        self.query_one("#gallery-info", Static).update(info)
        if shown:
            options.highlighted = 0

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if event.option_id is None:
            return
        path = self.files[int(event.option_id)]
        self.query_one("#gallery-caption", Static).update(Text(f"loading {path.name}…", style="dim"))
        self.compute_in_thread(lambda: (path, read_preview(path)), self._show, group="gallery-image")

    def _show(self, loaded: tuple[Path, tuple[np.ndarray, tuple[int, int]]]) -> None:
        path, (image, (width, height)) = loaded
        self.shown = path
        self.query_one("#gallery-image", ImageView).image = image
        self.query_one("#gallery-caption", Static).update(
            f"{path.name} · {width}×{height} px · {human_size(path.stat().st_size)}")
