# simulation/quantize: GAQ W4A8 checkpoints from the float potentials (calibration + short QAT).
#
#   make quantize-potential   simulation/checkpoints/{organic,ethanol,aspirin}-w4a8
#                             (packed int4 safetensors + config.json + qat_log.jsonl in each folder)
#   make bench-quantization   benchmarks/results/quantization.{json,md}
#
# QAT runs on one CPU thread, at lower priority: QUANT_STEPS steps of 16 frames, capped at QUANT_MINUTES.

QUANT_ENV     := OMP_NUM_THREADS=1 MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=4294967296
QUANT_MINUTES ?= 14
QUANT_STEPS   ?= 160
QUANT_ARGS    ?= --weight-bits 4 --activation-bits 8 --vector mddq --max-steps $(QUANT_STEPS) --max-minutes $(QUANT_MINUTES)

.PHONY: quantize-potential quantize-potential-organic quantize-potential-ethanol quantize-potential-aspirin \
	bench-quantization

quantize-potential: quantize-potential-organic quantize-potential-ethanol quantize-potential-aspirin

quantize-potential-organic quantize-potential-ethanol quantize-potential-aspirin: quantize-potential-%: $(STAMP)
	$(QUANT_ENV) nice -n 5 $(PY) -m simulation.quantize.qat --float simulation/checkpoints/$* \
		--dataset simulation/data/$*.npz --out simulation/checkpoints/$*-w4a8 $(QUANT_ARGS)

bench-quantization: $(STAMP)
	$(QUANT_ENV) nice -n 5 $(PY) benchmarks/quantization.py

bench: bench-quantization
