"""Optional compiled CPU kernel for SAE training (``core/discover/csrc/sae_l1_epoch.c``).

The C source is compiled on first use with the machine's C compiler into a per-user cache, keyed
by the source, the compiler and the flags, and loaded with ``ctypes``
(which releases the GIL during the call, so the TUI stays responsive). Everything here is
best-effort: no compiler, a failed build or ``SALVE_NATIVE=0`` just means :func:`sae_kernels`
returns ``None`` and the trainer uses its torch path; :func:`status` says why.

Results do not depend on the CPU: the build uses ``-ffp-contract=off``, so no fused
multiply-add is ever formed and every float operation is the one the source spells, in its
order. The vector types lower to whatever width the ISA has, element by element, so the build
targets the widest x86-64 level the CPU supports (``x86-64-v4`` with AVX-512, ``-v3``, else the
portable ``-v2``; the compiler's default elsewhere) and still gives bit-identical results; the
tests check that against the portable build.

The kernel may run on two threads (POSIX threads, ``-pthread``: part of the C library, no
OpenMP runtime to clash with torch's); the work split is fixed by the SAE's width, so one or two
threads give the same bits.

Environment: ``SALVE_NATIVE=0`` disables the kernel; ``SALVE_NATIVE_ARCH`` sets ``-march``; ``SALVE_CACHE_DIR`` moves the cache
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
# -ffp-contract=off: no a·b+c → fma contraction, whose rounding differs from a·b then +c.
FLAGS = ("-O3", "-ffp-contract=off", "-fno-math-errno", "-shared", "-fPIC", "-pthread")
PORTABLE_X86 = "x86-64-v2"


#: x86-64 micro-architecture levels, widest first, with the CPU flags (``/proc/cpuinfo``) each needs.
X86_LEVELS = (
    ("x86-64-v4", {"avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl", "avx2", "fma", "bmi2"}),
    ("x86-64-v3", {"avx2", "fma", "bmi1", "bmi2", "movbe", "f16c"}),
)


def cpu_flags() -> set[str]:
    """The CPU's feature flags from ``/proc/cpuinfo`` (empty where that file does not exist)."""
    try:
        text = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def arch_flags() -> tuple[tuple[str, ...], ...]:
    """``-march`` candidates, first that compiles wins: ``SALVE_NATIVE_ARCH`` if set, else the
    widest x86-64 level this CPU runs (AVX-512, then AVX2: the kernel's 16-float vectors then take
    one or two instructions instead of four SSE ones, ~4-8× faster), the portable SSE4.2 baseline,
    and the compiler's default target. Bit-identical results on every level (no FMA, see above)."""
    forced = os.environ.get("SALVE_NATIVE_ARCH")
    if forced:
        return ((f"-march={forced}",),)
    if platform.machine().lower() in ("x86_64", "amd64"):
        flags = cpu_flags()
        wide = tuple((f"-march={level}",) for level, need in X86_LEVELS if need <= flags)
        return (*wide, (f"-march={PORTABLE_X86}",), ())
    return ((),)


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
        ("threads", ctypes.c_int64),
    ]


def cache_dir() -> Path:
    if os.environ.get("SALVE_CACHE_DIR"):
        return Path(os.environ["SALVE_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "salve-tui"


def _compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def _build(compiler: str, target: Path) -> str | None:
    """Compile into ``target`` atomically (build in a temp file, then rename); None or the error."""
    target.parent.mkdir(parents=True, exist_ok=True)
    error = "?"
    for arch in arch_flags():
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
        flags = " ".join(FLAGS + tuple(f for arch in arch_flags() for f in arch))
        key = hashlib.sha256(
            b"\0".join([SOURCE.read_bytes(), flags.encode(), compiler.encode(),
                        platform.machine().encode()])
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
