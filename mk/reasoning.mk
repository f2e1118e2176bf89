# reasoning/: teacher traces, the three training stages of the compact reasoning model, and its benchmark.
#
#   make traces-reasoning      build/reasoning/traces-{0..3}.jsonl  (MOSES train samples + ChEMBL drugs)
#   make train-reasoning-sft   stage (a) SFT into build/reasoning/sft (re-running resumes from
#                              build/reasoning/sft-state; JSON-lines log in the folder)
#   make train-reasoning-align stage (b) into build/reasoning/align (from stage a)
#   make train-reasoning-rl    stage (c) GRPO into build/reasoning/rl (from stage b), then GRPO with
#                              --advantage group+best into build/reasoning/rl-best (the shipped model)
#   make ship-reasoning        copy stage (c) and the logs of all three stages to reasoning/checkpoints/compact
#   make train-reasoning       all of the above, in order
#   make train-reasoning-notrace  the "without traces" comparison model (build/reasoning/notrace)
#   make bench-reasoning-self-check  benchmarks/results/reasoning_self_check.json (the model's checks vs spec.check)
#   make bench-reasoning       benchmarks/results/reasoning.json (builds the traces first if missing; the
#                              before-stage-c and without-traces rows are skipped until their models are built)
#
# Training runs at lower priority, so it can share the machine; every stage but (a) on one CPU thread.
# Step counts are fixed (stage b stops at RSN_ALIGN_STEPS of its 1000-step schedule, stage c runs
# RSN_RL_STEPS updates) so a re-run reproduces the shipped model's schedule.

RSN_BUILD := build/reasoning
RSN_CKPT  := reasoning/checkpoints/compact
RSN_SFT   := $(RSN_BUILD)/sft
RSN_ALIGN_STEPS ?= 384
RSN_RL_STEPS ?= 275
RSN_RL_BEST_STEPS ?= 275  # then GRPO with leave-one-out credit for each group's best answer
RSN_ENV   := OMP_NUM_THREADS=1
RSN_MOSES ?= 40000
RSN_TRACES ?= 24000  # traces kept per shard
RSN_SHARDS ?= 0 1 2 3  # the shipped model saw 4 x 24000
RSN_TRACE_FILES = $(foreach s,$(RSN_SHARDS),$(RSN_BUILD)/traces-$(s).jsonl)
RSN_SFT_ARGS ?= --d-model 192 --n-layers 4 --n-heads 6 --d-ff 512 --max-len 320 --batch-size 16 \
	--lr 2e-3 --warmup-steps 50 --max-steps 6000 --max-minutes 240
RSN_SFT_THREADS ?= 2  # stage (a) alone uses both cores (~57 min); the other stages use one

.PHONY: traces-reasoning train-reasoning-sft bench-reasoning

# One shard per seed; shard 0 also holds the ChEMBL drug sample.
$(RSN_BUILD)/traces-%.jsonl: | $(STAMP)
	mkdir -p $(RSN_BUILD)
	$(RSN_ENV) nice -n 10 $(PY) -m reasoning.traces --out $@ --moses $(RSN_MOSES) $(if $(filter 0,$*),--drugs) \
		--seed $* --limit $(RSN_TRACES)

traces-reasoning: $(RSN_TRACE_FILES)

train-reasoning-sft: $(RSN_TRACE_FILES) $(STAMP)
	$(RSN_ENV) nice -n 10 $(PY) -m reasoning.train.sft --traces $(RSN_TRACE_FILES) --out $(RSN_SFT) \
		--state $(RSN_BUILD)/sft-state $(RSN_SFT_ARGS) --threads $(RSN_SFT_THREADS)

bench-reasoning: $(RSN_TRACE_FILES) $(STAMP)  # novelty is against the training traces
	$(RSN_ENV) $(PY) benchmarks/reasoning.py --held-out 200 --before-stage-c $(RSN_BUILD)/align \
		--traces $(RSN_TRACE_FILES) \
		--without-traces $(RSN_BUILD)/notrace --plain-specs 60 --proposer-specs 60 --workers 2 --specs-per-batch 32 --verbose

bench: bench-reasoning bench-reasoning-self-check

.PHONY: bench-reasoning-self-check
bench-reasoning-self-check: $(STAMP)  # the shipped model's checks and builds vs its answers; also stages a, b, c-plain (~2 min)
	$(RSN_ENV) $(PY) benchmarks/reasoning_self_check.py --specs 60 \
		--compare $(patsubst %/config.json,%,$(wildcard $(RSN_SFT)/config.json $(RSN_BUILD)/align/config.json $(RSN_BUILD)/rl/config.json))

# Stages (b) and (c) continue from stage (a); the stage (c) model is the one shipped.
.PHONY: train-reasoning-align train-reasoning-rl ship-reasoning train-reasoning

train-reasoning-align: $(STAMP)
	$(RSN_ENV) nice -n 10 $(PY) -m reasoning.train.align --traces $(RSN_TRACE_FILES) --init $(RSN_SFT) \
		--out $(RSN_BUILD)/align --state $(RSN_BUILD)/align-state \
		--max-steps 1000 --stop-after $(RSN_ALIGN_STEPS) --max-minutes 240

RSN_RL := $(RSN_ENV) nice -n 10 $(PY) -m reasoning.train.rl --traces $(RSN_BUILD)/traces-0.jsonl --max-minutes 240

train-reasoning-rl: $(STAMP)
	$(RSN_RL) --init $(RSN_BUILD)/align --out $(RSN_BUILD)/rl --max-steps $(RSN_RL_STEPS)
	$(RSN_RL) --init $(RSN_BUILD)/rl --out $(RSN_BUILD)/rl-best --advantage group+best --seed 1 \
		--max-steps $(RSN_RL_BEST_STEPS)

ship-reasoning:
	mkdir -p $(RSN_CKPT)
	cp $(RSN_BUILD)/rl-best/config.json $(RSN_BUILD)/rl-best/model.safetensors $(RSN_BUILD)/rl-best/tokenizer.json $(RSN_CKPT)/
	cp $(RSN_BUILD)/rl/rl_log.jsonl $(RSN_BUILD)/rl/rl_config.json $(RSN_CKPT)/
	cp $(RSN_BUILD)/rl-best/rl_log.jsonl $(RSN_CKPT)/rl_best_log.jsonl
	cp $(RSN_BUILD)/rl-best/rl_config.json $(RSN_CKPT)/rl_best_config.json
	cp $(RSN_SFT)/train_log.jsonl $(RSN_CKPT)/sft_train_log.jsonl
	cp $(RSN_SFT)/train_config.json $(RSN_CKPT)/sft_train_config.json
	cp $(RSN_BUILD)/align/train_log.jsonl $(RSN_CKPT)/align_train_log.jsonl
	cp $(RSN_BUILD)/align/train_config.json $(RSN_CKPT)/align_train_config.json

train-reasoning: train-reasoning-sft
	$(MAKE) train-reasoning-align
	$(MAKE) train-reasoning-rl
	$(MAKE) ship-reasoning

# The "without traces" comparison model: stage (a) on the same records and schedule, spec -> SMILES only.
.PHONY: train-reasoning-notrace
train-reasoning-notrace: $(RSN_TRACE_FILES) $(STAMP)
	$(RSN_ENV) nice -n 10 $(PY) -m reasoning.train.sft --traces $(RSN_TRACE_FILES) \
		--out $(RSN_BUILD)/notrace --state $(RSN_BUILD)/notrace-state \
		$(RSN_SFT_ARGS) --no-traces 1
