"""Which editing methods exist, by the name an :class:`~core.control.spec.EditSpec` records.

Method modules are imported on first use (by dotted path), so the edit record can validate
itself against its method without the record and the methods importing each other.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from core.control.methods.base import EditMethod

# name → "module:attribute" of the method object. Adding a method: one file plus one line here.
METHODS = {
    "salve": "core.control.methods.salve:SALVE",
    "rome": "core.control.methods.rome:ROME",
    "steer": "core.control.methods.steering:STEERING",
}

_loaded: dict[str, EditMethod] = {}


def method_names() -> tuple[str, ...]:
    return tuple(METHODS)


def get_method(name: str) -> EditMethod:
    """The method object registered under ``name`` (``ValueError`` for an unknown name)."""
    if name not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got '{name}'")
    if name not in _loaded:
        module, attribute = METHODS[name].split(":")
        _loaded[name] = getattr(importlib.import_module(module), attribute)
    return _loaded[name]
