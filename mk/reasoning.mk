# reasoning/: teacher traces, SFT of the compact reasoning model, and its benchmark.
#
#   make traces-reasoning      build/reasoning/traces-{0,1}.jsonl  (MOSES train sample + ChEMBL drugs)
#   make train-reasoning-sft   reasoning/checkpoints/compact  (stage a; re-running resumes from
#                              build/reasoning/sft-state; JSON-lines log in the checkpoint folder)
#   make train-reasoning-align stage (b) into build/reasoning/align (from the stage a checkpoint)
#   make train-reasoning-rl    stage (c) GRPO into build/reasoning/rl (from stage b)
#   make bench-reasoning       benchmarks/results/reasoning.json
#
# Training runs on one CPU thread, at lower priority, so it can share the machine.

RSN_BUILD := build/reasoning
RSN_CKPT  := reasoning/checkpoints/compact
RSN_ENV   := OMP_NUM_THREADS=1
RSN_MOSES ?= 15000
RSN_TRACES ?= 9600  # traces kept per shard (the shipped model saw 2 x 9600)
RSN_SFT_ARGS ?= --d-model 192 --n-layers 4 --n-heads 6 --d-ff 512 --max-len 320 --batch-size 16 \
	--lr 2e-3 --warmup-steps 50 --max-steps 860 --max-minutes 240

.PHONY: traces-reasoning train-reasoning-sft bench-reasoning

$(RSN_BUILD)/traces-0.jsonl: | $(STAMP)
	mkdir -p $(RSN_BUILD)
	$(RSN_ENV) nice -n 10 $(PY) -m reasoning.traces --out $@ --moses $(RSN_MOSES) --drugs --seed 0 --limit $(RSN_TRACES)

$(RSN_BUILD)/traces-1.jsonl: | $(STAMP)
	mkdir -p $(RSN_BUILD)
	$(RSN_ENV) nice -n 10 $(PY) -m reasoning.traces --out $@ --moses $(RSN_MOSES) --seed 1 --limit $(RSN_TRACES)

traces-reasoning: $(RSN_BUILD)/traces-0.jsonl $(RSN_BUILD)/traces-1.jsonl

train-reasoning-sft: $(RSN_BUILD)/traces-0.jsonl $(RSN_BUILD)/traces-1.jsonl $(STAMP)
	$(RSN_ENV) nice -n 10 $(PY) -m reasoning.train.sft --traces $(RSN_BUILD)/traces-0.jsonl \
		$(RSN_BUILD)/traces-1.jsonl --out $(RSN_CKPT) --state $(RSN_BUILD)/sft-state $(RSN_SFT_ARGS)

bench-reasoning: $(STAMP)
	$(RSN_ENV) $(PY) benchmarks/reasoning.py

bench: bench-reasoning

# Stages (b) and (c) continue from the stage (a) checkpoint into build/ (not shipped: see the issue note).
.PHONY: train-reasoning-align train-reasoning-rl

train-reasoning-align: $(STAMP)
	$(RSN_ENV) nice -n 10 $(PY) -m reasoning.train.align --traces $(RSN_BUILD)/traces-0.jsonl \
		$(RSN_BUILD)/traces-1.jsonl --init $(RSN_CKPT) --out $(RSN_BUILD)/align --state $(RSN_BUILD)/align-state \
		--max-minutes 20

train-reasoning-rl: $(STAMP)
	$(RSN_ENV) nice -n 10 $(PY) -m reasoning.train.rl --init $(RSN_BUILD)/align --traces $(RSN_BUILD)/traces-0.jsonl \
		--out $(RSN_BUILD)/rl --max-minutes 55 --max-steps 100000

# The "without traces" comparison model: stage (a) on the same records and schedule, spec -> SMILES only.
.PHONY: train-reasoning-notrace
train-reasoning-notrace: $(RSN_BUILD)/traces-0.jsonl $(RSN_BUILD)/traces-1.jsonl $(STAMP)
	$(RSN_ENV) nice -n 10 $(PY) -m reasoning.train.sft --traces $(RSN_BUILD)/traces-0.jsonl \
		$(RSN_BUILD)/traces-1.jsonl --out $(RSN_BUILD)/notrace --state $(RSN_BUILD)/notrace-state \
		$(RSN_SFT_ARGS) --no-traces 1
