"""Device selection from the ``device`` setting (``auto`` picks CUDA when present)."""

from __future__ import annotations

DEVICE_KINDS = ("auto", "cpu", "cuda", "mps")


def check_device_setting(text: str) -> str:
    """``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (lower-cased), else ValueError naming
    the choices: checked when the setting is given, not as a torch error in the middle of a run."""
    setting = (text or "").strip().lower()
    kind, colon, index = setting.partition(":")
    if kind not in DEVICE_KINDS or (colon and (kind != "cuda" or not index.isdigit())):
        raise ValueError(f"unknown device '{text}'; use auto, cpu, cuda, cuda:N (N a GPU index) or mps")
    return setting


def resolve_device(setting: str = "auto"):
    """Return a ``torch.device`` for ``auto``/``cpu``/``cuda``/``cuda:N``/``mps``.

    Asking for CUDA on a machine without it is a clear error rather than a late crash.
    """
    import torch

    setting = (setting or "auto").lower()
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if setting.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(
            f"device '{setting}' was requested but CUDA is not available here; "
            "use --device cpu or --device auto"
        )
    return torch.device(setting)
