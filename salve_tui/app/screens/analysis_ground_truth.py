"""Ground truth (Shapes sessions): does Grad-FAM point at the concept, does a latent track it?

Reads the stored result of :func:`core.workflow.ground_truth.run_groundtruth` (``r`` computes it
as a cancellable job and records it, as ``salve groundtruth`` does): the pointing game of
Grad-FAM (class-dominant feature) and Grad-CAM (true class) with its chance rate and the
energy inside the mask, per class; the best latent per concept by AUROC; and whether one latent
tracks the part shared by two classes in both of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Container, VerticalScroll
from textual.widgets import Static

from salve_tui.app.jobs import JobFailed, JobMessage, JobProgress
from salve_tui.app.screens.analysis_shared import error_text, fmt_percent, fmt_value
from salve_tui.app.screens.base import SessionScreen, session_view
from salve_tui.app.widgets.chrome import ScreenFooter, ScreenHeader


def _pct(value: Any) -> str:
    return fmt_percent(value if isinstance(value, int | float) else None)


def _num(value: Any, digits: int = 3) -> str:
    return fmt_value(float(value) if isinstance(value, int | float) else None, digits)


WIDE = 140  # from this many columns the concept tables stand beside the pointing game ones


def groundtruth_text(result: dict[str, Any]) -> Text:
    """The stored ground-truth result as the screen's tables (plain rows, aligned columns, a
    space before every number so the widest value never runs into its neighbour)."""
    text = pointing_text(result)
    text.append("\n")
    text.append_text(concepts_text(result))
    return text


def pointing_text(result: dict[str, Any]) -> Text:
    """Pointing game overall and per class (dominant feature vs the class's shape)."""
    text = Text()
    pointing = result.get("pointing_game", {})
    text.append(f"Pointing game · at {result.get('layer')} · {result.get('n_scored')} of "
                f"{result.get('n_images')} test images\n", style="bold")
    text.append(f"{'map':<10}{'hit':>7} {'chance':>7} {'×chance':>7} {'energy in':>9} {'mask area':>9}\n",
                style="dim")
    for key, title in (("grad_fam", "Grad-FAM"), ("grad_cam", "Grad-CAM")):
        row = pointing.get(key, {})
        text.append(f"{title:<10}{_pct(row.get('hit_rate')):>7} {_pct(row.get('chance_rate')):>7}"
                    f" {_num(row.get('ratio_to_chance')):>7} {_pct(row.get('energy_inside')):>9}"
                    f" {_pct(row.get('mask_area_share')):>9}\n")
    text.append("\nPer class: dominant feature vs the class's shape\n", style="bold")
    text.append(f"{'class':<11}{'feat':>5} {'AUROC':>7} {'FAM hit':>7} {'CAM hit':>7} {'FAM en':>7}"
                f" {'CAM en':>7}\n", style="dim")
    for name, row in result.get("classes", {}).items():
        fam, cam = row.get("grad_fam") or {}, row.get("grad_cam") or {}
        text.append(f"{name[:10]:<11}{row.get('dominant_feature', '—'):>5}"
                    f" {_num(row.get('dominant_auroc_for_shape')):>7} {_pct(fam.get('hit_rate')):>7}"
                    f" {_pct(cam.get('hit_rate')):>7} {_pct(fam.get('energy_inside')):>7}"
                    f" {_pct(cam.get('energy_inside')):>7}\n")
    return text


def concepts_text(result: dict[str, Any]) -> Text:
    """The best latent per concept and the shared-part test."""
    text = Text()
    text.append("Best latent per concept (AUROC of u_k vs presence)\n", style="bold")
    text.append(f"{'concept':<14}{'latent':>7} {'AUROC':>8} {'strength':>8}\n", style="dim")
    for name, row in result.get("concepts", {}).items():  # 3 digits can take 8 cells (2.22e-05)
        text.append(f"{name[:13]:<14}{row.get('latent', '—'):>7} {_num(row.get('auroc')):>8}"
                    f" {_num(row.get('strength')):>8}\n")
    shared = result.get("shared_part", {})
    classes = shared.get("classes", [])
    text.append(f"\nShared part '{shared.get('concept')}' in {' and '.join(classes)}\n", style="bold")
    if "error" in shared:
        text.append(f"{shared['error']}\n", style="yellow")
    best = shared.get("best_latent")
    if best:
        per_class = best.get("auroc_per_class", {})
        aurocs = ", ".join(f"{c} {_num(v)}" for c, v in per_class.items())
        verdict = ("tracks it in both classes" if best.get("tracks_both")
                   else "does not track it in both")
        text.append(f"best latent {best.get('latent')}: AUROC overall {_num(best.get('auroc_overall'))}"
                    f" · per class {aurocs} · ")
        text.append(verdict + "\n", style="green" if best.get("tracks_both") else "yellow")
    for name, row in shared.get("dominant_features", {}).items():
        aurocs = ", ".join(f"{c} {_num(v)}" for c, v in row.get("auroc_per_class", {}).items())
        text.append(f"{name}'s dominant feature {row.get('latent')}: per class {aurocs}"
                    f"{' · tracks both' if row.get('tracks_both') else ''}\n")
    return text


@session_view(footer="Truth", key="g", title="Ground truth", requires=("rankings",), order=60,
              name="ground_truth", in_footer=False,
              description="Shapes ground truth: pointing game, concept AUROC, shared-part tracking")
class GroundTruthScreen(SessionScreen):
    SCREEN_TITLE = "Ground truth"
    HELP_TEXT = (
        "Shapes sessions only: every image comes with masks of its concepts, so the tool measures "
        "what saliency maps usually only show. Pointing game: the share of images whose map maximum "
        "falls inside the class's shape mask (with a tolerance), against its chance rate (the share "
        "of the image the tolerant mask covers) and the map energy inside the mask; for Grad-FAM of "
        "the class's dominant feature and Grad-CAM of the true class. Concept AUROC: how well a "
        "latent's value separates images with and without each concept. Shared part: whether one "
        "latent tracks the part that two classes share in both of them. r computes the scores as a "
        "job (c cancels) and stores them; ↑/↓ and PgUp/PgDn scroll."
    )
    CSS_PATH = Path(__file__).with_suffix(".tcss")  # this module's screens
    BINDINGS: ClassVar[list[Binding]] = [
        Binding("r", "compute", "Compute", tooltip="score the features against the shapes' ground truth")]
    PALETTE_EVERYWHERE = ("compute",)  # offered in the palette from every screen
    RESULT_KINDS = ("groundtruth",)  # a warning line when a stage was rerun since
    LOADING = "the stored ground-truth scores"
    INFO, FAILED, LOAD_ERROR_IN_INFO = "truth-info", "read the ground truth", True

    def __init__(self) -> None:
        super().__init__()
        self.result: dict[str, Any] | None = None
        self._job: Any = None
        self.job_error = ""

    def compose(self) -> ComposeResult:
        yield ScreenHeader()
        yield Static("", id="truth-info", markup=False)
        with VerticalScroll(id="truth-scroll"), Container(id="truth-columns"):
            yield Static("", id="truth-body", markup=False)
            yield Static("", id="truth-concepts", markup=False)
        yield ScreenFooter(compact=True)

    def on_mount(self) -> None:
        self.query_one("#truth-scroll").focus()

    def on_resize(self) -> None:
        """Side by side on a wide terminal, one under the other at 80 columns."""
        self.set_class(self.size.width >= WIDE, "-wide")

    def load(self) -> tuple[str, dict[str, Any] | None]:
        from core.workflow.ground_truth import stored_groundtruth

        session = self.session
        return session.config.data.kind, stored_groundtruth(session)

    def show(self, loaded: tuple[str, dict[str, Any] | None]) -> None:
        kind, self.result = loaded
        info = self.query_one("#truth-info", Static)
        body = self.query_one("#truth-body", Static)
        if self.job_error:
            info.update(error_text("compute the ground truth", self.job_error))
        elif kind != "shapes":
            info.update(Text(f"this session uses '{kind}' data, which has no concept masks: ground "
                             "truth exists only for Shapes sessions", style="yellow"))
        elif self.result is None:
            info.update("no ground-truth scores yet: press r to compute them (a job; c cancels)")
        else:
            info.update(Text("stored ground-truth scores on the test split · r recomputes", style="dim"))
        shown = bool(self.result) and kind == "shapes"
        body.update(pointing_text(self.result) if shown else "")  # type: ignore[arg-type]
        concepts = self.query_one("#truth-concepts", Static)
        concepts.update(concepts_text(self.result) if shown else "")  # type: ignore[arg-type]
        concepts.display = shown

    def action_compute(self) -> None:
        session = self.session
        if session.config.data.kind != "shapes":
            self.notify("ground truth exists only for Shapes sessions", severity="warning")
            return

        def body(progress, cancel):  # noqa: ANN001 (core ProgressFn, CancelToken)
            from core.workflow.ground_truth import run_groundtruth

            return run_groundtruth(session, progress, cancel)

        self._job = self.salve.start_job("ground truth", body)
        if self._job is not None:
            self.job_error = ""
            self.query_one("#truth-info", Static).update("scoring against the ground truth…")

    def on_job_update(self, message: JobMessage) -> None:
        if message.job is not self._job:
            return
        info = self.query_one("#truth-info", Static)
        if isinstance(message, JobProgress):
            info.update(f"scoring: {message.progress.fraction:.0%} {message.progress.message} (c cancels)")
        elif isinstance(message, JobFailed):
            self.job_error = str(message.error)
