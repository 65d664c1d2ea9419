# Fresh machine to running: `make demo` (a short research session) and `make test` (the suite).
# Everything is installed into .venv; nothing outside this directory is changed, except that
# `make test` installs Debian's chromium for the browser tests when it is missing and apt is there.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The CPU build; on a GPU machine install your CUDA build of torch first, or set TORCH=torch.
TORCH  ?= torch==2.13.0

.PHONY: install demo test lint bench browser clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e '.[dev,gpt]'
	touch $@

install: $(BIN)/.installed
	@echo "autoresearch is installed in $(VENV)/: run it as $(BIN)/autoresearch, or put it on PATH in this shell with: source $(BIN)/activate"

demo: install
	$(BIN)/autoresearch demo

browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "chromium could not be installed: browser tests will be skipped"; \
	  else echo "chromium not found (install Debian's chromium): browser tests will be skipped"; fi; }

# The suite on WORKERS pytest-xdist workers (most of its tests start subprocesses and wait on
# them: 4 workers on 2 cores took 11.7 min, one process 27.5); `make test WORKERS=0` runs it in
# this one process.
WORKERS ?= 4
test: install browser
	$(BIN)/python -m pytest -n $(WORKERS) --dist loadgroup

lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy

bench: install
	$(BIN)/python bench/overhead.py
	$(BIN)/python bench/decision_noise.py
	$(BIN)/python bench/workload.py

clean:
	rm -rf $(VENV) autoresearch-demo .pytest_cache .mypy_cache .ruff_cache test-artifacts
