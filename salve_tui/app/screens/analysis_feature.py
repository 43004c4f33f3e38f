"""Feature detail: what one SAE feature responds to (SPEC §6).

* the test samples with the highest and the lowest latent ``u_k`` (both signs matter: latents
  are signed), as thumbnails captioned with their class;
* Grad-FAM of the selected thumbnail, computed in a thread worker (read-only, nothing stored);
* activation maximisation (``a``): a cancellable app job running
  :func:`core.workflow.actmax_images.actmax_png`; its figure (``core.workflow.actmax_images.actmax_path``, the file the CLI
  writes too) is shown once it exists, so it survives a restart;
* class association: μ_ck of this feature for every class as a signed bar.

Opened from the feature–class matrix (Enter); not a dashboard view of its own because it needs
a feature.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Footer, Header, Static
from textual.worker import get_current_worker

from salve_tui.app.jobs import JOB_END_MESSAGES, JobMessage, JobProgress
from salve_tui.app.screens.analysis_shared import (
    bar_text,
    class_name,
    gradfam_with_overlay,
)
from salve_tui.app.screens.base import SessionScreen
from salve_tui.app.widgets.image import ImageView

if TYPE_CHECKING:
    from core.workflow.saliency_maps import SaliencyResult

THUMBNAILS = 8  # per sign; the session stores 16
STEP_GROUP = Binding.Group("feature ", compact=True)  # the footer shows "<> feature"


def read_png(path: Path) -> np.ndarray | None:
    """An RGB uint8 array of the PNG at ``path``, or None when it does not exist (yet)."""
    from PIL import Image

    if not path.is_file():
        return None
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"))


def encode_latents(session) -> np.ndarray:  # noqa: ANN001 (Session)
    """``u`` (N×h) of the test split with the stored SAE weights, in numpy (no torch needed)."""
    from salve_tui.app.preload import latents_of_test_split

    return latents_of_test_split(session)


@dataclass
class FeatureData:
    """What the feature screen draws for one feature, read in its load worker."""

    feature: int
    class_names: list[str]
    M: np.ndarray
    dominant: np.ndarray
    latents: np.ndarray
    labels: np.ndarray
    top: dict[str, np.ndarray]
    images: dict[str, np.ndarray]
    actmax_image: np.ndarray | None


class Thumbnail(Vertical):
    """A sample image with its class under it; the selected one has a reversed caption."""

    DEFAULT_CSS = """
    Thumbnail { width: 9; height: 5; padding-right: 1; }
    Thumbnail ImageView { height: 4; }
    Thumbnail .caption { height: 1; text-wrap: nowrap; text-overflow: ellipsis; }
    Thumbnail.-selected .caption { text-style: reverse bold; }
    """

    def __init__(self, image: np.ndarray, caption: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self._image = image
        self._caption = caption

    def compose(self) -> ComposeResult:
        yield ImageView(self._image)
        yield Static(self._caption, classes="caption", markup=False)

    def set_selected(self, selected: bool) -> None:
        self.set_class(selected, "-selected")


class FeatureDetailScreen(SessionScreen):
    SCREEN_TITLE = "Feature detail"
    HELP_TEXT = (
        "One SAE feature. Top: the test samples with the highest latent u_k (▲) and the lowest "
        "(▼), labelled with their class. Arrows choose a sample; its Grad-FAM map (where in the "
        "image the feature's evidence sits) is computed in the background and shown bottom right. "
        "a runs activation maximisation (an image synthesised to drive u_k; a job with progress, "
        "c cancels it; the figure is saved in the export folder). Bottom left: the feature's mean "
        "latent μ for every class. < and > step to the previous / next feature; e opens an edit "
        "preview of this feature."
    )
    DEFAULT_CSS = """
    FeatureDetailScreen #feature-info { height: 1; padding: 0 1; text-wrap: nowrap; text-overflow: ellipsis; }
    FeatureDetailScreen .strip-title { height: 1; padding: 0 1; color: $text-muted; text-wrap: nowrap; }
    FeatureDetailScreen .thumb-strip { height: 5; padding: 0 1; }
    FeatureDetailScreen #feature-bottom { height: 1fr; }
    FeatureDetailScreen #feature-assoc { width: 38; }
    FeatureDetailScreen #feature-preview { width: 1fr; }
    FeatureDetailScreen #feature-preview-title { height: 1; text-wrap: nowrap; text-overflow: ellipsis; }
    FeatureDetailScreen #feature-preview-images { height: 1fr; }
    FeatureDetailScreen #feature-preview-images ImageView { width: 1fr; margin-right: 1; }
    """
    BINDINGS: ClassVar[list[Binding]] = [
        Binding("left", "move(0, -1)", "Sample", show=False),
        Binding("right", "move(0, 1)", "Sample", show=False),
        Binding("up", "move(-1, 0)", "Row", show=False),
        Binding("down", "move(1, 0)", "Row", show=False),
        Binding("a", "actmax", "Act-max"),
        Binding("e", "edit_feature", "Edit"),
        Binding("less_than_sign", "step_feature(-1)", "Prev feature", key_display="<", group=STEP_GROUP),
        Binding("greater_than_sign", "step_feature(1)", "Next feature", key_display=">", group=STEP_GROUP),
    ]
    LOADING = "the feature's top samples, latents and thumbnails"
    CONTENT_ACTIONS = frozenset({"move", "actmax", "edit_feature", "step_feature"})

    def __init__(self, feature: int, selected_class: int | None = None) -> None:
        super().__init__()
        self.feature = int(feature)
        self.selected_class = selected_class
        self.top: dict[str, np.ndarray] = {"pos": np.zeros(0, np.int64), "neg": np.zeros(0, np.int64)}
        self.latents = np.zeros((0, 0))
        self.labels = np.zeros(0, np.int64)
        self.class_names: list[str] = []
        self.M = np.zeros((0, 0))
        self.dominant = np.zeros(0, np.int64)
        self.selection = (0, 0)  # (row: 0 = highest, 1 = lowest; column)
        self.preview: SaliencyResult | None = None
        self.preview_error = ""
        self.actmax_image: np.ndarray | None = None  # the act-max figure, as written by core
        self._built_for: int | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static(id="feature-info", markup=False)
        yield Static(id="feature-pos-title", classes="strip-title", markup=False)
        yield Horizontal(id="feature-pos", classes="thumb-strip")
        yield Static(id="feature-neg-title", classes="strip-title", markup=False)
        yield Horizontal(id="feature-neg", classes="thumb-strip")
        with Horizontal(id="feature-bottom"):
            with VerticalScroll(id="feature-assoc"):
                yield Static(id="feature-assoc-bars", markup=False)
            with Vertical(id="feature-preview"):
                yield Static(id="feature-preview-title", markup=False)
                with Horizontal(id="feature-preview-images"):
                    yield ImageView(id="preview-image")
                    yield ImageView(id="preview-overlay")
                    yield ImageView(id="preview-actmax")
        yield Footer(compact=True)

    # ----- session → view

    def load(self) -> FeatureData:
        """Rankings of this feature plus the shared latents, labels and thumbnails."""
        from core.workflow.actmax_images import actmax_path

        session, shared, feature = self.session, self.salve.shared, self.feature
        M = np.asarray(session.read_array("rankings/class_means"), dtype=float)
        if not 0 <= feature < M.shape[1]:
            raise ValueError(f"feature {feature} is out of range (0..{M.shape[1] - 1})")
        top = {
            "pos": np.asarray(session.read_array("rankings/top_pos"))[feature][:THUMBNAILS],
            "neg": np.asarray(session.read_array("rankings/top_neg"))[feature][:THUMBNAILS],
        }
        thumbnails = shared.get("thumbnails", session)
        return FeatureData(
            feature=feature,
            class_names=[str(c) for c in session.read_json("class_names")],
            M=M,
            dominant=np.asarray(session.read_array("rankings/dominant"), dtype=np.int64),
            latents=shared.get("latents", session),
            labels=shared.get("inputs", session).labels.numpy().astype(np.int64),
            top=top,
            images={sign: thumbnails[idx] if len(idx) else np.zeros((0, 1, 1, 3), np.uint8)
                    for sign, idx in top.items()},
            actmax_image=read_png(actmax_path(session, feature)),
        )

    def show(self, data: FeatureData) -> None:
        if data.feature != self.feature:
            return  # < or > was pressed meanwhile; its reload is on the way
        self.class_names, self.M, self.dominant = data.class_names, data.M, data.dominant
        self.latents, self.labels, self.top = data.latents, data.labels, data.top
        self.actmax_image = data.actmax_image
        if self._built_for != self.feature:
            self._built_for = self.feature
            self._build_thumbnails(data.images)
            self.selection = (0, 0)
            self._select(0, 0)
        self._draw_text()
        self._draw_actmax()

    def _build_thumbnails(self, images: dict[str, np.ndarray]) -> None:
        for sign, strip_id in (("pos", "#feature-pos"), ("neg", "#feature-neg")):
            strip = self.query_one(strip_id, Horizontal)
            strip.remove_children()
            strip.mount_all(
                Thumbnail(image, class_name(self.class_names, int(self.labels[i])))
                for image, i in zip(images[sign], self.top[sign], strict=True)
            )

    def _draw_text(self) -> None:
        k = self.feature
        owners = [class_name(self.class_names, c) for c, d in enumerate(self.dominant) if int(d) == k]
        column = self.M[:, k]
        strongest = int(np.nanargmax(np.abs(column))) if np.isfinite(column).any() else 0
        info = Text(f"feature {k}", style="bold")
        info.append(f" of {self.M.shape[1]} · ")
        info.append("dominant for " + ", ".join(owners) if owners else "dominant for no class",
                    style="bold green" if owners else "dim")
        info.append(f" · strongest μ: {class_name(self.class_names, strongest)} "
                    f"{column[strongest]:+.3f}")
        self.query_one("#feature-info", Static).update(info)
        u = self.latents[:, k] if self.latents.size else np.zeros(0)
        pos, neg = self.top["pos"], self.top["neg"]
        self.query_one("#feature-pos-title", Static).update(
            f"▲ highest u_{k}" + (f" ({u[pos[0]]:+.2f} … {u[pos[-1]]:+.2f})" if len(pos) else ""))
        self.query_one("#feature-neg-title", Static).update(
            f"▼ lowest u_{k}" + (f" ({u[neg[0]]:+.2f} … {u[neg[-1]]:+.2f})" if len(neg) else ""))
        scale = float(np.nanmax(np.abs(column))) if np.isfinite(column).any() else 1.0
        bars = Text(f"class association μ_c,{k}\n", style="bold")
        width = max(len(n) for n in self.class_names) if self.class_names else 5
        width = min(width, 10)
        for c, value in enumerate(column):
            style = "reverse" if c == self.selected_class else ""
            bars.append(class_name(self.class_names, c)[:width].ljust(width) + " ", style=style)
            bars.append_text(bar_text(float(value), scale, half_width=8))
            bars.append(f" {value:+.2f}\n" if np.isfinite(value) else "  —\n")
        self.query_one("#feature-assoc-bars", Static).update(bars)
        self._draw_preview_title()

    def _draw_preview_title(self) -> None:
        title = Text()
        sample = self.selected_sample
        if sample is None:
            title.append("no samples")
        else:
            label = class_name(self.class_names, int(self.labels[sample]))
            u = self.latents[sample, self.feature] if self.latents.size else float("nan")
            title.append(f"#{sample} {label} u={u:+.2f}", style="bold")
            if self.preview_error:
                title.append(f" │ Grad-FAM failed: {self.preview_error}", style="red")
            elif self.preview is None or self.preview.sample != sample:
                title.append(" │ Grad-FAM…", style="dim")
            else:
                title.append(" │ Grad-FAM")
        title.append(" │ act-max" if self.actmax_image is not None else " │ act-max: press a",
                     style="" if self.actmax_image is not None else "dim")
        self.query_one("#feature-preview-title", Static).update(title)

    def _draw_actmax(self) -> None:
        view = self.query_one("#preview-actmax", ImageView)
        view.image = self.actmax_image

    # ----- selection and Grad-FAM

    @property
    def selected_sample(self) -> int | None:
        row, column = self.selection
        strip = self.top["pos" if row == 0 else "neg"]
        return int(strip[column]) if column < len(strip) else None

    def action_move(self, rows: int, columns: int) -> None:
        row, column = self.selection
        row = min(1, max(0, row + rows))
        strip = self.top["pos" if row == 0 else "neg"]
        column = min(max(0, len(strip) - 1), max(0, column + columns))
        self._select(row, column)

    def _select(self, row: int, column: int) -> None:
        self.selection = (row, column)
        for r, strip_id in enumerate(("#feature-pos", "#feature-neg")):
            for c, thumb in enumerate(self.query_one(strip_id, Horizontal).query(Thumbnail)):
                thumb.set_selected((r, c) == (row, column))
        sample = self.selected_sample
        if sample is None:
            return
        self.preview_error = ""
        self._draw_preview_title()
        session, feature = self.session, self.feature

        def compute() -> None:
            worker = get_current_worker()
            try:
                preview, overlay = gradfam_with_overlay(session, sample, feature)
            except Exception as exc:  # shown in the title; previews never crash the screen
                if not worker.is_cancelled:
                    self.app.call_from_thread(self._show_preview_error, str(exc))
                return
            if not worker.is_cancelled:
                self.app.call_from_thread(self._show_preview, preview, overlay)

        self.run_worker(compute, thread=True, exclusive=True, group="gradfam", exit_on_error=False)

    def _show_preview(self, preview: SaliencyResult, overlay: np.ndarray) -> None:
        if not self.is_attached or preview.sample != self.selected_sample or preview.feature != self.feature:
            return
        self.preview = preview
        self.query_one("#preview-image", ImageView).image = preview.image
        self.query_one("#preview-overlay", ImageView).image = overlay
        self._draw_preview_title()

    def _show_preview_error(self, error: str) -> None:
        if self.is_attached:
            self.preview_error = error
            self._draw_preview_title()

    # ----- actions

    def action_step_feature(self, step: int) -> None:
        self.feature = (self.feature + step) % max(1, self.M.shape[1])
        self.preview = None
        self.query_one("#feature-info", Static).update(Text(f"loading feature {self.feature}…", style="dim"))
        self.reload()

    def action_edit_feature(self) -> None:
        from salve_tui.app.screens.analysis_edit import EditPreviewScreen

        target = self.selected_class
        if target is None:
            target = int(np.nanargmax(np.abs(self.M[:, self.feature])))
        self.app.push_screen(EditPreviewScreen(target_class=target, features=[self.feature]))

    def action_actmax(self) -> None:
        session, feature = self.session, self.feature

        def body(progress, cancel):  # noqa: ANN001 (core ProgressFn, CancelToken)
            from core.workflow.actmax_images import actmax_png

            # Paper settings, driving u_k the way the class that uses it most does.
            return actmax_png(session, feature, progress=progress, cancel=cancel)

        self.salve.start_job(f"act-max feature {feature}", body)

    def on_job_update(self, message: JobMessage) -> None:
        if isinstance(message, JobProgress) and message.progress.stage == "activation maximisation":
            title = self.query_one("#feature-preview-title", Static)
            title.update(f"act-max feature {self.feature}: {message.progress.fraction:.0%} "
                         f"{message.progress.message} (c cancels)")
        elif isinstance(message, JOB_END_MESSAGES):
            self._draw_preview_title()

