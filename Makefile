# Two commands do all the set-up: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# The suite runs on TEST_WORKERS processes (pytest-xdist), one torch thread each.
TEST_WORKERS ?= 2
PYTEST := OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --durations=15

.PHONY: demo test test-slow test-variant lint bench clean-venv

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
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

lint: $(STAMP)
	$(BIN)/ruff check core salve_tui tests bench

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

clean-venv:
	rm -rf $(VENV)
