# `make demo` and `make test` set up .venv/ on first use with the exact versions of requirements.lock
# (torch first: TORCH_SPEC, the CPU wheel here), then run. `make test-latest` / `make test-oldest` run
# the tests in throwaway environments with the newest / lowest versions pyproject.toml allows.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
LOCK := requirements.lock
# `make test CONSTRAINTS=` installs without the lock (e.g. for a TORCH_SPEC whose dependencies it pins otherwise)
CONSTRAINTS ?= -c $(LOCK)

.PHONY: demo test lint bench lock test-latest test-oldest clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet $(CONSTRAINTS) pip setuptools

$(VENV)/.torch: | $(BIN)/python
	$(BIN)/pip install --quiet $(CONSTRAINTS) "$(TORCH_SPEC)"
	touch $@

$(VENV)/.dev: pyproject.toml $(LOCK) $(VENV)/.torch
	$(BIN)/pip install --quiet $(CONSTRAINTS) --no-build-isolation -e ".[dev,demo]"
	touch $@

$(VENV)/.demo: pyproject.toml $(LOCK) $(VENV)/.torch
	$(BIN)/pip install --quiet $(CONSTRAINTS) --no-build-isolation -e ".[demo]"
	touch $@

demo: $(VENV)/.demo
	$(BIN)/transfer-neurons demo --out runs/demo

test: $(VENV)/.dev
	$(BIN)/python -m pytest -q

lint: $(VENV)/.dev
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts
	$(BIN)/mypy

bench: $(VENV)/.dev
	$(BIN)/python benchmarks/bench_detect.py

# Re-resolve the lock (every extra, every platform, torch left to TORCH_SPEC) with uv; then `make test`.
lock: $(VENV)/.dev
	printf '%s\n' "$(TORCH_SPEC)" pip "setuptools>=77" | $(BIN)/uv pip compile pyproject.toml - --all-extras \
		--universal --python-version 3.11 --no-emit-package torch --upgrade --quiet -o $(LOCK)

# The newest versions pyproject.toml allows (torch stays TORCH_SPEC), in .venv-latest/.
test-latest:
	rm -rf .venv-latest
	$(PYTHON) -m venv .venv-latest
	.venv-latest/bin/pip install --quiet --upgrade pip setuptools
	.venv-latest/bin/pip install --quiet "$(TORCH_SPEC)"
	.venv-latest/bin/pip install --quiet --upgrade --upgrade-strategy eager --no-build-isolation -e ".[dev,demo]"
	.venv-latest/bin/pip list --format freeze > .venv-latest/versions.txt
	TRANSFER_NEURONS_UNLOCKED=1 .venv-latest/bin/python -m pytest -q -p no:cacheprovider

# The lowest versions pyproject.toml claims for its direct dependencies (uv's lowest-direct
# resolution; their own dependencies newest), torch staying TORCH_SPEC, in .venv-oldest/.
test-oldest: $(VENV)/.dev
	rm -rf .venv-oldest
	$(PYTHON) -m venv .venv-oldest
	.venv-oldest/bin/pip install --quiet $(CONSTRAINTS) pip setuptools
	.venv-oldest/bin/pip install --quiet "$(TORCH_SPEC)"
	printf '%s\n' "$(TORCH_SPEC)" > .venv-oldest/torch.txt
	$(BIN)/uv pip install --quiet --python .venv-oldest/bin/python --resolution lowest-direct \
		-c .venv-oldest/torch.txt --no-build-isolation -e ".[dev,demo]"
	.venv-oldest/bin/pip list --format freeze > .venv-oldest/versions.txt
	TRANSFER_NEURONS_UNLOCKED=1 .venv-oldest/bin/python -m pytest -q -p no:cacheprovider

clean:
	rm -rf $(VENV) .venv-latest .venv-oldest runs
