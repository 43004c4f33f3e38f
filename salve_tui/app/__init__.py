"""The Textual workstation: the app, one module per screen, widgets and styles (``app.tcss``).

Slow work runs in workers that report back with messages; screens never compute."""
