"""Control (SPEC §3-5): edit specs, the editing methods (SALVE, ROME, steering), sweeps,
α_crit and seed robustness. Pure functions on tensors; no session, no files."""
