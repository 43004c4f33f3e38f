"""Saliency maps of any test sample: Grad-CAM of any class or Grad-FAM of a class's dominant
feature, at any layer of the backbone (SPEC §6).

Each change of sample, class, method or layer computes one map with
:func:`core.workflow.saliency_maps.saliency_map` in a thread worker (read-only, nothing stored);
``w`` writes the shown map as a PNG overlay into the export folder, as ``salve saliency`` does.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Static

from salve_tui.app.screens.analysis_shared import class_name
from salve_tui.app.screens.base import SessionScreen, session_view
from salve_tui.app.widgets.chrome import ScreenFooter, ScreenHeader
from salve_tui.app.widgets.image import ImageView

if TYPE_CHECKING:
    from core.workflow.saliency_maps import SaliencyResult

METHODS = ("Grad-CAM", "Grad-FAM")
STATUS_WIDTH = 78  # 80 columns minus the padding


def layers_line(layers: list[str], current: str | None) -> str:
    """``layers: layer1 layer2 [layer3] layer4 · …`` when the names fit one line (ResNet); a
    ViT's twelve ``encoder.layers.encoder_layer_N.ln_1`` names do not, so their count instead
    (the info line names the current one and its position)."""
    tail = " · left: image, right: map over it"
    listed = "layers: " + " ".join(f"[{n}]" if n == current else n for n in layers) + tail
    if len(listed) <= STATUS_WIDTH:
        return listed
    return f"{len(layers)} layers, shallow to deep (l steps){tail}"


@session_view(footer="Saliency", key="h", title="Saliency maps", requires=("rankings",), order=45,
              name="saliency", in_footer=False,
              description="Grad-CAM for any class, Grad-FAM, and the saliency layer choice")
class SaliencyScreen(SessionScreen):
    SCREEN_TITLE = "Saliency maps"
    HELP_TEXT = (
        "One test sample and where the model's evidence sits. Grad-CAM explains a class logit "
        "(any class, not only the predicted one: ] / [ step the class, t goes back to the true "
        "class); g switches to Grad-FAM, which explains the SAE latent of the class's dominant "
        "feature. l steps the layer the map is taken at (shallow layers localise finely but see "
        "less; the default is the deepest layer with a map of at least 4×4). ←/→ step the sample, "
        "PgUp/PgDn by ten. w writes the shown map as a PNG overlay to the export folder."
    )
    CSS_PATH = Path(__file__).with_suffix(".tcss")  # this module's screens
    LOADING = "the model, the SAE and the test images"
    INFO, FAILED, LOAD_ERROR_IN_INFO = "saliency-info", "draw saliency maps", True
    BINDINGS: ClassVar[list[Binding]] = [
        Binding("left", "sample(-1)", "Previous sample", show=False),
        Binding("right", "sample(1)", "Next sample", show=False),
        Binding("pageup", "sample(-10)", "Back ten samples", show=False),
        Binding("pagedown", "sample(10)", "Forward ten samples", show=False),
        Binding("right_square_bracket", "target_class(1)", "Class", key_display="[ ]"),
        Binding("left_square_bracket", "target_class(-1)", "Previous class", key_display="[", show=False),
        Binding("t", "true_class", "True class", show=False),
        Binding("g", "toggle_method", "CAM/FAM"),
        Binding("l", "next_layer", "Layer"),
        Binding("w", "write_png", "Write PNG", show=False),
    ]

    def __init__(self, sample: int = 0) -> None:
        super().__init__()
        self.sample = int(sample)
        self.method = "Grad-CAM"
        self.target_class: int | None = None  # None until the sample's label is known
        self.map_layer: str | None = None  # None: the default layer
        self.map_layers: list[str] = []
        self.labels = np.zeros(0, np.int64)
        self.class_names: list[str] = []
        self.dominant = np.zeros(0, np.int64)
        self.result: SaliencyResult | None = None
        self.status = ""

    def compose(self) -> ComposeResult:
        yield ScreenHeader()
        yield Static("", id="saliency-info", markup=False)
        with Horizontal(id="saliency-images"):
            yield ImageView(id="saliency-image")
            yield ImageView(id="saliency-overlay")
        yield Static("", id="saliency-status", markup=False)
        yield ScreenFooter(compact=True)

    def load(self) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
        from core.validate.saliency import candidate_layers
        from core.workflow.assets import load_assets

        session = self.session
        assets = load_assets(session)
        dominant = np.asarray(session.read_array("rankings/dominant"), dtype=np.int64)
        return (assets.class_names, candidate_layers(assets.model),
                np.asarray(assets.test.labels, dtype=np.int64), dominant)

    def show_failure(self, error: str) -> None:
        self.add_class("-failed")  # the whole message: a load error can be many lines long
        super().show_failure(error)

    def show(self, loaded: tuple[list[str], list[str], np.ndarray, np.ndarray]) -> None:
        self.class_names, self.map_layers, self.labels, self.dominant = loaded
        self.sample = min(max(0, self.sample), len(self.labels) - 1)
        if self.target_class is None:
            self.target_class = int(self.labels[self.sample])
        self._compute()

    @property
    def feature(self) -> int | None:
        """The Grad-FAM feature: the target class's dominant feature (None for Grad-CAM)."""
        if self.method != "Grad-FAM" or self.target_class is None:
            return None
        return max(0, int(self.dominant[self.target_class]))

    def _compute(self) -> None:
        if self.target_class is None or not len(self.labels):
            return
        session, sample, layer = self.session, self.sample, self.map_layer
        feature, target = self.feature, self.target_class
        self._draw_info(computing=True)

        def compute() -> tuple[Any, np.ndarray]:
            from core.workflow.figures import overlay
            from core.workflow.saliency_maps import saliency_map

            if feature is not None:
                result = saliency_map(session, sample, feature=feature, layer=layer)
            else:
                result = saliency_map(session, sample, class_=target, layer=layer)
            return result, overlay(result.image, result.heat, 0.5)

        self.compute_in_thread(compute, self._show, group="saliency-map")

    def _show(self, shown: tuple[Any, np.ndarray]) -> None:
        result, overlay = shown
        self.remove_class("-failed")
        self.result = result
        self.map_layer = self.map_layer or result.layer
        self.query_one("#saliency-image", ImageView).image = result.image
        self.query_one("#saliency-overlay", ImageView).image = overlay
        self._draw_info()

    def _draw_info(self, computing: bool = False) -> None:
        """Two lines that fit 80 columns: the sample and what is explained; the layer and the
        map's score. Below the images, the layers ``l`` steps through (or their count)."""
        names = self.class_names
        info = Text()
        label = class_name(names, int(self.labels[self.sample])) if len(self.labels) else "?"
        info.append(f"sample {self.sample}/{len(self.labels)} ({label})", style="bold")
        target = class_name(names, self.target_class) if self.target_class is not None else "?"
        if self.method == "Grad-CAM":
            info.append(f" · Grad-CAM of class {target}")
        else:
            info.append(f" · Grad-FAM of feature {self.feature} ({target}'s dominant)")
        info.append(f"\nmap at {self.map_layer or 'the default layer'}")
        if self.map_layer in self.map_layers:
            info.append(f" ({self.map_layers.index(self.map_layer) + 1}/{len(self.map_layers)})",
                        style="dim")
        if computing:
            info.append(" · computing…", style="dim")
        elif self.result is not None:
            what = "u" if self.result.method == "Grad-FAM" else "logit"
            info.append(f" · {what} {self.result.score:+.3g}, "
                        f"predicted {class_name(names, self.result.prediction)}")
        self.query_one("#saliency-info", Static).update(info)
        self.query_one("#saliency-status", Static).update(
            Text(self.status, style="") if self.status else Text(layers_line(self.map_layers, self.map_layer),
                                                                   style="dim"))

    # ----- actions

    def action_sample(self, step: int) -> None:
        if len(self.labels):
            self.sample = (self.sample + step) % len(self.labels)
            self.status = ""
            self._compute()

    def action_target_class(self, step: int) -> None:
        if self.target_class is not None and self.class_names:
            self.target_class = (self.target_class + step) % len(self.class_names)
            self._compute()

    def action_true_class(self) -> None:
        if len(self.labels):
            self.target_class = int(self.labels[self.sample])
            self._compute()

    def action_toggle_method(self) -> None:
        self.method = METHODS[(METHODS.index(self.method) + 1) % len(METHODS)]
        self._compute()

    def action_next_layer(self) -> None:
        if not self.map_layers:
            return
        index = self.map_layers.index(self.map_layer) if self.map_layer in self.map_layers else -1
        self.map_layer = self.map_layers[(index + 1) % len(self.map_layers)]
        self._compute()

    def action_write_png(self) -> None:
        result, session = self.result, self.session
        if result is None:
            self.notify("no map to write yet", severity="warning")
            return

        def body(progress, cancel):  # noqa: ANN001 (core ProgressFn, CancelToken)
            from core.workflow.saliency_maps import save_saliency

            return save_saliency(session, result, self.class_names)

        job = self.salve.start_job("write saliency PNG", body)
        if job is not None:
            self.status = "writing the PNG…"
            self._draw_info()

    def on_job_update(self, message: Any) -> None:
        from salve_tui.app.jobs import JobFailed, JobFinished

        if isinstance(message, JobFinished) and message.job.name == "write saliency PNG":
            from salve_tui.app.screens.analysis_edit import files_text

            self.status = f"wrote {files_text([message.result])}"  # the file name first, then where
            self._draw_info()
        elif isinstance(message, JobFailed) and message.job.name == "write saliency PNG":
            self.status = f"writing failed: {message.error}"
            self._draw_info()
