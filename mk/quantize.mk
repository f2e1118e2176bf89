# simulation/quantize: GAQ W4A8 checkpoints from the float potentials (calibration + short QAT).
#
#   make quantize-potential   simulation/checkpoints/{organic,ethanol,aspirin}-w4a8
#                             (packed int4 safetensors + config.json + qat_log.jsonl in each folder)
#   make quantize-ablations   build/quantize/ethanol-* (the benchmark's ablation rows)
#   make bench-quantization   benchmarks/results/quantization.{json,md}
#
# QAT runs on one CPU thread, at lower priority: QUANT_STEPS steps of 16 frames, capped at QUANT_MINUTES.
# Ethanol (the benchmark's model, and its ablations) gets a longer run: 6000 steps at learning rate 2e-4
# (~61 epochs; 24 min on one core of the loaded two-core machine): test force MAE 14.3 meV/A after 160 steps, 12.1 after 900, 11.6 after 6000.
# Adding --distill 0.5 --jitter 0.03 (frames labelled by the float model) reaches 11.6 after 900 steps, and 11.6 after 6000.

QUANT_ENV     := OMP_NUM_THREADS=1 MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=4294967296
QUANT_MINUTES ?= 14
QUANT_STEPS   ?= 160
QUANT_ARGS    ?= --weight-bits 4 --activation-bits 8 --vector mddq --max-steps $(QUANT_STEPS) --max-minutes $(QUANT_MINUTES)

.PHONY: quantize-potential quantize-potential-organic quantize-potential-ethanol quantize-potential-aspirin \
	bench-quantization

quantize-potential: quantize-potential-organic quantize-potential-ethanol quantize-potential-aspirin

ETHANOL_QAT := --max-steps 6000 --max-minutes 60 --lr 2e-4
quantize-potential-ethanol: QUANT_STEPS := 6000
quantize-potential-ethanol: QUANT_MINUTES := 60
quantize-potential-ethanol: QUANT_ARGS += --lr 2e-4

quantize-potential-organic quantize-potential-ethanol quantize-potential-aspirin: quantize-potential-%: $(STAMP)
	$(QUANT_ENV) nice -n 5 $(PY) -m simulation.quantize.qat --float simulation/checkpoints/$* \
		--dataset simulation/data/$*.npz --out simulation/checkpoints/$*-w4a8 $(QUANT_ARGS)

bench-quantization: $(STAMP)
	$(QUANT_ENV) nice -n 5 $(PY) benchmarks/quantization.py

bench: bench-quantization

# The ethanol ablation models the benchmark reads from build/quantize (same QAT recipe as the shipped ethanol one):
# naive per-component vectors, no branch schedules, and cosine vs dot-product attention (each first
# fine-tuned in float for 60 steps from the shipped weights, then quantized).
QUANT_ABL := $(QUANT_ENV) nice -n 5 $(PY) -m simulation.quantize.qat --dataset simulation/data/ethanol.npz \
	--float simulation/checkpoints/ethanol $(ETHANOL_QAT)

.PHONY: quantize-ablations
quantize-ablations: $(STAMP)
	$(QUANT_ABL) --out build/quantize/ethanol-naive-w4a8 --vector naive
	$(QUANT_ABL) --out build/quantize/ethanol-w4a8-noschedule --no-schedule
	$(QUANT_ABL) --out build/quantize/ethanol-cosine-w4a8 --attention cosine --float-steps 60
	$(QUANT_ABL) --out build/quantize/ethanol-dot-w4a8 --attention dot --float-steps 60
