"""Device selection from the ``device`` setting (``auto`` picks CUDA when present)."""

from __future__ import annotations


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
