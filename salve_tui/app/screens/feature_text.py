"""The feature card's text, pure and tested without the UI: the info line, the panel titles,
the class and nearest-feature tables, the selected sample's title and the act-max captions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from rich.text import Text

from salve_tui.app.format import format_duration
from salve_tui.app.screens.analysis_shared import bar_text, class_name
from salve_tui.app.widgets.histogram import class_colour

if TYPE_CHECKING:
    from core.workflow.feature_card import FeatureCard, FeatureCardInputs
    from core.workflow.saliency_maps import SaliencyResult

PANELS = (("histogram", "1 hist"), ("classes", "2 class"), ("nearest", "3 near"),
          ("actmax", "4 act-max"))
Actmax = tuple[list[np.ndarray], dict[str, Any]]  # snapshots and their metadata


def owners(inputs: FeatureCardInputs, feature: int) -> list[str]:
    """The classes whose dominant feature is ``feature``."""
    return [class_name(inputs.class_names, c) for c, d in enumerate(inputs.dominant) if int(d) == int(feature)]


def info_text(card: FeatureCard, inputs: FeatureCardInputs) -> Text:
    """``feature k/h · dominant: … · strongest μ class +x.xx``, within 78 columns for Shapes."""
    k, names = card.feature, inputs.class_names
    dominant_for = owners(inputs, k)
    column = card.class_means
    strongest = int(np.nanargmax(np.abs(column))) if np.isfinite(column).any() else 0
    info = Text(f"feature {k}", style="bold")
    info.append(f"/{inputs.D.shape[1]} · ")
    listed = ", ".join(dominant_for) if len(dominant_for) <= 2 else f"{len(dominant_for)} classes (◆)"
    info.append(f"dominant: {listed}" if dominant_for else "dominant: no class",
                style="bold green" if dominant_for else "dim")
    info.append(f" · strongest μ {class_name(names, strongest)} {column[strongest]:+.2f}")
    return info


def class_label_width(names: list[str]) -> int:
    """Class names in panel 2 get up to 9 characters ("hourglass"; the panel is 36 wide at 80)."""
    return min(9, max((len(n) for n in names), default=5))


def panel_title(panel: str, names: list[str], actmax_line: str, busy: bool) -> Text:
    """The panel keys with the current one reversed; panel 2 names its columns instead, panel 4
    adds the act-max state (yellow while its job runs)."""
    if panel == "classes":
        return Text("2 class".ljust(15 + class_label_width(names)) + "μ_ck" + "W·D".rjust(7), style="bold")
    title = Text()
    for key, label in PANELS:
        title.append(label, style="reverse bold" if key == panel else "dim")
        title.append(" ")
    if panel == "actmax":
        title.append(actmax_line, style="yellow" if busy else "")
    return title


def classes_text(card: FeatureCard, inputs: FeatureCardInputs, selected_class: int | None) -> Text:
    """Panel 2: per class its colour, ◆ when this feature is its dominant one, μ_ck as a bar and a
    number, and the direct effect W·D[:,k] on its logit (the largest bold)."""
    names = inputs.class_names
    scale = float(np.nanmax(np.abs(card.class_means))) if np.isfinite(card.class_means).any() else 1.0
    width = class_label_width(names)
    text = Text()
    for c in range(card.num_classes):
        mu, effect = float(card.class_means[c]), float(card.direct_effect[c])
        text.append("■", style=class_colour(c))
        text.append("◆" if int(inputs.dominant[c]) == card.feature else " ", style="bold green")
        text.append(class_name(names, c)[:width].ljust(width) + " ",
                    style="reverse" if c == selected_class else "")
        text.append_text(bar_text(mu, scale, half_width=4))
        text.append(f" {mu:+6.2f}" if np.isfinite(mu) else "      —")
        text.append(f" {effect:+6.2f}\n", style="bold" if effect == card.direct_effect.max() else "")
    text.rstrip()
    return text


def nearest_text(card: FeatureCard, inputs: FeatureCardInputs) -> Text:
    """Panel 3: the features with the closest decoder direction, their cosine and owners."""
    text = Text("feature  cos    dominant for\n", style="dim")
    for j, cos in zip(card.nearest, card.nearest_cosine, strict=True):
        dominant_for = owners(inputs, int(j))
        text.append(f"{int(j):>7} {cos:+.3f}  ")
        text.append(", ".join(dominant_for) or "—", style="green" if dominant_for else "dim")
        text.append("\n")
    text.rstrip()
    return text


def actmax_status(actmax: Actmax | None, progress: str) -> str:
    """The act-max job's progress while it runs, else how far it drove u_k, else how to run it."""
    if progress:
        return progress
    if actmax is None:
        return "none yet: a runs it"
    meta = actmax[1]
    return f"u {meta['start_activation']:+.2g} → {meta['final_activation']:+.2g}"


def actmax_progress(feature: int | None, progress: Any) -> str:
    """``act-max feature k: message 40% · ETA 1m (c cancels)`` from a job's Progress."""
    eta = progress.eta_seconds
    return (f"act-max feature {feature}: {progress.message or ''} {progress.fraction:.0%}"
            f"{f' · ETA {format_duration(eta)}' if eta is not None else ''} (c cancels)")


def actmax_captions(meta: dict[str, Any], n_images: int, panel_width: int) -> Text:
    """One caption per snapshot (its step; the last one its final u_k), each as wide as its image."""
    caption = Text()
    width = max(1, (panel_width or 60) // max(1, n_images))
    for i, step in enumerate(meta["steps"]):
        label = f"final {meta['final_activation']:+.2g}" if i == n_images - 1 else f"step {step}"
        caption.append(label[: width - 1].ljust(width))
    return caption


def selected_title(card: FeatureCard | None, inputs: FeatureCardInputs | None, sample: int | None,
                   feature: int, preview: SaliencyResult | None, preview_error: str) -> Text:
    """``#sample class u=… │ Grad-FAM layer`` (… while it computes, red when it failed)."""
    title = Text()
    if sample is None or card is None or inputs is None:
        title.append("no sample")
        return title
    label = class_name(inputs.class_names, int(card.labels[sample]))
    title.append(f"#{sample} {label} u={card.values[sample]:+.2f}", style="bold")
    if preview_error:
        title.append(f" Grad-FAM failed: {preview_error}", style="red")
    elif preview is None or preview.sample != sample or preview.feature != feature:
        title.append(" │ Grad-FAM…", style="dim")
    else:
        title.append(f" │ Grad-FAM {preview.layer}")
    return title
