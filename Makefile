# Everything a fresh machine needs: `make demo` (main job) and `make test` (tests).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
export HF_HUB_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export THP_MEM_ALLOC_ENABLE := 1

.PHONY: setup demo test test-slow lint format docs bench clean

$(STAMP): requirements.txt pyproject.toml scripts/install-system-deps.sh
	bash scripts/install-system-deps.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/tada demo --out out/demo

test: setup
	$(PY) -m pytest -q -m "not slow"

test-slow: setup
	$(PY) -m pytest -q -m slow

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: setup
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# docs/cli.md is generated from the CLI itself; tests/test_docs.py fails when it is stale.
docs: setup
	$(PY) -m typer tada.cli utils docs --name tada --output docs/cli.md

bench: setup
	$(PY) benchmarks/steer_overhead.py

clean:
	rm -rf $(VENV) out
