"""Optional compiled CPU kernel for SAE training (``core/discover/csrc/sae_l1_epoch.c``).

The C source is compiled on first use with the machine's C compiler (``cc -O3 -march=native``)
into a per-user cache, keyed by the source, the flags and the CPU's feature flags (a home folder
shared by different cluster nodes gets one library per CPU type), and loaded with ``ctypes``
(which releases the GIL during the call, so the TUI stays responsive). Everything here is
best-effort: no compiler, a failed build or ``SALVE_NATIVE=0`` just means :func:`sae_kernels`
returns ``None`` and the trainer uses its torch path; :func:`status` says why.

Environment: ``SALVE_NATIVE=0`` disables the kernel; ``SALVE_CACHE_DIR`` moves the cache
(default ``$XDG_CACHE_HOME/salve-tui`` or ``~/.cache/salve-tui``); ``CC`` picks the compiler.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

SOURCE = Path(__file__).with_name("csrc") / "sae_l1_epoch.c"
FLAGS = ("-O3", "-fno-math-errno", "-shared", "-fPIC")
ARCH_FLAGS = (("-march=native",), ("-mcpu=native",), ())  # first that compiles wins

_lock = threading.Lock()
_attempted = False
_loaded: ctypes.CDLL | None = None
_status = "not loaded yet"


class SAEBuffers(ctypes.Structure):
    """Pointers to one seed's parameters, gradients and Adam moments (enc_t, enc_b, dec_t, dec_b)."""

    _fields_ = [(name, ctypes.c_void_p * 4) for name in ("param", "grad", "exp_avg", "exp_avg_sq")]


class EpochArgs(ctypes.Structure):
    _fields_ = [
        ("n", ctypes.c_int64), ("d", ctypes.c_int64), ("h", ctypes.c_int64), ("batch", ctypes.c_int64),
        ("lr", ctypes.c_double), ("l1_coeff", ctypes.c_double), ("beta1", ctypes.c_double),
        ("beta2", ctypes.c_double), ("eps", ctypes.c_double), ("adam_step", ctypes.c_int64),
    ]


def cache_dir() -> Path:
    if os.environ.get("SALVE_CACHE_DIR"):
        return Path(os.environ["SALVE_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "salve-tui"


def _cpu_signature() -> str:
    """The CPU's model and feature flags: a library built with -march=native only runs there."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        keep = [line for line in lines if line.startswith(("flags", "model name", "Features", "CPU part"))]
        return "\n".join(sorted(set(keep)))
    except OSError:
        return platform.processor() or platform.machine()


def _compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def _build(compiler: str, target: Path) -> str | None:
    """Compile into ``target`` atomically (build in a temp file, then rename); None or the error."""
    target.parent.mkdir(parents=True, exist_ok=True)
    error = "?"
    for arch in ARCH_FLAGS:
        with tempfile.NamedTemporaryFile(dir=target.parent, suffix=".so", delete=False) as tmp:
            tmp_path = Path(tmp.name)
        cmd = [compiler, *FLAGS, *arch, "-o", str(tmp_path), str(SOURCE), "-lm"]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.TimeoutExpired) as exc:
            tmp_path.unlink(missing_ok=True)
            return f"{compiler} could not run: {exc}"
        if done.returncode == 0:
            os.replace(tmp_path, target)
            return None
        tmp_path.unlink(missing_ok=True)
        error = (done.stderr.strip().splitlines() or ["?"])[-1]
    return f"{compiler} failed: {error}"


def sae_kernels() -> ctypes.CDLL | None:
    """The compiled SAE kernel library, building it on first use; None when unavailable."""
    global _attempted, _loaded, _status
    with _lock:
        if _attempted:
            return _loaded
        _attempted = True
        if os.environ.get("SALVE_NATIVE", "1") == "0":
            _status = "disabled by SALVE_NATIVE=0"
            return None
        compiler = _compiler()
        if compiler is None:
            _status = "no C compiler found (set CC); using the torch path"
            return None
        key = hashlib.sha256(
            b"\0".join([SOURCE.read_bytes(), " ".join(FLAGS).encode(), compiler.encode(),
                        _cpu_signature().encode(), platform.machine().encode()])
        ).hexdigest()[:16]
        target = cache_dir() / "native" / f"sae_l1_epoch-{key}.so"
        try:
            if not target.exists():
                error = _build(compiler, target)
                if error is not None:
                    _status = f"build failed ({error}); using the torch path"
                    return None
            lib = ctypes.CDLL(str(target))
        except OSError as exc:
            _status = f"could not load {target}: {exc}; using the torch path"
            return None
        fn = lib.salve_sae_l1_epoch
        fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(SAEBuffers),
                       ctypes.POINTER(EpochArgs), ctypes.c_void_p, ctypes.c_void_p]
        fn.restype = ctypes.c_int
        _loaded, _status = lib, f"compiled kernel {target}"
        return lib


def status() -> str:
    """Why the kernel is or is not in use (after :func:`sae_kernels` was called)."""
    return _status
