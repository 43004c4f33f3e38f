"""New-session form: every setting of a session, validated field by field before anything runs.

Validation is a pure function (:func:`validate_form`) so it is tested without the UI: it parses
numbers, checks that files and folders exist, runs :meth:`SessionConfig.validate` and maps each
problem to the field it is about, so the message appears right under that field.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Input, Label, Select, Static

from core.config import (
    BackboneConfig,
    DataConfig,
    SAEConfig,
    SessionConfig,
    dataset_defaults,
    demo_config,
)
from core.store.session import SessionError, resolve_session_path
from salve_tui.app.screens.base import SalveScreen
from salve_tui.app.screens.confirm import ConfirmModal
from salve_tui.app.widgets.chrome import ScreenFooter, ScreenHeader

ARCHS = ("resnet18", "resnet50", "vit_b_16", "vit_tiny")
WEIGHT_CHOICES = ("none", "pretrained", "file")
DATASETS = ("shapes", "imagefolder", "cifar100")
SAE_KIND_CHOICES = ("l1", "topk")
DEVICES = ("auto", "cpu", "cuda")
GENERAL = "general"  # problems that belong to no single field
SESSION_NAME = re.compile(r"[A-Za-z0-9_-]+")  # what the name field's hint promises


@dataclass(frozen=True)
class Field:
    id: str
    label: str
    default: str
    choices: tuple[str, ...] = ()  # a Select when given, else an Input
    placeholder: str = ""
    section: str = ""


#: The fields whose default depends on the dataset (and on training from scratch or not), read
#: from the settings ``salve new`` starts from (:func:`core.config.dataset_defaults`).
DATASET_DEFAULTS: dict[str, Callable[[SessionConfig], str]] = {
    "image_size": lambda c: str(c.data.image_size),
    "epochs": lambda c: str(c.backbone.epochs),
    "batch_size": lambda c: str(c.backbone.batch_size),
    "lr": lambda c: f"{c.backbone.lr:g}",
    "sae_hidden": lambda c: str(c.sae.hidden),
    "l1_coeff": lambda c: f"{c.sae.l1_coeff:g}",
    "topk": lambda c: str(c.sae.k),
    "sae_epochs": lambda c: str(c.sae.epochs),
}


def form_base(values: dict[str, str]) -> SessionConfig:
    """What ``salve new`` would start from for the form's dataset, folder and weights."""
    return dataset_defaults(values.get("name", "").strip(), values.get("dataset", "shapes"),
                            values.get("data_path", "").strip() or None,
                            from_scratch=values.get("weights", "none") == "none")


def suggested_values(values: dict[str, str]) -> dict[str, str]:
    """Field id → the text ``salve new`` would use for it on the form's dataset (Shapes: the
    demo's; real data: a smaller λ, fewer SAE epochs, the width from the class folders)."""
    base = form_base(values)
    return {field_id: text(base) for field_id, text in DATASET_DEFAULTS.items()}


def _fields() -> tuple[Field, ...]:
    demo = demo_config()
    return (
        Field("name", "name", "", placeholder="letters, digits, - and _", section="Session"),
        Field("arch", "model", demo.backbone.arch, ARCHS, section="Model"),
        Field("weights", "weights", "none", WEIGHT_CHOICES),
        Field("weights_path", "weights file", "", placeholder="path to a state_dict (.pt / .safetensors)"),
        Field("dataset", "dataset", demo.data.kind, DATASETS, section="Data"),
        Field("data_path", "dataset folder", "", placeholder="imagefolder / cifar100 root"),
        Field("image_size", "image size (px)", str(demo.data.image_size)),
        Field("epochs", "epochs", str(demo.backbone.epochs), section="Fine-tune (Adam)"),
        Field("batch_size", "batch size", str(demo.backbone.batch_size)),
        Field("lr", "learning rate", f"{demo.backbone.lr:g}"),
        Field("sae_kind", "SAE kind", demo.sae.kind, SAE_KIND_CHOICES, section="Sparse autoencoder"),
        Field("sae_hidden", "hidden latents", str(demo.sae.hidden)),
        Field("l1_coeff", "λ (L1 coeff.)", f"{demo.sae.l1_coeff:g}"),
        Field("topk", "k (TopK only)", str(demo.sae.k)),
        Field("sae_epochs", "SAE epochs", str(demo.sae.epochs)),
        Field("device", "device", demo.device, DEVICES, section="Compute"),
    )


