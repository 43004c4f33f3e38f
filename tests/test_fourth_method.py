"""The editing-method interface is closed: a fourth method (``methods_fourth.py``, registered by
the one line in the ``damp`` fixture) runs through ``salve sweep``, ``salve edit``, the edit
stack, α_crit and the TUI edit preview with no other change, and its numbers are the ones a
plain computation from its own ``apply`` gives."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from methods_fourth import DAMP, DampingMethod, damping
from test_tui_analyses import tiny_folder  # noqa: F401  (a fixture)
from test_tui_helpers import wait_for
from textual.widgets import Footer

from core.control.alpha_crit import class_alpha_crit
from core.control.curves import per_class_accuracy
from core.control.edit import replay_linear
from core.control.methods.registry import method_names, registered
from core.store.session import Session
from core.workflow.edits import edit_stack, list_edits
from core.workflow.inputs import clear_input_cache, load_inputs
from core.workflow.sweeps import list_sweeps, load_sweep
from salve_tui.app.app import SalveApp
from salve_tui.app.screens.analysis_edit import EditPreviewScreen
from salve_tui.app.screens.dashboard import DashboardScreen
from salve_tui.cli.main import main


@pytest.fixture
def damp() -> Iterator[DampingMethod]:
    with registered(DAMP):  # the one line that adds the method
        yield DAMP


@pytest.fixture
def tiny(request: pytest.FixtureRequest) -> Path:
    """A copy of the built tiny session (``sessions/tiny.h5``, cwd = its tmp folder)."""
    clear_input_cache()
    return request.getfixturevalue("tiny_folder") / "tiny.h5"


def damped_accuracy(x, features: list[int], delta: float) -> torch.Tensor:  # noqa: ANN001
    """Per-class test accuracy with the head damped by hand (no method code)."""
    W = x.W.double() * torch.exp(-delta * x.D[:, features].double().abs().sum(1))
    return per_class_accuracy(x.labels, (x.A.double() @ W.T + x.b.double()).argmax(1), x.num_classes)


def test_registration_is_one_line_and_undone(damp: DampingMethod) -> None:
    assert method_names()[-1] == "damp" and method_names()[:3] == ("salve", "rome", "steer")


def test_unregistered_after_the_fixture() -> None:
    assert "damp" not in method_names()


def best_class(x) -> int:  # noqa: ANN001
    """The class the tiny model gets most right (its curve has room to fall)."""
    return int(per_class_accuracy(x.labels, x.base_predictions, x.num_classes).nan_to_num().argmax())


def test_salve_sweep_and_edit_with_the_fourth_method(damp, tiny: Path, capsys) -> None:  # noqa: ANN001
    with Session.open(tiny, read_only=True) as ro:
        x = load_inputs(ro)
    c = best_class(x)
    assert main(["sweep", str(tiny), "--class", str(c), "--method", "damp", "--n-alphas", "12", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["method"] == "damp" and payload["param_name"] == "delta"
    with Session.open(tiny, read_only=True) as ro:
        (key,) = [k for k in list_sweeps(ro) if k.startswith("damp-")]
        stored = load_sweep(ro, key)
    k = int(x.dominant[c])
    assert key == f"damp-f{k}-suppress-delta-c{c}" and stored.features == [k]
    assert stored.alphas[-1].item() == pytest.approx(4.0 / float(damping(x.D, [k]).max()))
    for i, delta in enumerate(stored.alphas.tolist()):  # the curve is the hand-damped head's
        torch.testing.assert_close(stored.per_class_accuracy[:, i], damped_accuracy(x, [k], delta),
                                   equal_nan=True)
    assert not torch.equal(stored.per_class_accuracy[:, -1], stored.per_class_accuracy[:, 0])  # it moves

    assert main(["edit", str(tiny), "--class", str(c), "--method", "damp", "--alpha", "0.5", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["edit"]["method"] == "damp" and payload["edit"]["features"] == [k]
    after = damped_accuracy(x, [k], 0.5)
    assert [payload["accuracy_after"][n] for n in x.class_names] == pytest.approx(after.tolist(), nan_ok=True)
    assert all(Path(p).exists() for p in payload["export"]["files"])
    assert main(["edit", str(tiny), "--feature", "3", "--alpha", "1.0"]) == 0  # SALVE on top
    capsys.readouterr()
    with Session.open(tiny, read_only=True) as ro:
        stack = edit_stack(ro, x)
        specs = list_edits(ro)
    assert [r.to_dict(x.class_names)["label"] for r in stack.rows] == [
        f"damping f{k} δ=0.5", "SALVE suppress f3 α=1 linear"]
    assert stack.rows[0].change.per_class_after == pytest.approx(after.tolist(), nan_ok=True)
    # the composition replays both edits in order on the layer, as an export does
    layer = torch.nn.Linear(x.W.shape[1], x.W.shape[0]).double()
    with torch.no_grad():
        layer.weight.copy_(x.W.double())
        layer.bias.copy_(x.b.double())
    edited = replay_linear(layer, x.D.double(), specs)
    W = x.W.double() * torch.exp(-0.5 * x.D[:, k].double().abs())
    W = W * (1 - 1.0 * x.D[:, 3].double().abs())
    torch.testing.assert_close(edited.weight.detach(), W)
    composed = per_class_accuracy(x.labels, (x.A.double() @ W.T + x.b.double()).argmax(1), x.num_classes)
    assert stack.composition.per_class_after == pytest.approx(composed.tolist(), nan_ok=True)


def test_alpha_crit_of_the_fourth_method(damp: DampingMethod, tiny: Path) -> None:
    """Its roots are real crossings of the exact damped logit z(δ) = Σ_j W_cj a_j e^(−δ|D_jk|)."""
    with Session.open(tiny, read_only=True) as ro:
        x = load_inputs(ro)
    c = best_class(x)
    k = int(x.dominant[c])
    result = class_alpha_crit(x.A, x.labels, x.W, x.b, x.D, c, k, method="damp")
    assert not result.first_order_exact and result.note is not None
    rows = x.A[x.labels == c].double()
    w = x.W[c].double()
    d = x.D[:, k].double().abs()
    roots = result.numerical
    found = torch.isfinite(roots)
    assert int(found.sum()) >= 1
    for a, r in zip(rows[found], roots[found], strict=True):
        z_at = float((a * w * torch.exp(-float(r) * d)).sum())
        assert abs(z_at) < 1e-6 * float((a * w).abs().sum())  # a root
        before = torch.linspace(0, float(r) * 0.999, 200, dtype=torch.float64)
        assert bool(((a * w) @ torch.exp(-before.unsqueeze(1) * d).T > 0).all())  # the first one


async def test_tui_edit_preview_offers_and_applies_the_fourth_method(damp, tiny: Path) -> None:  # noqa: ANN001
    from textual.widgets._footer import FooterLabel

    with Session.open(tiny, read_only=True) as ro:
        x = load_inputs(ro)
    app = SalveApp(sessions_folder=tiny.parent, start_session="tiny")
    async with app.run_test(size=(100, 40)) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, DashboardScreen), what="dashboard")
        await pilot.press("e")
        await wait_for(pilot, lambda: isinstance(app.screen, EditPreviewScreen) and app.screen.loaded,
                       what="edit preview")
        screen = app.screen
        for _ in range(3):  # salve → rome → steer → damp
            await pilot.press("m")
        await wait_for(pilot, lambda: screen.method == "damp" and screen.curve is not None
                       and screen.curve.method == "damp", what="the damping curve")
        labels = [str(label.render()).strip() for label in screen.query_one(Footer).query(FooterLabel)]
        assert "δ" in labels
        await pilot.press("plus", "plus")
        await wait_for(pilot, lambda: screen.effect is not None and screen.effect.spec.alpha == screen.alpha > 0,
                       what="the effect at δ > 0")
        settings = str(screen.query_one("#edit-settings").render())
        assert "damping" in settings and "δ=" in settings
        k = screen.spec.features[0]
        torch.testing.assert_close(screen.effect.accuracy_after.double(),
                                   damped_accuracy(x, [k], screen.alpha), equal_nan=True)


def test_every_method_names_its_strength_as_its_sweeps_do(damp: DampingMethod) -> None:
    """``param_name`` is what the method's sweep records (ROME said "target" but swept
    "target_value"); the symbol and reset value are what the fronts show."""
    from core.control.methods.base import CachedInputs, EditRequest
    from core.control.methods.registry import methods
    from core.control.sweep import sweep

    g = torch.Generator().manual_seed(0)
    D = torch.randn(6, 4, generator=g)
    A = torch.relu(torch.randn(30, 6, generator=g))
    labels = torch.arange(30) % 3
    M = torch.stack([(A[labels == c] @ D).mean(0) for c in range(3)])
    x = CachedInputs(A, labels, torch.randn(3, 6, generator=g), torch.zeros(3), D, M)
    seen = {}
    for m in methods():
        result = sweep(m, x, EditRequest(0, [1] if m.needs_features else None, n_points=5))
        seen[m.name] = (result.param_name, m.symbol)
        assert result.param_name == m.param_name and result.method == m.name
        assert m.sweep_key(result).startswith(m.name)
    assert seen == {"salve": ("alpha", "α"), "rome": ("target_value", "target"), "steer": ("beta", "β"),
                    "damp": ("delta", "δ")}
