# simulation/: GFN2-xTB reference data and the equivariant potentials trained on it.
#
#   make data-simulation            all per-molecule sets + the transferable organic set (resumable)
#   make train-potential-ethanol    simulation/checkpoints/ethanol  (re-running resumes)
#   make train-potential-aspirin    simulation/checkpoints/aspirin
#   make train-potential-organic    simulation/checkpoints/organic
#
# Training runs on one CPU thread; the glibc malloc settings keep large temporary tensors on the heap
# instead of mmap-ing (and page-faulting) them on every step, which is ~25% faster here.

SIM_DATA := simulation/data
SIM_CKPT := simulation/checkpoints
SIM_ENV  := OMP_NUM_THREADS=1 MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=4294967296
SIM_ORGANIC_MOLECULES ?= 800
SIM_ORGANIC_CONFIGS   ?= 4

# Sizes and wall-clock budgets used for the shipped checkpoints (override on the command line).
SIM_MODEL_ARGS   ?= --features 64 --layers 3 --heads 4 --cutoff 5.0
SIM_ETHANOL_ARGS ?= $(SIM_MODEL_ARGS) --batch-size 16 --schedule cosine --max-minutes 22 --epochs 1000 --early-stopping 1000
SIM_ASPIRIN_ARGS ?= $(SIM_MODEL_ARGS) --batch-size 16 --schedule cosine --max-minutes 30 --epochs 1000 --early-stopping 1000
SIM_ORGANIC_ARGS ?= $(SIM_MODEL_ARGS) --batch-size 8 --schedule cosine --max-minutes 58 --epochs 1000 --early-stopping 1000

.PHONY: data-simulation train-potential-ethanol train-potential-aspirin train-potential-organic

data-simulation: $(STAMP)
	$(SIM_ENV) $(PY) -m simulation.datasets --out $(SIM_DATA) \
		--organic $(SIM_ORGANIC_MOLECULES) --configs $(SIM_ORGANIC_CONFIGS)

$(SIM_DATA)/organic.npz: | $(STAMP)
	$(SIM_ENV) $(PY) -m simulation.datasets --out $(SIM_DATA) --molecules '' \
		--organic $(SIM_ORGANIC_MOLECULES) --configs $(SIM_ORGANIC_CONFIGS)

$(SIM_DATA)/%.npz: | $(STAMP)
	$(SIM_ENV) $(PY) -m simulation.datasets --out $(SIM_DATA) --molecules $* --organic 0

train-potential-ethanol: $(SIM_DATA)/ethanol.npz $(STAMP)
	$(SIM_ENV) $(PY) -m simulation.train --dataset $< --out $(SIM_CKPT)/ethanol $(SIM_ETHANOL_ARGS)

train-potential-aspirin: $(SIM_DATA)/aspirin.npz $(STAMP)
	$(SIM_ENV) $(PY) -m simulation.train --dataset $< --out $(SIM_CKPT)/aspirin $(SIM_ASPIRIN_ARGS)

train-potential-organic: $(SIM_DATA)/organic.npz $(STAMP)
	$(SIM_ENV) $(PY) -m simulation.train --dataset $< --out $(SIM_CKPT)/organic $(SIM_ORGANIC_ARGS)
