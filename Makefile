# Two commands do all the set-up: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# The suite runs on TEST_WORKERS processes (pytest-xdist), one torch thread each: one more than
# the cores (at most 8), since part of every worker's time is spent waiting on subprocesses and
# app worker threads (2 cores: 264 s on 2 workers, 223 s on 3; bench/RESULTS.md).
TEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 2); echo $$(( n < 8 ? n + 1 : 8 )))
PYTEST := OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --durations=15

.PHONY: demo test test-slow test-variant test-interop install-interop lint bench clean-venv

# pip byte-compiles every installed file on one core (torch has thousands): install without that,
# then compile on every core (like pip, ignoring the few files that do not compile: torch ships
# Python 3.12-only test helpers). Install time on the 2-core dev machine: bench/RESULTS.md.
COMPILE_SITE_PACKAGES := $(BIN)/python -m compileall -q -j 0 $$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))') > /dev/null || true

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --no-compile -e '.[dev]'
	$(COMPILE_SITE_PACKAGES)
	touch $(STAMP)

# In a terminal: the TUI opens the demo session, building it first with visible progress.
# Without one (a pipe, CI): the same pipeline runs headless.
demo: $(STAMP)
	@if [ -t 0 ] && [ -t 1 ]; then $(BIN)/salve-tui demo --build; else $(BIN)/salve demo; fi

# The default suite; the 15 slowest tests are listed at the end.
test: $(STAMP)
	$(PYTEST)

# The same suite with two torch threads and the compiled SAE kernel off: CI runs it after `test`,
# so results that depend on the thread count or the engine cannot pass on one setting only.
test-variant: $(STAMP)
	OMP_NUM_THREADS=2 SALVE_NATIVE=0 $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --durations=15

test-slow: $(STAMP)
	$(PYTEST) -m slow

# SAELens for the interop tests, into the same venv (pip keeps its torch build).
INTEROP_STAMP := $(VENV)/.interop-installed
$(INTEROP_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet --no-compile -e '.[dev,interop]'
	$(COMPILE_SITE_PACKAGES)
	touch $(INTEROP_STAMP)

install-interop: $(INTEROP_STAMP)

# Fails (does not skip) when sae-lens is missing: SALVE_REQUIRE_INTEROP=1.
test-interop: $(INTEROP_STAMP)
	SALVE_REQUIRE_INTEROP=1 $(BIN)/python -m pytest -q -rs tests/test_sae_interop.py tests/test_sae_interop_saelens.py

lint: $(STAMP)
	$(BIN)/ruff check core salve_tui tests bench

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean-venv:
	rm -rf $(VENV)
