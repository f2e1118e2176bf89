# The potential benchmark: accuracy vs GFN2-xTB, OpenMM ns/day, NVE drift, and the MACE / SevenNet-0 peers.
#
#   make bench-potential   benchmarks/results/potential.json (intermediate parts in build/bench_potential/)
#
# The peers get their own virtualenvs, never the main one: mace-torch pins e3nn==0.4.4 and sevenn needs
# e3nn>=0.5, so .venv-peers holds mace-torch and .venv-peers/sevenn holds sevenn. torch==2.13.0 is installed
# first in each (the CPU wheel on local disk), so pip never resolves another torch. Everything runs on one
# thread at lower priority. BENCH_POTENTIAL_ARGS passes options to benchmarks/potential.py (e.g. --nve-ps 20).

PEERS_VENV   := .venv-peers
SEVENN_VENV  := $(PEERS_VENV)/sevenn
BENCH_POT_ENV := OMP_NUM_THREADS=1 MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=4294967296
BENCH_POTENTIAL_ARGS ?=

.PHONY: bench-potential peers-venv

$(PEERS_VENV)/.installed-stamp:
	$(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/pip install torch==2.13.0
	$(PEERS_VENV)/bin/pip install mace-torch openmm openmmml ase
	$(PEERS_VENV)/bin/python -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
	$(PEERS_VENV)/bin/pip check
	touch $@

$(SEVENN_VENV)/.installed-stamp: $(PEERS_VENV)/.installed-stamp
	$(PYTHON) -m venv $(SEVENN_VENV)
	$(SEVENN_VENV)/bin/pip install torch==2.13.0
	$(SEVENN_VENV)/bin/pip install sevenn openmm openmmml ase
	$(SEVENN_VENV)/bin/python -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
	$(SEVENN_VENV)/bin/pip check
	touch $@

peers-venv: $(PEERS_VENV)/.installed-stamp $(SEVENN_VENV)/.installed-stamp

bench-potential: $(STAMP) peers-venv
	$(BENCH_POT_ENV) nice -n 5 $(PY) benchmarks/potential.py $(BENCH_POTENTIAL_ARGS)

bench: bench-potential
