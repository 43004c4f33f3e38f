"""The edit preview's keys: what each one does to the edit's settings (strength, method, mode,
modulation, features), and the footer words of the strength keys for the current method.

A mixin of :class:`~salve_tui.app.screens.analysis_edit.EditPreviewScreen`, which holds the
settings and redraws (``update_preview`` for a new strength, ``_settings_changed`` when the
curve must be swept again); the keys ask the method registry, never a method's name.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from typing import TYPE_CHECKING, Any

from textual.binding import Binding

from core.config import MODULATIONS
from salve_tui.app.screens.edit_text import nice_step

if TYPE_CHECKING:
    from core.control.curves import SweepResult
    from core.control.methods.base import EditMethod
    from core.workflow.inputs import ControlInputs

COARSE_STEPS = 20  # coarse step = curve range / 20
FINE_STEPS = 200
# The strength keys are bound once; active_bindings names them after the current method's
# symbol ("+- α", "+- β", "+- target"), so any registered method gets its own footer words.
STRENGTH_GROUP = Binding.Group("strength ", compact=True)
STRENGTH_WORDS = {"alpha(1)": "{s}+ coarse", "alpha(-1)": "{s}- coarse", "alpha_fine(1)": "fine {s}+",
                  "alpha_fine(-1)": "fine {s}-", "alpha_zero": "{s}={d:g}"}
REGISTRY_MODULE = "core.control.methods.registry"


class EditControls:
    """Strength, method, mode, modulation and feature keys of the edit preview (the screen
    provides ``update_preview``, ``_settings_changed``, ``app`` and ``refresh_bindings``)."""

    # the settings, held by the screen
    target_class: int
    features: list[int]
    follow_dominant: bool
    mode: str
    method: str | None
    modulation: str
    alpha: float
    status: str
    inputs: ControlInputs | None
    curve: SweepResult | None

    # ----- the method and its strength's words

    @property
    def m(self) -> EditMethod:
        """The current editing method (``core.control.methods.registry``)."""
        from core.control.methods.registry import get_method

        return get_method(self.method)

    @property
    def param_name(self) -> str:
        return self.m.symbol

    @property
    def _method_known(self) -> bool:
        """Whether naming the method costs no import on the UI thread (the app's preloader
        imports the registry in the background)."""
        return self.method is not None or REGISTRY_MODULE in sys.modules

    def binding_description(self, binding: Binding) -> str:
        """The strength keys in the current method's words (``α+ coarse``, ``target=-10``)."""
        words = STRENGTH_WORDS.get(binding.action)
        if words is None or not self._method_known:
            return binding.description
        return words.format(s=self.m.symbol, d=self.m.default_strength)

    @property
    def active_bindings(self) -> dict[str, Any]:
        """The strength keys named after the current method's symbol and reset value."""
        bindings = super().active_bindings
        group = Binding.Group(f"{self.m.symbol} ", compact=True) if self._method_known else STRENGTH_GROUP
        for key, active in bindings.items():
            binding = active.binding
            if active.node is self and binding.action in STRENGTH_WORDS:
                bindings[key] = active._replace(binding=dataclasses.replace(
                    binding, description=self.binding_description(binding),
                    group=group if binding.group else None))
        return bindings

    # ----- strength

    def steps(self) -> tuple[float, float]:
        """(coarse, fine) strength steps from the curve's range (1.0 / 0.1 until it is known)."""
        if self.curve is None or self.curve.alphas.numel() < 2:
            return 1.0, 0.1
        span = float(self.curve.alphas.max() - self.curve.alphas.min())
        if not math.isfinite(span) or span <= 0:
            return 1.0, 0.1
        return nice_step(span / COARSE_STEPS), nice_step(span / FINE_STEPS)

    def _change_alpha(self, delta: float) -> None:
        value = self.alpha + delta
        if self.m.nonnegative_strength:
            value = max(0.0, value)  # direction comes from the mode, strength is ≥ 0
        self.alpha = round(value, 12)
        self.status = ""
        self.update_preview()

    def action_alpha(self, direction: int) -> None:
        self._change_alpha(direction * self.steps()[0])

    def action_alpha_fine(self, direction: int) -> None:
        self._change_alpha(direction * self.steps()[1])

    def action_alpha_zero(self) -> None:
        self.alpha = self.m.default_strength
        self.update_preview()

    def action_type_alpha(self) -> None:
        from salve_tui.app.screens.number_input import NumberInputModal

        minimum = 0.0 if self.m.nonnegative_strength else None
        what = self.m.strength_help

        def apply(value: float | None) -> None:
            if value is not None:
                self.alpha = value
                self.status = ""
                self.update_preview()

        self.app.push_screen(NumberInputModal(f"Type the {what}:", self.alpha, minimum), apply)

    # ----- method, mode, modulation

    def action_toggle_mode(self) -> None:
        self.mode = "enhance" if self.mode == "suppress" else "suppress"
        self._settings_changed()

    def action_cycle_method(self) -> None:
        from core.control.methods.registry import method_names

        names = method_names()
        self.method = names[(names.index(self.m.name) + 1) % len(names)]
        self.refresh_bindings()  # the footer names this method's strength
        self.alpha = self.m.default_strength
        if self.mode not in self.m.modes:
            self.mode = self.m.modes[0]  # ROME only sets the class logit down
        self._settings_changed()

    def action_cycle_modulation(self) -> None:
        self.modulation = MODULATIONS[(MODULATIONS.index(self.modulation) + 1) % len(MODULATIONS)]
        self._settings_changed()

    # ----- features

    def _dominant(self, c: int) -> int:
        assert self.inputs is not None
        k = int(self.inputs.dominant[c])
        return k if k >= 0 else 0

    def action_step_feature(self, step: int) -> None:
        if self.inputs is None:
            return
        h = self.inputs.num_features
        self.features[-1] = (self.features[-1] + step) % h
        self.follow_dominant = False
        self._settings_changed()

    def action_add_feature(self) -> None:
        if self.inputs is None:
            return
        h = self.inputs.num_features
        candidate = (self.features[-1] + 1) % h
        while candidate in self.features and len(self.features) < h:
            candidate = (candidate + 1) % h
        self.features.append(candidate)
        self.follow_dominant = False
        self._settings_changed()

    def action_remove_feature(self) -> None:
        if len(self.features) > 1:
            self.features.pop()
            self._settings_changed()

    def action_dominant(self) -> None:
        if self.inputs is None:
            return
        self.follow_dominant = True
        self.features = [self._dominant(self.target_class)]
        self._settings_changed()

