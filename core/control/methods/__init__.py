"""Editing methods behind one interface (``base.EditMethod``): SALVE, ROME and SAE steering.

One module per method; ``registry`` names them, so a new method is one file plus one line there."""