FIELDS = _fields()
FIELD_IDS = tuple(f.id for f in FIELDS)

# SessionConfig.validate() message prefixes → the field they are about (most specific first).
_PROBLEM_FIELDS = (
    ("session name", "name"),
    ("dataset kind", "dataset"),
    ("dataset '", "data_path"),
    ("image size", "image_size"),
    ("SAE kind", "sae_kind"),
    ("SAE hidden", "sae_hidden"),
    ("TopK k", "topk"),
    ("L1 coefficient", "l1_coeff"),
    ("SAE epochs", "sae_epochs"),
    ("SAE learning rate", GENERAL),
    ("epochs must", "epochs"),
    ("batch size must", "batch_size"),
    ("learning rate must", "lr"),
)


def field_for_problem(problem: str) -> str:
    for prefix, field_id in _PROBLEM_FIELDS:
        if problem.startswith(prefix):
            return field_id
    return GENERAL


def _parse_int(values: dict[str, str], key: str, errors: dict[str, str]) -> int:
    text = values.get(key, "").strip()
    try:
        return int(text)
    except ValueError:
        errors[key] = f"'{text}' is not a whole number" if text else "required: enter a whole number"
        return 0


def _parse_float(values: dict[str, str], key: str, errors: dict[str, str]) -> float:
    text = values.get(key, "").strip()
    try:
        return float(text)
    except ValueError:
        errors[key] = f"'{text}' is not a number (e.g. 1e-3)" if text else "required: enter a number"
        return 0.0


def name_problem(name: str, sessions_folder: Path) -> str:
    """Why ``name`` cannot name a new session ("" when it can): letters, digits, - and _ only."""
    if not name:
        return "required: give the session a name"
    if not SESSION_NAME.fullmatch(name):
        bad = "".join(dict.fromkeys(c for c in name if not SESSION_NAME.fullmatch(c)))
        shown = ", ".join("space" if c == " " else f"'{c}'" for c in bad)
        return f"only letters, digits, - and _ are allowed (not {shown})"
    if resolve_session_path(name, sessions_folder).exists():
        return f"a session '{name}' already exists in {sessions_folder}/; choose another name"
    return ""


def _weights_value(values: dict[str, str], errors: dict[str, str]) -> str:
    """``none``, ``pretrained`` or the checked path of a saved state_dict."""
    weights = values.get("weights", "none")
    if weights != "file":
        return weights
    weights_path = values.get("weights_path", "").strip()
    if not weights_path:
        errors["weights_path"] = "required when weights = file: path to a saved state_dict"
    elif not Path(weights_path).expanduser().is_file():
        errors["weights_path"] = f"no file at {weights_path}"
    return str(Path(weights_path).expanduser())


def _data_path_value(values: dict[str, str], kind: str, errors: dict[str, str]) -> str | None:
    """The dataset's root folder (None for Shapes), checked for the layout its kind needs."""
    if kind == "shapes":
        return None
    data_path = values.get("data_path", "").strip() or None
    folder = Path(data_path).expanduser() if data_path else None
    if folder is None:
        errors["data_path"] = f"required for {kind}: the dataset's root folder"
    elif not folder.is_dir():
        errors["data_path"] = f"no folder at {data_path}"
    elif kind == "imagefolder" and not (folder / "train").is_dir():
        errors["data_path"] = f"{data_path} has no train/ folder (expected train/<class>/ and val/<class>/)"
    elif kind == "imagefolder" and not any((folder / s).is_dir() for s in ("val", "test")):
        errors["data_path"] = f"{data_path} has no val/ (or test/) folder"
    return str(folder) if folder is not None else data_path


