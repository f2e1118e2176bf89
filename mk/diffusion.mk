# diffusion/: the SELFIES autoencoder, the property-conditioned latent denoiser and their benchmark.
#
#   make train-diffusion   diffusion/checkpoints/{autoencoder,denoiser,scheduler} + model_index.json
#                          (re-running resumes an interrupted stage and skips finished ones;
#                          JSON-lines logs in each stage folder, console output in train.log; on the
#                          2-core machine about 3 min of RDKit (2 processes) for the autoencoder's
#                          training-set properties, 20 min for the GRU autoencoder with its property head,
#                          10 min of RDKit for the denoiser's training-set properties, kept in
#                          build/diffusion-cache, and 6 min for the denoiser)
#   make bench-diffusion   benchmarks/results/diffusion.json + diffusion_*.png (25 DPM-Solver++ steps,
#                          24 guidance settings x 15 targets x 32 samples; ~4 min on the 2-core machine at load ~2)
#
# Training runs on one CPU thread (the autoencoder's property pass on 2 processes), at lower priority, so it
# can share the machine.

DIFF_CKPT := diffusion/checkpoints
DIFF_ENV  := OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1

.PHONY: train-diffusion bench-diffusion

train-diffusion: $(STAMP)
	mkdir -p $(DIFF_CKPT)
	$(DIFF_ENV) nice -n 5 $(PY) -m diffusion.train all --out $(DIFF_CKPT) --threads 1 2>&1 | tee -a $(DIFF_CKPT)/train.log
	test -f $(DIFF_CKPT)/model_index.json  # written last, only when every stage finished

bench-diffusion: $(STAMP)
	$(DIFF_ENV) $(PY) benchmarks/diffusion.py

bench: bench-diffusion
