# Two commands on a fresh machine: `make demo` and `make test`.
# Each creates .venv if missing and installs the project once (a stamp file records it).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.installed-stamp

.DEFAULT_GOAL := help
.PHONY: help setup demo test lint lint-imports browser pytest notebooks lab bench bench-chem bench-campaign clean

help:
	@echo "make demo    set up .venv and run the main job on the embedded defaults"
	@echo "make test    set up .venv and run ruff, import contracts, pytest and the notebooks"
	@echo "make lab     start JupyterLab on the project"
	@echo "make bench   run the benchmarks (writes benchmarks/results/*.json)"

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# torch first, pinned, so nothing else can pull a different (CUDA) build.
$(STAMP): pyproject.toml $(VENV)/bin/python
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e ".[dev]"
	$(PIP) install --quiet --no-deps molsets==0.3.1
	$(PY) -c "import torch, rdkit, openmm; assert torch.__version__.startswith('2.13.0'), torch.__version__"
	touch $(STAMP)

setup: $(STAMP)

# The main job on the embedded defaults: the chemistry core on real corpora, then a design campaign
# (propose -> validate -> filter -> embed -> score -> rank) with its HTML report.
demo: $(STAMP)
	$(PY) -m workbench.cli demo --n 1000
	mkdir -p build && rm -f build/demo.db build/demo.db-wal build/demo.db-shm
	$(PY) -m workbench.cli run examples/demo.yaml --store build/demo.db --report build/demo-report.html

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

lint-imports: $(STAMP)
	$(VENV)/bin/lint-imports

# pytest exits 5 when it collects nothing; that is not a failure of the code under test.
pytest: $(STAMP)
	$(PY) -m pytest -q -m "not slow"; rc=$$?; if [ $$rc -eq 5 ]; then echo "pytest: no tests collected"; rc=0; fi; exit $$rc

notebooks: $(STAMP)
	@if ls notebooks/*.ipynb >/dev/null 2>&1; then \
		$(PY) -m pytest -q --nbmake --nbmake-timeout=900 notebooks; \
	else echo "no notebooks"; fi

test: lint lint-imports browser pytest notebooks

# Headless Chromium for the report/notebook rendering test (Debian package). Where it cannot be installed
# (no root, no apt), the test is skipped with that reason.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo "sudo -n" ); \
		echo "installing Debian chromium for the browser test"; \
		( $$SUDO apt-get install -y -q chromium >/dev/null 2>&1 || \
		  ( $$SUDO apt-get update -q >/dev/null 2>&1 && $$SUDO apt-get install -y -q chromium >/dev/null 2>&1 ) ) || \
		echo "chromium could not be installed here; the browser test will be skipped"; }

lab: $(STAMP)
	$(VENV)/bin/jupyter lab --notebook-dir=.

bench-chem: $(STAMP)
	$(PY) benchmarks/chem.py

bench: bench-chem bench-campaign

bench-campaign: $(STAMP)
	$(PY) benchmarks/campaign.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

-include mk/*.mk