def _form_config(values: dict[str, str], name: str, weights: str, data: DataConfig,
                 errors: dict[str, str]) -> SessionConfig:
    """The SessionConfig the numbers in the form describe (a number that does not parse is 0
    and explained in ``errors``); what the form does not show comes from ``salve new``'s base."""
    sae_epochs = _parse_int(values, "sae_epochs", errors)
    base = form_base(values)
    return SessionConfig(
        name=name,
        data=data,
        backbone=BackboneConfig(
            arch=values.get("arch", "resnet18"), weights=weights,
            epochs=_parse_int(values, "epochs", errors),
            batch_size=_parse_int(values, "batch_size", errors),
            lr=_parse_float(values, "lr", errors),
            # from scratch a warm-up + cosine schedule converges in few epochs; fine-tuning follows
            # the paper (constant Adam learning rate)
            schedule="onecycle" if weights == "none" else "constant",
        ),
        sae=SAEConfig(
            kind=values.get("sae_kind", "l1"),
            hidden=_parse_int(values, "sae_hidden", errors),
            l1_coeff=_parse_float(values, "l1_coeff", errors),
            k=_parse_int(values, "topk", errors),
            epochs=sae_epochs,
            # Same shape of schedule as the paper (StepLR every 1/5 of training), as in the demo.
            lr_step_epochs=max(1, sae_epochs // 5),
            normalize=base.sae.normalize,  # real data: as `salve new` (λ then means the same everywhere)
        ),
        device=values.get("device", "auto"),
    )


def validate_form(values: dict[str, str], sessions_folder: Path) -> tuple[SessionConfig | None, dict[str, str]]:
    """Turn form text into a SessionConfig, or field id → message for everything that is wrong."""
    errors: dict[str, str] = {}
    name = values.get("name", "").strip()
    if problem := name_problem(name, sessions_folder):
        errors["name"] = problem
    weights = _weights_value(values, errors)
    kind = values.get("dataset", "shapes")
    data = DataConfig(kind=kind, path=_data_path_value(values, kind, errors),
                      image_size=_parse_int(values, "image_size", errors))
    config = _form_config(values, name, weights, data, errors)
    for problem in config.validate():
        field_id = field_for_problem(problem)
        if field_id == GENERAL and GENERAL in errors:
            errors[GENERAL] += "; " + problem
        else:
            errors.setdefault(field_id, problem)  # a parse error already explains its field
    return (None, errors) if errors else (config, {})


class NewSessionScreen(SalveScreen):
    SCREEN_TITLE = "New session"
    CSS_PATH = Path(__file__).with_name("new_session.tcss")  # absolute: a subclass may live elsewhere
    HELP_TEXT = (
        "Settings of a new session. Defaults are the embedded demo (Shapes dataset, ResNet-18 "
        "trained from scratch); another dataset or weights set the image size, epochs, batch "
        "size, learning rate, SAE width, λ and SAE epochs to what `salve new` uses for it, "
        "except the values you typed. Nothing runs until you create the session; every field is "
        "checked first and problems are shown under the field. tab / shift+tab move between "
        "fields; enter opens a choice list."
    )
    BINDINGS: ClassVar[list[Binding]] = [
        Binding("ctrl+s", "create(False)", "Create", priority=True),
        Binding("ctrl+r", "create(True)", "Create & run", priority=True),
        Binding("escape", "cancel", "Back"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._auto: dict[str, str] = {}  # field id → the default last filled in (not typed)

    def compose(self) -> ComposeResult:
        yield ScreenHeader()
        with VerticalScroll(id="form"):
            yield Static(id="error-general", classes="field-error", markup=False)
            for field in FIELDS:
                if field.section:
                    yield Static(field.section, classes="form-section")
                with Horizontal(classes="form-row", id=f"row-{field.id}"):
                    yield Label(field.label, classes="form-label")
                    if field.choices:
                        yield Select([(c, c) for c in field.choices], value=field.default, allow_blank=False,
                                     id=f"field-{field.id}", compact=True)
                    else:
                        yield Input(field.default, placeholder=field.placeholder, id=f"field-{field.id}",
                                    compact=True)
                yield Static(id=f"error-{field.id}", classes="field-error", markup=False)
        yield ScreenFooter(compact=True)

    def on_mount(self) -> None:
        self.sub_title = "new session"
        self._update_dependent_fields()
        self.query_one("#field-name", Input).focus()

    def on_select_changed(self, event: Select.Changed) -> None:
        self._update_dependent_fields()

    def on_input_changed(self, event: Input.Changed) -> None:
        """The name is checked as it is typed (the other fields when Create is pressed)."""
        if event.input.id == "field-name":
            name = event.value.strip()
            problem = name_problem(name, self.salve.sessions_folder) if name else ""
            self._show_field_error("name", problem)
        elif event.input.id == "field-data_path":  # real data: the width follows the class count
            self._update_dependent_fields()

    def is_filled(self) -> bool:
        """Whether any field differs from what the form opened with."""
        return self.values() != {f.id: f.default for f in FIELDS}

    def _update_dependent_fields(self) -> None:
        """Path fields only matter for some choices: disable them otherwise. The fields with a
        per-dataset default (SAE width, λ, epochs…) follow the dataset, its folder (the class
        count) and the weights as ``salve new`` would set them, until the user types a value."""
        values = self.values()
        suggested = suggested_values(values)
        for field_id, auto in suggested.items():
            widget = self.query_one(f"#field-{field_id}", Input)
            if widget.value.strip() in ("", self._auto.get(field_id, widget.value.strip())) and widget.value != auto:
                widget.value = auto
        self._auto = suggested
        self.query_one("#field-weights_path", Input).disabled = values["weights"] != "file"
        self.query_one("#field-data_path", Input).disabled = values["dataset"] == "shapes"
        self.query_one("#field-topk", Input).disabled = values["sae_kind"] != "topk"
        self.query_one("#field-l1_coeff", Input).disabled = values["sae_kind"] != "l1"

    def values(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for field in FIELDS:
            widget = self.query_one(f"#field-{field.id}")
            out[field.id] = str(widget.value) if isinstance(widget, Select | Input) else ""
        return out

    def show_errors(self, errors: dict[str, str]) -> None:
        for field_id in (*FIELD_IDS, GENERAL):
            self._show_field_error(field_id, errors.get(field_id, ""))

    def _show_field_error(self, field_id: str, message: str) -> None:
        label = self.query_one(f"#error-{field_id}", Static)
        label.update(f"↑ {message}" if message and field_id != GENERAL else message)
        label.set_class(bool(message), "visible")
        if field_id != GENERAL:
            self.query_one(f"#row-{field_id}").set_class(bool(message), "invalid")

    def action_create(self, run: bool) -> None:
        config, errors = validate_form(self.values(), self.salve.sessions_folder)
        self.show_errors(errors)
        if config is None:
            first = next((f for f in FIELD_IDS if f in errors), None)
            if first is not None:
                widget = self.query_one(f"#field-{first}")
                widget.focus()
                widget.scroll_visible()
            else:
                self.query_one("#error-general").scroll_visible()
            count = len(errors)
            self.notify(f"{count} setting{'s' if count > 1 else ''} to fix (marked in red); nothing was created",
                        severity="error")
            return
        from core.store.session import Session

        path = resolve_session_path(config.name, self.salve.sessions_folder)
        try:
            session = Session.create(path, config)
        except SessionError as exc:
            self.show_errors({GENERAL: str(exc)})
            self.notify(str(exc), severity="error")
            return
        self.app.pop_screen()
        self.salve.adopt_session(session)
        if run:
            self.salve.run_pipeline_job(None, force=False, name="run all")

    def action_cancel(self) -> None:
        """Back to the sessions list; asks first when the form holds anything typed."""
        if not self.is_filled():
            self.app.pop_screen()
            return

        def answer(discard: bool | None) -> None:
            if discard:
                self.app.pop_screen()

        self.app.push_screen(ConfirmModal("Discard the settings typed into this form? Nothing "
                                          "has been created yet.", title="Leave the new-session form",
                                          yes="Discard", no="Keep editing"), answer)
