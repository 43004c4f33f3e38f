"""The feature card's sample rows: thumbnails of test samples with a caption, a row of them under
a title, and how large they can be drawn for a terminal size."""

from __future__ import annotations

import numpy as np
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Static

from salve_tui.app.widgets.image import ImageView

MIN_PIXELS = 16  # thumbnails are never smaller (half-blocks: 2 px per cell vertically)
MAX_PIXELS = 40
MIN_BOTTOM_ROWS = 11  # the panels under the rows need a title + 10 rows (10 classes)


def card_layout(width: int, height: int, n_samples: int = 8) -> tuple[int, int, int]:
    """(thumbnail pixels, visible sample rows, thumbnails shown per row) for a terminal size.

    Thumbnails are square, at least :data:`MIN_PIXELS`, as large as width (all samples of a row
    side by side) and height (the rows shown plus the panels) allow; all three rows are shown
    once they fit at the minimum size, else one (↑/↓ switch it).
    """
    free = max(0, height - 3 - MIN_BOTTOM_ROWS)  # header, info line, footer

    def pixels_for(rows: int) -> int:
        return 2 * (free // rows - 2)  # each row: a title, the image, a caption

    rows = 3 if pixels_for(3) >= MIN_PIXELS else 1
    by_width = (width - 2) // n_samples - 1
    pixels = max(MIN_PIXELS, min(MAX_PIXELS, by_width, pixels_for(rows)))
    pixels -= pixels % 2
    per_row = max(1, min(n_samples, (width - 2) // (pixels + 1)))
    return pixels, rows, per_row


class Thumbnail(Vertical):
    """A sample image with its class and latent under it; the selected one is reversed."""

    DEFAULT_CSS = """
    Thumbnail { width: 17; height: 9; padding-right: 1; }
    Thumbnail ImageView { height: 1fr; }
    Thumbnail .caption { height: 1; text-wrap: nowrap; text-overflow: ellipsis; }
    Thumbnail.-selected .caption { text-style: reverse bold; }
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.sample: int | None = None

    def compose(self) -> ComposeResult:
        yield ImageView()
        yield Static("", classes="caption", markup=False)

    def show(self, sample: int | None, image: np.ndarray | None, caption: str) -> None:
        self.sample = sample
        self.query_one(ImageView).image = image
        self.query_one(".caption", Static).update(caption)

    def set_selected(self, selected: bool) -> None:
        self.set_class(selected, "-selected")


class SampleRow(Vertical):
    """One row of the card: a title and up to eight thumbnails (a window of them when narrow)."""

    DEFAULT_CSS = """
    SampleRow { height: auto; }
    SampleRow .row-title { height: 1; padding: 0 1; color: $text-muted; text-wrap: nowrap; text-overflow: ellipsis; }
    SampleRow.-current .row-title { color: $text; text-style: bold; }
    SampleRow Horizontal { height: auto; padding: 0 1; }
    """

    def __init__(self, key: str, n_samples: int, **kwargs) -> None:
        super().__init__(**kwargs)
        self.key = key
        self.n_samples = n_samples

    def compose(self) -> ComposeResult:
        yield Static("", classes="row-title", markup=False)
        with Horizontal():
            for i in range(self.n_samples):
                yield Thumbnail(id=f"thumb-{self.key}-{i}")

    @property
    def thumbnails(self) -> list[Thumbnail]:
        return list(self.query(Thumbnail))
