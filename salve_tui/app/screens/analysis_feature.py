"""Feature card: what one SAE feature responds to, image first (sae_vis / Neuronpedia style).

* sample rows: the test samples with the highest ``u_k`` (▲), samples at evenly spaced
  activation quantiles (≈), and the lowest (▼) — latents are signed, both ends matter — drawn
  at 16×16 px or more (the size grows with the terminal); ↑/↓ choose the row, ←/→ the sample;
* the selected sample and its Grad-FAM map (a thread worker; read-only, nothing stored);
* panels (1–4, tab cycles): the histogram of ``u_k`` over the test split stacked by class; the
  class table (μ_ck and the direct effect ``W·D[:,k]`` on every class logit, what the SALVE edit
  scales); the nearest features by decoder cosine; the activation-maximisation snapshots as
  images (``a`` runs it as a cancellable job; they are stored beside its figure).

The numbers come from :func:`core.workflow.feature_card.feature_card`. The screen follows the
load pattern of :mod:`salve_tui.app.screens.base`: it paints the title, a loading notice and the
footer at once (the 24 thumbnails and the panels are mounted right after that first frame, while
:meth:`FeatureDetailScreen.load` reads in a thread worker), then :meth:`FeatureDetailScreen.show`
fills them in. Opened from the feature–class matrix (Enter); not a dashboard view of its own
because it needs a feature.
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
from textual.widget import Widget
from textual.widgets import ContentSwitcher, Static

from salve_tui.app.jobs import JOB_END_MESSAGES, JobFinished, JobMessage, JobProgress
from salve_tui.app.screens.analysis_shared import class_name, gradfam_with_overlay, sample_images
from salve_tui.app.screens.base import SessionScreen
from salve_tui.app.screens.feature_text import (
    PANELS,
    Actmax,
    actmax_captions,
    actmax_progress,
    actmax_status,
    classes_text,
    info_text,
    nearest_text,
    panel_title,
    selected_title,
)
from salve_tui.app.widgets.chrome import ScreenFooter, ScreenHeader
from salve_tui.app.widgets.histogram import ClassHistogram
from salve_tui.app.widgets.image import ImageView
from salve_tui.app.widgets.samples import (
    MIN_BOTTOM_ROWS,
    MIN_PIXELS,
    SampleRow,
    Thumbnail,
    card_layout,
)

if TYPE_CHECKING:
    from core.workflow.feature_card import FeatureCard, FeatureCardInputs
    from core.workflow.saliency_maps import SaliencyResult

# tests and other modules import these from here
__all__ = ["MIN_PIXELS", "CardData", "FeatureDetailScreen", "SampleRow", "Thumbnail", "card_layout", "encode_latents"]

ROWS = (("top", "▲ highest"), ("quantiles", "≈ quantiles of"), ("bottom", "▼ lowest"))


def encode_latents(session) -> np.ndarray:  # noqa: ANN001 (Session)
    """``u`` (N×h) of the test split with the stored SAE (:func:`core.workflow.feature_card.split_latents`)."""
    from core.workflow.feature_card import split_latents

    return split_latents(session)


class PanelScroll(VerticalScroll, can_focus=False):
    """A panel that scrolls by PgUp/PgDn only: ↑/↓ stay with the sample selection."""


@dataclass(frozen=True)
class CardData:
    """What :meth:`FeatureDetailScreen.load` read for one feature (the worker's result)."""

    inputs: FeatureCardInputs
    card: FeatureCard
    images: dict[int, np.ndarray]  # the test images of the card's samples not shown before
    actmax: Actmax | None
    # samples whose images are still to come: the preloader had not read the test split yet
    # (regenerating it takes seconds), so the numbers and rows are shown first
    images_pending: tuple[int, ...] = ()


class FeatureDetailScreen(SessionScreen):
    SCREEN_TITLE = "Feature card"
    HELP_TEXT = (
        "One SAE feature, image first. Rows of test samples: ▲ the highest latent u_k, ≈ samples "
        "at evenly spaced quantiles of u_k, ▼ the lowest (latents are signed). ↑/↓ choose the "
        "row, ←/→ the sample; the selected sample and its Grad-FAM map (where its evidence for "
        "the feature sits) are shown bottom left. Panels, 1–4 or tab: 1 the histogram of u_k over "
        "the test split, stacked by class (▲ marks the selected sample); 2 per class (■ its colour "
        "in the histogram, ◆ where this is the class's dominant feature) the mean latent μ_ck and the direct effect W·D[:,k] of the feature on the class logit (the logit "
        "change per unit of u_k, what a SALVE edit scales down); 3 the features whose decoder "
        "direction is closest (cosine); 4 activation-maximisation snapshots (a runs it as a job, "
        "c cancels). PgUp/PgDn scroll a long panel. < and > step to the previous / next feature, "
        "e opens an edit preview of it."
    )
    CSS_PATH = Path(__file__).with_name("analysis_feature.tcss")  # absolute: a subclass may live elsewhere
    BINDINGS: ClassVar[list[Binding]] = [
        Binding("left", "move(0, -1)", "Previous sample", show=False),
        Binding("right", "move(0, 1)", "Next sample", show=False),
        Binding("up", "move(-1, 0)", "Row up", show=False),
        Binding("down", "move(1, 0)", "Row down", show=False),
        Binding("a", "actmax", "Act-max"),
        Binding("e", "edit_feature", "Edit"),
        Binding("less_than_sign", "step_feature(-1)", "Prev", key_display="<"),
        Binding("greater_than_sign", "step_feature(1)", "Next", key_display=">"),
        Binding("tab", "next_panel", "Next panel", show=False),
        Binding("1", "panel('histogram')", "Histogram", show=False),
        Binding("2", "panel('classes')", "Classes: μ and W·D", show=False),
        Binding("3", "panel('nearest')", "Nearest features", show=False),
        Binding("4", "panel('actmax')", "Act-max snapshots", show=False),
        Binding("pagedown", "scroll_panel(1)", "Scroll panel down", show=False),
        Binding("pageup", "scroll_panel(-1)", "Scroll panel up", show=False),
    ]
    LOADING = "the feature card (latents, decoder, test images)"
    CONTENT_ACTIONS = frozenset({"edit_feature", "step_feature", "actmax"})

    def __init__(self, feature: int, selected_class: int | None = None) -> None:
        super().__init__()
        self.feature = int(feature)
        self.selected_class = selected_class
        self.inputs: FeatureCardInputs | None = None
        self.card: FeatureCard | None = None
        self.images: dict[int, np.ndarray] = {}  # test sample → RGB image
        self.images_pending = False  # the rows are shown, their images are still being read
        self.selection = (0, 0)  # (row: 0 top, 1 quantiles, 2 bottom; column)
        self.panel = "histogram"
        self.preview: SaliencyResult | None = None
        self.preview_error = ""
        self.load_error = ""
        self.actmax: Actmax | None = None
        self._actmax_job: object | None = None
        self._actmax_feature: int | None = None  # the feature the running act-max job drives
        self._actmax_progress = ""
        self._layout = (MIN_PIXELS, 1, 4)
        self._body_built = self._body_ready = False
        self._pending: CardData | None = None  # a card loaded before the body was mounted

    def loading_what(self) -> str:
        return f"feature {self.feature}: latents, decoder, test images"

    def compose(self) -> ComposeResult:
        # Only what the first frame needs: the ~100 widgets of the rows and panels come after it.
        yield ScreenHeader()
        yield Static(f"feature {self.feature}", id="feature-info", markup=False)  # the notice says what loads
        yield Vertical(id="feature-body")
        yield ScreenFooter(compact=True)

    def _body(self) -> list[Widget]:
        """The rows of thumbnails and the bottom panels (mounted by :meth:`_build_body`)."""
        panels = ContentSwitcher(
            ClassHistogram(id="panel-histogram"),
            PanelScroll(Static("", id="panel-classes-text", markup=False), id="panel-classes"),
            PanelScroll(Static("", id="panel-nearest-text", markup=False), id="panel-nearest"),
            Vertical(Horizontal(id="panel-actmax-images"),
                     Static("", id="panel-actmax-captions", markup=False), id="panel-actmax"),
            initial="panel-histogram", id="feature-panels")
        selected = Vertical(
            Static("", id="feature-selected-title", markup=False),
            Horizontal(ImageView(id="preview-image"), ImageView(id="preview-overlay"),
                       id="feature-selected-images"),
            id="feature-selected")
        panel = Vertical(Static("", id="feature-panel-title", markup=False), panels, id="feature-panel")
        return [Vertical(*(SampleRow(key, 8, id=f"row-{key}") for key, _ in ROWS), id="feature-rows"),
                Horizontal(selected, panel, id="feature-bottom")]

    def on_mount(self) -> None:
        self.call_after_refresh(self._build_body)

    async def _build_body(self) -> None:
        """Mount the rows and panels after the first frame; a card that came first waits for it."""
        if self._body_built or not self.is_attached:
            return
        self._body_built = True
        await self.query_one("#feature-body").mount_all(self._body())
        self._body_ready = True
        self._apply_layout()
        if self.panel != "histogram":
            self.action_panel(self.panel)  # a panel key pressed while loading
        if self._pending is not None:
            data, self._pending = self._pending, None
            self.show(data)

    def on_resize(self) -> None:
        if self._body_ready:
            self._apply_layout()

    # ----- layout

    def _apply_layout(self) -> None:
        width, height = self.size
        if width == 0:
            return
        pixels, rows, per_row = card_layout(width, height)
        self._layout = (pixels, rows, per_row)
        for thumb in self.query(Thumbnail):
            thumb.styles.width = pixels + 1
            thumb.styles.height = pixels // 2 + 1
        bottom = max(MIN_BOTTOM_ROWS, height - 3 - rows * (pixels // 2 + 2))
        preview_pixels = max(MIN_PIXELS, 2 * (bottom - 1))
        self.query_one("#feature-selected").styles.width = min(2 * preview_pixels + 4, width // 2)
        self._show_rows()

    def _show_rows(self) -> None:
        if not self._body_ready:
            return  # the selection is kept; drawn once the rows are mounted
        _, rows, per_row = self._layout
        current, column = self.selection
        for r, (key, _) in enumerate(ROWS):
            row = self.query_one(f"#row-{key}", SampleRow)
            row.display = rows == 3 or r == current
            row.set_class(r == current, "-current")
            start = max(0, min(column - per_row // 2, 8 - per_row)) if r == current else 0
            for i, thumb in enumerate(row.thumbnails):
                thumb.display = start <= i < start + per_row and thumb.sample is not None
                thumb.set_selected((r, i) == (current, column))

    # ----- session → view

    def load(self) -> CardData:
        """The card of :attr:`feature` (worker thread): the inputs once, then the feature's card,
        the test images not shown before and stored act-max snapshots."""
        from core.workflow.actmax_images import load_actmax_snapshots

        session, feature = self.session, self.feature
        inputs = self.inputs or self.salve.shared.get("card_inputs", session)  # once per session
        card = inputs.card(feature)
        shown = set(self.images)
        needed = sorted({int(i) for i in (*card.top, *card.quantile_samples, *card.bottom)} - shown)
        actmax = load_actmax_snapshots(session, feature)
        if needed and not self.salve.shared.ready("thumbnails"):
            return CardData(inputs, card, {}, actmax, tuple(needed))  # images follow (show)
        images = dict(zip(needed, self._sample_images(needed), strict=True)) if needed else {}
        return CardData(inputs, card, images, actmax)

    def _sample_images(self, indices: list[int]) -> np.ndarray:
        """The test images at ``indices``: from the preloaded thumbnails when the split fits."""
        thumbnails = self.salve.shared.get("thumbnails", self.session)
        if thumbnails is not None:
            return thumbnails[np.asarray(indices, dtype=np.int64)]
        return sample_images(self.session, indices)

    def show(self, data: CardData) -> None:
        if data.card.feature != self.feature:
            return  # a step (< >) asked for another feature meanwhile; its load follows
        if not self._body_ready:
            self._pending = data
            return
        first = self.card is None or self.card.feature != data.card.feature
        self.inputs, self.card, self.actmax, self.load_error = data.inputs, data.card, data.actmax, ""
        self.images.update(data.images)
        self._fill_rows()
        self._draw_info()
        self._draw_panels()
        if first:
            self._select(*self.selection)
        if data.images_pending:
            needed = list(data.images_pending)
            self.images_pending = True
            self.compute_in_thread(lambda: dict(zip(needed, self._sample_images(needed), strict=True)),
                                   self._images_arrived, self._images_failed, group="thumbnails")

    def _images_failed(self, error: str) -> None:
        self.images_pending = False
        self.show_failure(error)

    def _images_arrived(self, images: dict[int, np.ndarray]) -> None:
        """The card's test images, once the split is read: the thumbnails fill in."""
        self.images_pending = False
        self.images.update(images)
        if self.card is not None:
            self._fill_rows()
            sample = self.selected_sample
            if sample is not None and (self.preview is None or self.preview.sample != sample):
                self.query_one("#preview-image", ImageView).image = self.images.get(sample)

    def show_error(self, error: str) -> None:
        super().show_error(error)
        info = self.query_one("#feature-info", Static)
        info.add_class("-error")  # wrapped: the reason is the part that matters
        info.update(Text(f"cannot show feature {self.feature}: {error}", style="red"))

    def _row_samples(self, row: int) -> np.ndarray:
        if self.card is None:
            return np.zeros(0, np.int64)
        return {0: self.card.top, 1: self.card.quantile_samples, 2: self.card.bottom}[row]

    def _fill_rows(self) -> None:
        assert self.card is not None and self.inputs is not None
        card, names, k = self.card, self.inputs.class_names, self.card.feature
        for r, (key, title) in enumerate(ROWS):
            row = self.query_one(f"#row-{key}", SampleRow)
            samples = self._row_samples(r)
            values = card.values[samples]
            span = f" ({values[0]:+.2f} … {values[-1]:+.2f})" if len(samples) else ""
            where = "↑↓ row, ←→ sample"
            row.query_one(".row-title", Static).update(f"{title} u_{k}{span} · {where}")
            for i, thumb in enumerate(row.thumbnails):
                if i < len(samples):
                    s = int(samples[i])
                    label = class_name(names, int(card.labels[s]))
                    thumb.show(s, self.images.get(s), f"{label} {card.values[s]:+.2g}")
                else:
                    thumb.show(None, None, "")
        self._show_rows()

    def _draw_info(self) -> None:
        assert self.card is not None and self.inputs is not None
        widget = self.query_one("#feature-info", Static)
        widget.remove_class("-error")
        widget.update(info_text(self.card, self.inputs))

    # ----- panels

    def _draw_panels(self) -> None:
        self._draw_panel_title()
        if self.card is None or self.inputs is None:
            return
        card = self.card
        sample = self.selected_sample
        self.query_one(ClassHistogram).show(card.histogram, card.bin_edges,
                                            None if sample is None else float(card.values[sample]),
                                            card.values, card.labels)
        self.query_one("#panel-classes-text", Static).update(classes_text(card, self.inputs, self.selected_class))
        self.query_one("#panel-nearest-text", Static).update(nearest_text(card, self.inputs))
        self._draw_actmax()

    def _draw_panel_title(self) -> None:
        if not self._body_ready:
            return
        names = self.inputs.class_names if self.inputs is not None else []
        status = actmax_status(self.actmax, self._actmax_progress)
        title = panel_title(self.panel, names, status, bool(self._actmax_progress))
        self.query_one("#feature-panel-title", Static).update(title)

    def _draw_actmax(self) -> None:
        strip = self.query_one("#panel-actmax-images", Horizontal)
        strip.remove_children()
        captions = self.query_one("#panel-actmax-captions", Static)
        if self.actmax is None:
            captions.update("activation maximisation: press a (a job; c cancels)")
            return
        images, meta = self.actmax
        strip.mount_all(ImageView(image) for image in images)
        captions.update(actmax_captions(meta, len(images), self.query_one("#feature-panel").size.width))

    def action_panel(self, panel: str) -> None:
        self.panel = panel
        if not self._body_ready:
            return  # shown when the panels are mounted
        self.query_one(ContentSwitcher).current = f"panel-{panel}"
        self.set_class(panel == "actmax", "-actmax")
        self._draw_panel_title()
        if panel == "actmax":
            self.call_after_refresh(self._draw_actmax)

    def action_next_panel(self) -> None:
        keys = [key for key, _ in PANELS]
        self.action_panel(keys[(keys.index(self.panel) + 1) % len(keys)])

    def action_scroll_panel(self, direction: int) -> None:
        if not self._body_ready:
            return
        current = self.query_one(ContentSwitcher).visible_content
        if isinstance(current, VerticalScroll):
            current.scroll_relative(y=direction * max(1, current.size.height - 1), animate=False)

    # ----- selection and Grad-FAM

    @property
    def selected_sample(self) -> int | None:
        row, column = self.selection
        samples = self._row_samples(row)
        return int(samples[column]) if column < len(samples) else None

    def action_move(self, rows: int, columns: int) -> None:
        row, column = self.selection
        row = min(len(ROWS) - 1, max(0, row + rows))
        samples = self._row_samples(row)
        column = min(max(0, len(samples) - 1), max(0, column + columns))
        self._select(row, column)

    def _select(self, row: int, column: int) -> None:
        self.selection = (row, column)
        self._show_rows()
        sample = self.selected_sample
        if sample is None or self.card is None or not self._body_ready:
            return
        self.query_one(ClassHistogram).show(self.card.histogram, self.card.bin_edges,
                                            float(self.card.values[sample]), self.card.values,
                                            self.card.labels)
        self.preview_error = ""
        self._draw_selected_title()
        self.query_one("#preview-image", ImageView).image = self.images.get(sample)
        session, feature = self.session, self.feature

        def start_map() -> None:  # after the frame with the numbers and rows: not competing with it
            if self.is_attached and self.selected_sample == sample and self.feature == feature:
                self.compute_in_thread(lambda: gradfam_with_overlay(session, sample, feature),
                                       lambda shown: self._show_preview(*shown),
                                       lambda error: self._show_preview_error(sample, error),
                                       group="gradfam")

        self.call_after_refresh(start_map)

    def _draw_selected_title(self) -> None:
        title = selected_title(self.card, self.inputs, self.selected_sample, self.feature, self.preview,
                               self.preview_error)
        self.query_one("#feature-selected-title", Static).update(title)

    def _show_preview(self, preview: SaliencyResult, overlay: np.ndarray) -> None:
        if not self.is_attached or preview.sample != self.selected_sample or preview.feature != self.feature:
            return
        self.preview = preview
        self.query_one("#preview-image", ImageView).image = preview.image
        self.query_one("#preview-overlay", ImageView).image = overlay
        self._draw_selected_title()

    def _show_preview_error(self, sample: int, error: str) -> None:
        if self.is_attached and sample == self.selected_sample:
            self.preview_error = error
            self._draw_selected_title()

    # ----- actions

    def action_step_feature(self, step: int) -> None:
        if self.inputs is None:  # the feature count is known once the first card has loaded
            return
        self.feature = (self.feature + step) % self.inputs.D.shape[1]
        self.preview = None
        self.card = None
        self.actmax = None
        self.query_one("#feature-info", Static).update(f"loading feature {self.feature}…")
        if self._body_ready:
            self.query_one("#preview-overlay", ImageView).image = None
        self.reload()

    def action_edit_feature(self) -> None:
        from salve_tui.app.screens.analysis_edit import EditPreviewScreen

        target = self.selected_class
        if target is None and self.card is not None:
            target = int(np.nanargmax(np.abs(self.card.class_means)))
        self.app.push_screen(EditPreviewScreen(target_class=target or 0, features=[self.feature]))

    def action_actmax(self) -> None:
        session, feature = self.session, self.feature

        def body(progress, cancel):  # noqa: ANN001 (core ProgressFn, CancelToken)
            from core.workflow.actmax_images import actmax_png

            # Paper settings, driving u_k the way the class that uses it most does.
            return actmax_png(session, feature, progress=progress, cancel=cancel)

        job = self.salve.start_job(f"act-max feature {feature}", body)
        if job is not None:
            self._actmax_job, self._actmax_feature = job, feature
            self._actmax_progress = f"act-max feature {feature}: starting…"
            self.action_panel("actmax")

    def on_job_update(self, message: JobMessage) -> None:
        if self._actmax_job is None or message.job is not self._actmax_job:
            return
        if isinstance(message, JobProgress):
            self._actmax_progress = actmax_progress(self._actmax_feature, message.progress)
            self._draw_panel_title()
        elif isinstance(message, JOB_END_MESSAGES):
            done = self._actmax_feature
            self._actmax_job, self._actmax_feature, self._actmax_progress = None, None, ""
            if isinstance(message, JobFinished) and done == self.feature:
                from core.workflow.actmax_images import load_actmax_snapshots

                self.actmax = load_actmax_snapshots(self.session, self.feature)
                self._draw_actmax()
            self._draw_panel_title()
