"""New-session form: bad input is refused field by field before anything is created."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_tui_helpers import make_session
from textual.widgets import Input, Select, Static

from core.store.session import Session
from salve_tui.app.app import SalveApp
from salve_tui.app.screens.dashboard import DashboardScreen
from salve_tui.app.screens.new_session import FIELDS, GENERAL, NewSessionScreen, validate_form


def form_values(**changes: str) -> dict[str, str]:
    values = {field.id: field.default for field in FIELDS}
    values["name"] = "ok"
    values.update(changes)
    return values


def test_defaults_with_a_name_give_the_demo_settings(tmp_path: Path) -> None:
    config, errors = validate_form(form_values(lr="0.002", sae_epochs="100"), tmp_path)
    assert errors == {}
    assert config is not None
    assert (config.name, config.data.kind, config.data.image_size) == ("ok", "shapes", 64)
    assert config.backbone.lr == pytest.approx(0.002)
    assert (config.sae.epochs, config.sae.lr_step_epochs) == (100, 20)  # StepLR every 1/5 of training


@pytest.mark.parametrize(
    ("changes", "field", "text"),
    [
        ({"name": ""}, "name", "required"),
        ({"name": ".hidden"}, "name", "only letters, digits, - and _ are allowed (not '.')"),
        ({"image_size": "3"}, "image_size", "between 16 and 1024, got 3"),
        ({"image_size": "big"}, "image_size", "'big' is not a whole number"),
        ({"lr": "-1"}, "lr", "learning rate must be > 0"),
        ({"lr": "fast"}, "lr", "is not a number"),
        ({"sae_kind": "topk", "topk": "99", "sae_hidden": "16"}, "topk", "between 1 and hidden (16)"),
        ({"sae_hidden": "0"}, "sae_hidden", "hidden size must be ≥ 1"),
        ({"dataset": "imagefolder"}, "data_path", "required for imagefolder"),
        ({"dataset": "cifar100", "data_path": "/no/such/dir"}, "data_path", "no folder at /no/such/dir"),
        ({"weights": "file", "weights_path": "/no/such.pt"}, "weights_path", "no file at /no/such.pt"),
    ],
)
def test_bad_input_names_the_field(tmp_path: Path, changes: dict, field: str, text: str) -> None:
    config, errors = validate_form(form_values(**changes), tmp_path)
    assert config is None
    assert text in errors[field], errors
    assert GENERAL not in errors


def test_imagefolder_needs_train_and_val(tmp_path: Path) -> None:
    root = tmp_path / "imgs"
    (root / "train").mkdir(parents=True)
    _, errors = validate_form(form_values(dataset="imagefolder", data_path=str(root)), tmp_path)
    assert "no val/" in errors["data_path"]
    (root / "val").mkdir()
    config, errors = validate_form(form_values(dataset="imagefolder", data_path=str(root)), tmp_path)
    assert errors == {} and config is not None and config.data.path == str(root)


def test_existing_name_is_refused(tmp_path: Path) -> None:
    make_session(tmp_path, "taken")
    _, errors = validate_form(form_values(name="taken"), tmp_path)
    assert "already exists" in errors["name"]


async def test_form_shows_messages_and_creates_nothing(tmp_path: Path) -> None:
    app = SalveApp(sessions_folder=tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("n")
        await pilot.pause()
        assert isinstance(app.screen, NewSessionScreen)
        form = app.screen
        form.query_one("#field-image_size", Input).value = "3"
        form.query_one("#field-dataset", Select).value = "imagefolder"
        form.query_one("#field-data_path", Input).value = str(tmp_path / "missing")
        await pilot.pause()
        await pilot.press("ctrl+s")  # name left empty
        await pilot.pause()

        assert isinstance(app.screen, NewSessionScreen)
        shown = {fid: str(form.query_one(f"#error-{fid}", Static).render()) for fid in
                 ("name", "image_size", "data_path")}
        assert "required" in shown["name"]
        assert "between 16 and 1024, got 3" in shown["image_size"]
        assert "no folder at" in shown["data_path"]
        for fid in shown:
            assert form.query_one(f"#error-{fid}").display  # visible next to the field
        assert not form.query_one("#error-epochs").display
        assert app.focused is form.query_one("#field-name")  # the first bad field gets focus
        assert list(tmp_path.iterdir()) == []  # nothing was created

        # Fix everything: the session is created and its dashboard opens.
        form.query_one("#field-name", Input).value = "fresh"
        form.query_one("#field-image_size", Input).value = "32"
        form.query_one("#field-dataset", Select).value = "shapes"
        await pilot.pause()
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert isinstance(app.screen, DashboardScreen)
        assert app.session is not None and app.session.config.data.image_size == 32
    with Session.open(tmp_path / "fresh.h5", read_only=True) as session:
        assert session.config.name == "fresh"


def test_head_dims_known_without_torch_match_the_models() -> None:
    from core.config import HEAD_INPUT_DIMS
    from core.discover.backbone import head_input_dim

    assert {arch: head_input_dim(arch, 224 if arch == "vit_b_16" else 64) for arch in HEAD_INPUT_DIMS} == HEAD_INPUT_DIMS


async def test_sae_width_follows_model_and_data_until_typed(tmp_path: Path) -> None:
    """Real data gets the width `salve new` gives it (max(64, 4·C) from the class folders,
    whatever the model); a typed width stays."""
    folder = tmp_path / "classes17"
    for c in range(17):
        (folder / "train" / f"c{c}").mkdir(parents=True)
    app = SalveApp(sessions_folder=tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("n")
        await pilot.pause()
        form = app.screen
        hidden = form.query_one("#field-sae_hidden", Input)
        assert hidden.value == "64"  # the demo's width on Shapes
        form.query_one("#field-dataset", Select).value = "imagefolder"
        await pilot.pause()
        assert hidden.value == "64"  # classes unknown yet
        form.query_one("#field-data_path", Input).value = str(folder)
        await pilot.pause()
        assert hidden.value == "128"  # 17 classes: 4·17 = 68, rounded up to 128
        form.query_one("#field-arch", Select).value = "vit_tiny"
        await pilot.pause()
        assert hidden.value == "128"  # the model's d does not set it
        hidden.value = "100"
        form.query_one("#field-arch", Select).value = "resnet18"
        await pilot.pause()
        assert hidden.value == "100"
    root = tmp_path / "data"
    (root / "train").mkdir(parents=True)
    (root / "val").mkdir()
    config, errors = validate_form(form_values(dataset="imagefolder", data_path=str(root), sae_hidden="2048"), tmp_path)
    assert errors == {} and config.sae.normalize and config.sae.hidden == 2048
    config, _ = validate_form(form_values(), tmp_path)
    assert config is not None and not config.sae.normalize  # Shapes: the demo's settings


async def test_dataset_sets_the_cli_defaults_until_typed(tmp_path: Path) -> None:
    """Issue 19: a real dataset gets the λ, epochs and batch sizes `salve new` gives it, not the
    Shapes demo's; the weights switch the backbone's (fine-tuning: paper A.3); a typed value
    stays; and the session the form creates has the config `salve new` writes for the same
    choices."""
    from cli_helpers import run_cli

    root = tmp_path / "imgs"
    for c in ("a", "b", "c"):
        (root / "train" / c).mkdir(parents=True)
        (root / "val" / c).mkdir(parents=True)
    rc, out = run_cli("new", "real", "--data", "imagefolder", "--data-path", str(root), "--sae-epochs", "50",
                      "--sessions-dir", str(tmp_path / "cli"))
    assert rc == 0, out
    with Session.open(tmp_path / "cli" / "real.h5", read_only=True) as session:
        cli_config = session.config.to_dict()

    app = SalveApp(sessions_folder=tmp_path / "tui")
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("n")
        await pilot.pause()
        form = app.screen
        assert isinstance(form, NewSessionScreen)

        def shown(*ids: str) -> tuple[str, ...]:
            return tuple(form.query_one(f"#field-{i}", Input).value for i in ids)

        async def choose(field_id: str, value: str) -> None:
            form.query_one(f"#field-{field_id}", Select).value = value
            await pilot.pause()

        sae, backbone = ("l1_coeff", "sae_epochs", "sae_hidden"), ("epochs", "batch_size", "lr")
        assert shown(*sae, *backbone) == ("0.1", "300", "64", "8", "32", "0.002")  # the demo's
        await choose("dataset", "imagefolder")
        form.query_one("#field-data_path", Input).value = str(root)
        await pilot.pause()
        assert shown(*sae, *backbone) == ("0.01", "200", "64", "8", "64", "0.002")  # real data, from scratch
        await choose("weights", "pretrained")
        assert shown(*backbone) == ("10", "16", "0.0001")  # fine-tuning: batch 16, lr 1e-4, 10 epochs
        await choose("weights", "none")
        assert shown(*backbone) == ("8", "64", "0.002")
        form.query_one("#field-sae_epochs", Input).value = "50"  # typed: no dataset change touches it
        await choose("dataset", "shapes")
        assert shown(*sae, *backbone) == ("0.1", "50", "64", "8", "32", "0.002")
        await choose("dataset", "imagefolder")
        assert shown(*sae) == ("0.01", "50", "64")

        form.query_one("#field-name", Input).value = "real"
        await pilot.pause()
        await pilot.press("ctrl+s")
        await pilot.pause()
        assert isinstance(app.screen, DashboardScreen)
        assert app.session is not None
        assert app.session.config.to_dict() == cli_config
