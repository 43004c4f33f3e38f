"""Session-level orchestration: pipeline stages, the control and visuals APIs, figures, exports.

The layer the fronts call: it loads inputs from a session, runs core functions, records results."""
