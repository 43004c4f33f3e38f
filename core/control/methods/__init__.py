"""Editing methods behind one interface (``base.EditMethod``): SALVE, ROME and SAE steering.

One module per method, registered below in the order the fronts offer them; a new method is
one file plus one line in that tuple (``registry.register``).
"""

from core.control.methods.registry import register
from core.control.methods.rome import ROME
from core.control.methods.salve import SALVE
from core.control.methods.steering import STEERING

for _method in (SALVE, ROME, STEERING):
    register(_method)
