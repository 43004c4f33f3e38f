"""The ``salve`` command line: one sub-command per workflow call, text or ``--json`` output.

A front end: it parses flags, calls ``core.workflow`` and prints; no compute lives here."""
